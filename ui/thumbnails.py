"""Small previews drawn on the nodes after a run: an image strip, curves or a few numbers.

A thumbnail is read from the cache through its public read API: a long array output (frames,
masks, flow fields) is read only at the few rows shown, straight from the entry's Zarr group
(`CacheStore.open_outputs`), so a long clip costs three frames rather than the whole entry;
anything else goes through `CacheStore.load`. What the editor receives is small JSON:

    {"kind": "image", "src": "data:image/png;base64,...", "label": "125 frames, 256×256"}
    {"kind": "curves", "panels": [{"title": "expression", "lines": [[...], ...]}], "label": "..."}
    {"kind": "text", "lines": ["psnr 31.2", "ssim 0.91"], "label": "..."}
"""
from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .preview import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    colormap,
    draw_points,
    flow_to_rgb,
    gray_to_rgb,
    normalise,
    pick_frames,
    strongest,
    time_series,
)

THUMB_HEIGHT = 96  # pixels of the node the image strip takes
STRIP_FRAMES = 3  # frames shown from a sequence
CURVE_POINTS = 96  # samples per curve
CURVE_LINES = 6  # curves per panel

# Which output of a node is worth showing first: pictures, then curves, then numbers.
RANK = ("Path", "Frames", "Image", "FlowField", "Mask", "Landmarks", "Audio", "MorphCoeffs", "Array", "Metrics", "Scalar")


def rank(type_names: set[str]) -> int:
    return min((RANK.index(t) for t in type_names if t in RANK), default=len(RANK))


def read_output(cache: Any, key: str, port: str, port_type: Any, rows: int = STRIP_FRAMES) -> tuple[Any, int | None]:
    """The output's value, or for an array with more than `rows` rows along its first (time)
    axis and at least 3 dimensions only `rows` evenly spaced rows; with the full row count.
    (Arrays are stored chunked along their first axis, time; a single image's is its height.)"""
    from graphcore.types import TYPES, ArrayType

    if isinstance(port_type, ArrayType) and "Image" not in TYPES.ancestors(port_type.name):
        try:
            group = cache.open_outputs(key)
            array = group[port]["value"] if group is not None else None
        except Exception:  # inline, another layout (e.g. chunked entries): read it whole below
            array = None
        shape = getattr(array, "shape", ())
        if array is not None and len(shape) >= 3 and shape[0] > rows:
            return np.stack([np.asarray(array[i]) for i in pick_frames(shape[0], rows)]), shape[0]
    return cache.load(key, port, port_type), None


def png_data_url(rgb: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8))).save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _fit(rgb: np.ndarray, height: int = THUMB_HEIGHT) -> np.ndarray:
    """Resized (nearest neighbour, no dependency) to `height` rows, aspect kept."""
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        return np.zeros((height, height, 3), np.uint8)
    scale = height / h
    new_w = max(1, int(round(w * scale)))
    ys = np.minimum((np.arange(height) / scale).astype(int), h - 1)
    xs = np.minimum((np.arange(new_w) / scale).astype(int), w - 1)
    return rgb[ys][:, xs]


def strip(frames: list[np.ndarray]) -> np.ndarray:
    tiles = [_fit(f) for f in frames]
    gap = np.full((THUMB_HEIGHT, 3, 3), 32, np.uint8)
    out: list[np.ndarray] = []
    for t in tiles:
        out += [t, gap]
    return np.concatenate(out[:-1], axis=1)


def image_thumb(frames: list[np.ndarray], label: str) -> dict[str, Any]:
    return {"kind": "image", "src": png_data_url(strip(frames)), "label": label}


def curves_thumb(panels: Mapping[str, np.ndarray], label: str) -> dict[str, Any]:
    """Each panel: up to CURVE_LINES curves (the strongest), thinned to CURVE_POINTS, each scaled to [0, 1]
    on its own (a thumbnail shows how each moves; the Outputs tab shows the values)."""
    out = []
    for title, a in panels.items():
        a = np.nan_to_num(np.asarray(a, dtype=np.float64))
        a = a[:, None] if a.ndim == 1 else a.reshape(a.shape[0], -1)
        cols = strongest(a, CURVE_LINES)
        idx = np.linspace(0, a.shape[0] - 1, min(CURVE_POINTS, a.shape[0])).round().astype(int)
        lines = [normalise(a[idx, c]) for c in cols]
        out.append({"title": title, "lines": [[round(float(v), 3) for v in line] for line in lines]})
    return {"kind": "curves", "panels": out, "label": label}


def text_thumb(lines: list[str], label: str = "") -> dict[str, Any]:
    return {"kind": "text", "lines": lines[:5], "label": label}


