"""Turn a node output into something the page can show.

Videos (.mp4 paths) play in a video player; frames, images, masks and flow fields (in
pseudo-colour) become gallery images; 1-D/2-D curves become line plots; metrics become bar
charts; audio clips play; anything else is summarised as JSON. Only numpy is used here, so
previews work without the node library installed.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MAX_GALLERY = 8  # frames shown from a sequence, evenly spaced
MAX_SERIES = 64  # curves in one plot (e.g. 33 expression coefficients)
MAX_POINTS = 2000  # samples per curve
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}


@dataclasses.dataclass
class Preview:
    kind: str  # video | images | plot | bars | audio | json
    summary: str = ""
    file: str | None = None  # a file on disk to play or show
    images: list[tuple[np.ndarray, str]] = dataclasses.field(default_factory=list)
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # series name -> values over x
    bars: dict[str, float] = dataclasses.field(default_factory=dict)
    audio: tuple[int, np.ndarray] | None = None
    data: Any = None  # JSON shown for json previews (and beside bars)


# ---------------------------------------------------------------------------------------
# Colour


_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB along a viridis-like ramp."""
    x = np.clip(np.nan_to_num(x.astype(np.float64)), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_VIRIDIS) - 2)
    t = (x - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - t) + _VIRIDIS[lo + 1] * t).astype(np.uint8)


def normalise(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float64))
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Optical-flow colour coding: direction -> hue, magnitude -> brightness. flow (..., 2) as (dx, dy)."""
    dx, dy = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    mag = np.hypot(dx, dy)
    scale = max_magnitude or float(np.percentile(mag, 99)) or 1.0
    hue = (np.arctan2(-dy, -dx) / (2 * np.pi) + 0.5) % 1.0
    sat = np.ones_like(hue)
    val = np.clip(mag / scale, 0, 1)
    return hsv_to_rgb(hue, sat, val)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(choices):
        m = i == k
        rgb[m] = np.stack([r[m], g[m], b[m]], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def gray_to_rgb(a: np.ndarray) -> np.ndarray:
    g = a if a.dtype == np.uint8 else (np.clip(np.nan_to_num(a.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def draw_points(points: np.ndarray, size: int = 256) -> np.ndarray:
    """2-D points (N, 2|3) in pixels drawn as dots on a dark square, aspect kept."""
    img = np.full((size, size, 3), 24, dtype=np.uint8)
    xy = np.nan_to_num(points[:, :2].astype(np.float64))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max()) or 1.0
    px = ((xy - lo) / span * (size - 16) + 8).round().astype(int).clip(1, size - 2)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            img[px[:, 1] + dy, px[:, 0] + dx] = (255, 170, 60)
    return img


# ---------------------------------------------------------------------------------------
# Value -> preview


def pick_frames(n: int, limit: int = MAX_GALLERY) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, limit)})


def _sequence(a: np.ndarray, to_rgb: Callable[[np.ndarray], np.ndarray], what: str,
              frames: list[int] | None = None) -> list[tuple[np.ndarray, str]]:
    """`frames`: the frame numbers of `a`'s rows when `a` holds only the frames picked."""
    if frames is not None:
        return [(to_rgb(a[i]), f"{what} {t}") for i, t in enumerate(frames)]
    return [(to_rgb(a[t]), f"{what} {t}") for t in pick_frames(a.shape[0])]


def describe(a: np.ndarray) -> str:
    text = f"ndarray {a.dtype} shape {tuple(a.shape)}"
    if a.size and a.dtype.kind in "fiub":
        text += f", values in [{a.min():.4g}, {a.max():.4g}]"
    return text


def preview_array(a: np.ndarray, type_names: set[str], frames: list[int] | None = None) -> Preview:
    """`frames`: `a` holds only these frames of a longer sequence (see preview_sequence)."""
    summary = describe(a)
    if a.size == 0:
        return Preview("json", summary, data={"shape": list(a.shape), "dtype": str(a.dtype)})
    if a.dtype.kind not in "fiub":
        return Preview("json", summary, data={"shape": list(a.shape), "dtype": str(a.dtype)})
    is_ = type_names.__contains__
    if is_("FlowField") or (a.ndim == 4 and a.shape[-1] == 2 and a.dtype.kind == "f"):
        scale = float(np.percentile(np.hypot(a[..., 0], a[..., 1]), 99)) or 1.0
        return Preview("images", summary + " (flow: hue = direction, brightness = magnitude)",
                       images=_sequence(a, lambda f: flow_to_rgb(f, scale), "frame", frames))
    if is_("Frames") or (a.ndim == 4 and a.shape[-1] in (3, 4) and a.dtype == np.uint8):
        return Preview("images", summary, images=_sequence(a[..., :3], lambda f: f, "frame", frames))
    if is_("Image") or (a.ndim == 3 and a.shape[-1] in (3, 4) and a.dtype == np.uint8):
        return Preview("images", summary, images=[(a[..., :3], "image")])
    if is_("Mask") or (a.ndim == 3 and a.dtype.kind == "f" and a.shape[1] > 8 and a.shape[2] > 8):
        return Preview("images", summary, images=_sequence(a, gray_to_rgb, "frame", frames))
    if is_("Landmarks") or (a.ndim == 3 and a.shape[-1] in (2, 3) and a.shape[1] >= 5):
        return Preview("images", summary, images=_sequence(a, draw_points, "frame", frames))
    if a.ndim == 1:
        return Preview("plot", summary, curves={"value": a})
    if a.ndim == 2 and a.shape[1] <= MAX_SERIES:
        return Preview("plot", summary, curves={f"[{c}]": a[:, c] for c in range(a.shape[1])})
    if a.ndim == 2:
        return Preview("images", summary + " (as a heat map, rows = first axis)", images=[(colormap(normalise(a)), "heat map")])
    flat = a.reshape(a.shape[0], -1)
    if flat.shape[1] <= MAX_SERIES:
        return Preview("plot", summary, curves={f"[{c}]": flat[:, c] for c in range(flat.shape[1])})
    return Preview("images", summary + " (first axis as frames, the rest flattened)",
                   images=_sequence(a, lambda f: colormap(normalise(f.reshape(f.shape[0], -1) if f.ndim > 1 else f[None])), "index", frames))


LAZY_WHOLE_BYTES = 64 * 1024 * 1024  # a lazily read sequence up to this size is read whole


def preview_sequence(view: Any, type_names: set[str]) -> Preview:
    """A sequence read lazily (graphcore.stream.Chunks over a streamed cache entry): only the
    frames shown are read, so previewing ten minutes of 512x512 flow costs what eight frames
    cost. Small ones, and those not shown as frames (fewer than 3 dimensions), are read whole."""
    if view.ndim < 3 or view.nbytes <= LAZY_WHOLE_BYTES:
        return preview_array(np.asarray(view.read()), type_names)
    picks = pick_frames(len(view))
    shown = np.asarray(view[picks])
    p = preview_array(shown, type_names, frames=picks)
    ranged = f", values in [{shown.min():.4g}, {shown.max():.4g}] in the frames shown" if shown.dtype.kind in "fiub" else ""
    p.summary = p.summary.replace(describe(shown), f"ndarray {view.dtype} shape {tuple(view.shape)}{ranged}", 1)
    return p


def preview_value(value: Any, type_names: set[str], path_ok: Callable[[str], bool]) -> Preview:
    """`type_names`: the output's port type and its ancestors; `path_ok`: whether a file may be read."""
    if hasattr(value, "chunk_rows") and hasattr(value, "read"):  # a lazy stream.Chunks view
        return preview_sequence(value, type_names)
    if isinstance(value, np.ndarray):
        return preview_array(value, type_names)
    if isinstance(value, (str, Path)) and Path(value).suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES | AUDIO_SUFFIXES:
        return preview_file(Path(value), path_ok)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return preview_record(value, path_ok)
    if isinstance(value, Mapping) and value and all(_is_number(v) for v in value.values()):
        bars = {str(k): float(v) for k, v in value.items()}
        return Preview("bars", f"{len(bars)} values", bars=bars, data=_jsonable(value))
    return Preview("json", type(value).__name__, data=_jsonable(value))