def _array_thumb(a: np.ndarray, names: set[str], total: int | None) -> dict[str, Any] | None:
    n = total or (a.shape[0] if a.ndim else 1)
    if a.dtype.kind not in "fiub" or a.size == 0:
        return None
    if "FlowField" in names or (a.ndim == 4 and a.shape[-1] == 2 and a.dtype.kind == "f"):
        scale = float(np.percentile(np.hypot(a[..., 0], a[..., 1]), 99)) or 1.0
        rows = [a[i] for i in pick_frames(len(a), STRIP_FRAMES)]
        return image_thumb([flow_to_rgb(f, scale) for f in rows], f"flow, {n} frames, {a.shape[2]}×{a.shape[1]}")
    if "Image" in names or (a.ndim == 3 and a.shape[-1] in (3, 4) and a.dtype == np.uint8):
        return image_thumb([a[..., :3]], f"{a.shape[1]}×{a.shape[0]}")
    if "Frames" in names or (a.ndim == 4 and a.shape[-1] in (3, 4) and a.dtype == np.uint8):
        rows = [a[i, ..., :3] for i in pick_frames(len(a), STRIP_FRAMES)]
        return image_thumb(rows, f"{n} frame{'s' if n != 1 else ''}, {a.shape[2]}×{a.shape[1]}")
    if "Mask" in names or (a.ndim == 3 and a.dtype.kind == "f" and a.shape[1] > 8 and a.shape[2] > 8):
        rows = [gray_to_rgb(a[i]) for i in pick_frames(len(a), STRIP_FRAMES)]
        return image_thumb(rows, f"mask, {n} frames")
    if "Landmarks" in names or (a.ndim == 3 and a.shape[-1] in (2, 3) and a.shape[1] >= 5):
        return image_thumb([draw_points(a[len(a) // 2], 128)], f"{a.shape[1]} points, {n} frames")
    if a.ndim == 0:
        return text_thumb([f"{a.item():.6g}"])
    if a.ndim == 1 and a.size <= 4:
        return text_thumb([", ".join(f"{v:.4g}" for v in a.tolist())])
    if a.ndim in (1, 2) and (a.ndim == 1 or a.shape[1] <= 64):
        return curves_thumb({"": a}, f"{a.shape[0]} × {a.shape[1] if a.ndim == 2 else 1}")
    if a.ndim == 2:
        return image_thumb([colormap(normalise(a))], f"{a.shape[0]}×{a.shape[1]} (heat map)")
    return None


def _file_thumb(path: Path, path_ok: Callable[[str], bool]) -> dict[str, Any] | None:
    if not path_ok(str(path)) or not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as img:
            return image_thumb([np.asarray(img.convert("RGB"))], path.name)
    if suffix in VIDEO_SUFFIXES:
        frame, seconds = video_poster(path)
        label = f"▶ {path.name}" + (f", {seconds:.1f} s" if seconds else "")
        return image_thumb([frame], label) if frame is not None else text_thumb([f"▶ {path.name}"])
    if suffix in AUDIO_SUFFIXES:
        return text_thumb([f"♪ {path.name}"])
    return None


def video_poster(path: Path) -> tuple[np.ndarray | None, float | None]:
    """A frame from the middle of a video (PyAV when installed) and its duration in seconds."""
    try:
        import av
    except ImportError:
        return None, None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            seconds = float(stream.duration * stream.time_base) if stream.duration else (
                container.duration / 1e6 if container.duration else None)
            target = int(seconds / 2 / stream.time_base) if seconds else 0
            if target:
                container.seek(target, stream=stream)  # lands on the key frame before it
            last = None
            for frame in container.decode(stream):  # decode on to the middle frame itself
                last = frame
                if frame.pts is None or frame.pts >= target:
                    break
            return (last.to_ndarray(format="rgb24") if last is not None else None), seconds
    except Exception:  # a file that is not a readable video: no picture
        return None, None


def thumbnail(value: Any, type_names: set[str], path_ok: Callable[[str], bool], total: int | None = None) -> dict[str, Any] | None:
    """A thumbnail for one output value (see the module doc), or None when nothing fits."""
    if isinstance(value, np.ndarray):
        return _array_thumb(value, type_names, total)
    if isinstance(value, (str, Path)):
        text = str(value)
        if Path(text).suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES | AUDIO_SUFFIXES:
            return _file_thumb(Path(text), path_ok)
        return text_thumb([text if len(text) <= 40 else "…" + text[-39:]])
    if isinstance(value, (bool, int, float, np.generic)):
        return text_thumb([f"{value:.6g}" if isinstance(value, float) else str(value)])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        samples, rate = fields.get("samples"), fields.get("sample_rate")
        if isinstance(samples, np.ndarray) and samples.ndim == 1 and samples.size and isinstance(rate, (int, float)):
            return curves_thumb({"": envelope(samples)}, f"{samples.size / rate:.2f} s at {int(rate)} Hz")
        series = time_series(fields)
        if series:
            t = next(iter(series.values())).shape[0]
            return curves_thumb(series, f"{type(value).__name__}: {', '.join(series)} over {t} frames")
        return None
    if isinstance(value, Mapping) and value:
        numbers = [(k, v) for k, v in value.items() if isinstance(v, (int, float, np.generic)) and not isinstance(v, bool)]
        if numbers:
            return text_thumb([f"{k} {float(v):.4g}" for k, v in numbers], f"{len(value)} values")
    return None


def envelope(samples: np.ndarray, buckets: int = CURVE_POINTS) -> np.ndarray:
    """The peak level of an audio signal in `buckets` slices."""
    x = np.abs(np.nan_to_num(samples.astype(np.float64)))
    edges = np.linspace(0, len(x), min(buckets, len(x)) + 1).astype(int)
    return np.array([x[a:b].max(initial=0.0) for a, b in zip(edges[:-1], edges[1:])])