def preview_file(path: Path, path_ok: Callable[[str], bool]) -> Preview:
    if not path_ok(str(path)):
        return Preview("json", f"{path} is outside the folders this app may read", data=str(path))
    if not path.is_file():
        return Preview("json", f"{path} does not exist (any more)", data=str(path))
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return Preview("video", str(path), file=str(path))
    if suffix in AUDIO_SUFFIXES:
        return Preview("audio", str(path), file=str(path))
    return Preview("images", str(path), file=str(path))


def preview_record(value: Any, path_ok: Callable[[str], bool]) -> Preview:
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    summary = type(value).__name__ + ": " + ", ".join(
        f"{k} {describe(v)}" if isinstance(v, np.ndarray) else f"{k}={_short(v)}" for k, v in fields.items()
    )
    samples, rate = fields.get("samples"), fields.get("sample_rate")
    if isinstance(samples, np.ndarray) and samples.ndim == 1 and _is_number(rate):
        if samples.dtype.kind == "f":  # float in [-1, 1] -> 16-bit PCM, what the player plays
            samples = (np.clip(np.nan_to_num(samples), -1, 1) * 32767).astype(np.int16)
        return Preview("audio", summary, audio=(int(rate), samples))
    series = time_series(fields)
    if series:
        curves = {f"{name}[{c}]" if a.ndim == 2 else name: a[:, c] if a.ndim == 2 else a
                  for name, a in series.items() for c in strongest(a, MAX_RECORD_SERIES)}
        shown = ", ".join(f"{name} {a.shape[1] if a.ndim == 2 else 1}" for name, a in series.items())
        return Preview("plot", f"{summary} — over time: {shown} (at most {MAX_RECORD_SERIES} strongest curves each)",
                       curves=curves)
    return Preview("json", summary, data={k: _jsonable(v) for k, v in fields.items()})


MAX_RECORD_SERIES = 8  # curves shown per field of a record (e.g. 8 of 33 expression coefficients)


def time_series(fields: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The fields of a record that run over time: numeric (T, k) arrays sharing the largest T
    (> 1), e.g. a MorphCoeffs' expression (T, 33) and pose (T, 6) but not its identity (60,).
    Without such 2-D fields, 1-D fields of one common length T > 1."""
    numeric = {k: v for k, v in fields.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and v.size}
    if any(v.ndim == 2 for v in numeric.values()) and max(v.shape[0] for v in numeric.values() if v.ndim == 2) <= 1:
        return {}  # one frame: nothing runs over time
    two_d = {k: v for k, v in numeric.items() if v.ndim == 2 and v.shape[0] > 1 and v.shape[1] <= MAX_SERIES}
    if two_d:
        t = max(v.shape[0] for v in two_d.values())
        chosen = {k: v for k, v in two_d.items() if v.shape[0] == t}
        # 1-D fields over the same frames too (e.g. a per-frame error), unless constant (nothing to see)
        chosen.update({k: v for k, v in numeric.items() if v.ndim == 1 and v.shape[0] == t and k not in chosen and np.ptp(v) > 0})
        return chosen
    lengths = [v.shape[0] for v in numeric.values() if v.ndim == 1 and v.shape[0] > 1]
    if lengths:
        t = max(set(lengths), key=lengths.count)
        return {k: v for k, v in numeric.items() if v.ndim == 1 and v.shape[0] == t}
    return {}


def strongest(a: np.ndarray, limit: int) -> list[int]:
    """Column indices of a (T, k) array with the largest variance over time, in column order."""
    if a.ndim == 1:
        return [0]
    var = np.nan_to_num(a.astype(np.float64)).var(axis=0)
    return sorted(np.argsort(-var, kind="stable")[:limit].tolist())


def curve_table(curves: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """Long-format columns (x, value, series) for a line plot, each curve thinned to MAX_POINTS."""
    xs: list[float] = []
    ys: list[float] = []
    names: list[str] = []
    for name, y in curves.items():
        y = np.asarray(y, dtype=np.float64).ravel()
        idx = np.arange(len(y)) if len(y) <= MAX_POINTS else np.linspace(0, len(y) - 1, MAX_POINTS).round().astype(int)
        xs += idx.tolist()
        ys += np.nan_to_num(y[idx]).tolist()
        names += [name] * len(idx)
    return {"x": xs, "value": ys, "series": names}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


def _short(v: Any, limit: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 64 else {"ndarray": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v[:64]]
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
