"""The talking-face dataset format (docs/dataset-format.md): writer and reader.

One Zarr v3 group per clip holding time-aligned frames, audio, landmarks, 3DMM coefficients,
optional audio features and phonemes. The synthetic generator and the real-video preparation
workflow both write it (nodes/synth), whatever the source; trainers and nodes read it through
`open_dataset`. It hands out plain arrays, never node types, so it sits below the node library:

    ds = open_dataset("data/synth.zarr")
    clip = ds.clip(0)                      # lazy: arrays are read on access
    frames = clip.frames[10:20]            # (10, H, W, 3) uint8
    windows = ds.windows(16, split="train")
    w = windows[0]                         # dict of numpy arrays for 16 frames (+ their audio)
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "talkgraph-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
COEFF_FIELDS = ("shape", "expression", "pose", "error")
_CHUNK_BYTES = 4 * 1024 * 1024


class DatasetError(RuntimeError):
    """A dataset is missing, malformed, or asked for something it does not hold."""


def _open_group(url: str, mode: str):
    import zarr

    storage_options = {"auto_mkdir": True} if str(url).startswith("file://") else None
    try:
        return zarr.open_group(str(url), mode=mode, storage_options=storage_options)
    except (FileNotFoundError, KeyError) as e:
        raise DatasetError(f"no dataset at {url}") from e
    except Exception as e:  # zarr raises several types for "not a group here"
        if mode == "r":
            raise DatasetError(f"cannot open dataset {url}: {e}") from e
        raise


def _create(group, name: str, shape: tuple, dtype, chunk_t: int | None = None):
    import zarr

    dtype = np.dtype(dtype)
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if len(shape) > 1 else dtype.itemsize
    if chunk_t is None:
        chunk_t = max(1, _CHUNK_BYTES // max(row, 1))
    chunks = (max(1, min(chunk_t, shape[0] or 1)), *[max(1, s) for s in shape[1:]]) if shape else ()
    return group.create_array(
        name, shape=shape, dtype=dtype, chunks=chunks or None, overwrite=True,
        compressors=[zarr.codecs.BloscCodec(cname="lz4", clevel=3, shuffle="bitshuffle" if dtype.itemsize == 1 else "shuffle")],
    )


def assign_splits(n: int, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[str]:
    """A seeded split per clip; with three or more clips, val and test get at least one each."""
    frac = np.asarray(fractions, np.float64)
    frac = frac / frac.sum()
    counts = np.floor(frac * n).astype(int)
    if n >= 3:  # every split asked for gets at least one clip
        counts[1:] = np.where(frac[1:] > 0, np.maximum(counts[1:], 1), 0)
    counts[0] = n - counts[1:].sum()
    if counts[0] < 0 or (frac[0] == 0 and counts[0] > 0):  # no training split asked for: the rest is test
        counts[2] += counts[0]
        counts[0] = 0
    labels = np.repeat(np.array(SPLITS), counts)
    return list(labels[np.random.default_rng([seed, 0x5917]).permutation(n)])


# ---------------------------------------------------------------------------------------------
# Writing


class ClipWriter:
    """Writes one clip; frames may arrive in chunks (`write_frames`) to keep memory flat."""

    def __init__(self, group, n_frames: int, frame_size: tuple[int, int], samples_per_frame: int,
                 frames: bool = True) -> None:
        self.group, self.n_frames, self.spf = group, int(n_frames), int(samples_per_frame)
        h, w = frame_size
        chunk_t = max(1, _CHUNK_BYTES // (h * w * 3))
        self._frames = _create(group, "frames", (self.n_frames, h, w, 3), np.uint8, chunk_t) if frames else None
        self._landmarks = None
        self.written = 0

    def write_frames(self, t0: int, frames: np.ndarray) -> None:
        if self._frames is None:
            raise DatasetError("this dataset is written without frames (has_frames is false)")
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != self._frames.shape[1:]:
            raise DatasetError(f"frames must be uint8 {self._frames.shape[1:]}, got {frames.dtype} {frames.shape}")
        self._frames[t0:t0 + len(frames)] = frames
        self.written = max(self.written, t0 + len(frames))

    def write_landmarks(self, t0: int, landmarks: np.ndarray) -> None:
        if self._landmarks is None:
            self._landmarks = _create(self.group, "landmarks", (self.n_frames, *landmarks.shape[1:]), np.float32)
        self._landmarks[t0:t0 + len(landmarks)] = landmarks.astype(np.float32)

    def write_audio(self, samples: np.ndarray) -> None:
        """Stored as exactly n_frames * samples_per_frame samples (zero-padded or trimmed)."""
        n = self.n_frames * self.spf
        out = np.zeros(n, np.float32)
        out[:min(n, len(samples))] = samples[:n]
        _create(self.group, "audio", (n,), np.float32, chunk_t=self.spf * 250)[...] = out

    def write_coeffs(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                     error: np.ndarray | None = None, image_size: Sequence[int] | None = None) -> None:
        g = self.group.require_group("coeffs")
        T = self.n_frames
        for name, arr, want in (("expression", expression, (T, None)), ("pose", pose, (T, 6))):
            if arr.shape[0] != T or (want[1] is not None and arr.shape[1] != want[1]):
                raise DatasetError(f"coefficient array {name!r} has shape {arr.shape}, expected ({T}, {want[1] or '*'})")
        _create(g, "shape", tuple(shape.shape), np.float32)[...] = shape.astype(np.float32)
        _create(g, "expression", tuple(expression.shape), np.float32)[...] = expression.astype(np.float32)
        _create(g, "pose", tuple(pose.shape), np.float32)[...] = pose.astype(np.float32)
        err = np.zeros(T, np.float32) if error is None else error.astype(np.float32)
        _create(g, "error", (T,), np.float32)[...] = err
        if image_size is not None:
            g.attrs["image_size"] = [int(s) for s in image_size]

    def write_features(self, variant: str, data: np.ndarray, fps: float) -> None:
        if data.shape[0] != self.n_frames:
            raise DatasetError(f"features {variant!r} have {data.shape[0]} frames, the clip has {self.n_frames}")
        g = self.group.require_group("features")
        arr = _create(g, variant, tuple(data.shape), np.float32)
        arr[...] = data.astype(np.float32)
        arr.attrs["fps"] = float(fps)

    def write_array(self, name: str, data: np.ndarray) -> None:
        """An extra per-frame array (e.g. the synthetic `blink` curve)."""
        _create(self.group, name, tuple(data.shape), data.dtype)[...] = data


class DatasetWriter:
    """Creates (or overwrites) a dataset; `begin_clip` per clip, then `close`.

    A local dataset is written beside its place (`<path>.partial`) and moved there by `close`, so
    a run that fails or is killed half-way leaves the previous dataset at `path` as it was (a new
    writer clears a stale `.partial`). URLs (`s3://…`, `memory://…`) are written in place: object
    stores have no rename; their `complete` attribute stays false until `close`.
    """

    def __init__(self, url: str, *, fps: float = 25.0, sample_rate: int = 16000, frame_size: tuple[int, int],
                 source: str, landmark_source: str, attrs: Mapping[str, Any] | None = None) -> None:
        spf = sample_rate / fps
        if abs(spf - round(spf)) > 1e-9:
            raise DatasetError(f"sample rate {sample_rate} is not a whole number of samples per frame at {fps} fps")
        self.url, self.fps, self.sample_rate = str(url), float(fps), int(sample_rate)
        self.samples_per_frame = int(round(spf))
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.final: Path | None = None if "://" in self.url else Path(self.url)
        if self.final is not None:
            self.url = str(self.final.with_name(self.final.name + ".partial"))
            shutil.rmtree(self.url, ignore_errors=True)
        self.root = _open_group(self.url, "w")
        self.clips: list[str] = []
        self.splits: dict[str, str] = {}
        self.root.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "fps": self.fps, "sample_rate": self.sample_rate,
            "samples_per_frame": self.samples_per_frame, "frame_size": list(self.frame_size), "source": source,
            "landmark_source": landmark_source, "clips": [], "complete": False, **dict(attrs or {}),
        })

    def write_identities(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], shape: Sequence[np.ndarray],
                         expression: Sequence[np.ndarray], pose: Sequence[np.ndarray],
                         info: Sequence[Mapping[str, Any]] | None = None) -> None:
        """The faces the clips were made from (group `identities`; a clip's `identity` attribute indexes them)."""
        g = self.root.require_group("identities")
        for name, arrs, dtype in (("image", images, np.uint8), ("landmarks", landmarks, np.float32),
                                  ("shape", shape, np.float32), ("expression", expression, np.float32),
                                  ("pose", pose, np.float32)):
            data = np.stack([np.asarray(a) for a in arrs]).astype(dtype)
            _create(g, name, data.shape, dtype, chunk_t=1)[...] = data
        g.attrs["info"] = _jsonable({"items": list(info or [])})["items"]

    def begin_clip(self, name: str, n_frames: int, *, split: str, attrs: Mapping[str, Any],
                   frames: bool = True) -> ClipWriter:
        if split not in SPLITS:
            raise DatasetError(f"split {split!r} is not one of {SPLITS}")
        if name in self.clips:
            raise DatasetError(f"clip {name!r} written twice")
        g = self.root.create_group(name, overwrite=True)
        g.attrs.update({"n_frames": int(n_frames), "fps": self.fps, "sample_rate": self.sample_rate,
                        "split": split, **_jsonable(dict(attrs))})
        self.clips.append(name)
        self.splits[name] = split
        self.root.attrs["clips"] = list(self.clips)  # readable even if writing stops half-way
        return ClipWriter(g, n_frames, self.frame_size, self.samples_per_frame, frames=frames)

    def drop_clip(self, name: str) -> None:
        """Forget a clip that failed half-way (its group is deleted)."""
        if name in self.clips:
            self.clips.remove(name)
            self.splits.pop(name, None)
            self.root.attrs["clips"] = list(self.clips)
        if name in self.root:
            del self.root[name]

    def close(self) -> dict[str, int]:
        counts = {s: sum(1 for v in self.splits.values() if v == s) for s in SPLITS}
        self.root.attrs.update({"clips": list(self.clips), "split_counts": counts, "complete": True})
        if self.final is not None:
            self.url = str(_swap_in(Path(self.url), self.final))
        return counts


def _swap_in(built: Path, final: Path) -> Path:
    """Put the finished `built` folder at `final`; the previous dataset there goes only after."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    built.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


# ---------------------------------------------------------------------------------------------
# Reading


class Clip:
    """One clip; array attributes are lazy Zarr arrays (slice them), small ones load on access."""

    def __init__(self, dataset: Dataset, name: str, group) -> None:
        self.dataset, self.name, self.group = dataset, name, group
        self.attrs = dict(group.attrs)
        self.n_frames = int(self.attrs["n_frames"])

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return f"<Clip {self.name} {self.n_frames} frames, split {self.split}>"

    split = property(lambda self: self.attrs["split"])
    text = property(lambda self: self.attrs.get("text"))
    landmarks = property(lambda self: self.group["landmarks"])

    @property
    def has_frames(self) -> bool:
        return "frames" in self.group

    @property
    def frames(self):
        if not self.has_frames:
            raise DatasetError(f"clip {self.name} of {self.dataset.url} has no frames (the dataset was made with "
                               "render off); use a dataset with frames for trainers that look at images")
        return self.group["frames"]

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The clip's still face and its landmarks (478, 2): the identity's portrait when the dataset
        stores identities, else the first frame."""
        ids = self.dataset.identities
        k = self.attrs.get("identity")
        if ids is not None and k is not None:
            return np.asarray(ids["image"][int(k)]), np.asarray(ids["landmarks"][int(k)], np.float32)
        return np.asarray(self.frames[0]), np.asarray(self.landmarks[0], np.float32)

    @property
    def audio(self) -> np.ndarray:
        return np.asarray(self.group["audio"][...])

    @property
    def coeffs(self) -> dict[str, np.ndarray]:
        """The clip's 3DMM coefficients: shape (60,), expression (T, 33), pose (T, 6), error (T,)
        (the fields of nodes.types.MorphCoeffs, which adds `image_size`)."""
        g = self.group["coeffs"]
        return {k: np.asarray(g[k][...]) for k in COEFF_FIELDS}

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frames the coefficients' pose refers to."""
        stored = self.group["coeffs"].attrs.get("image_size") if "coeffs" in self.group else None
        size = stored or self.dataset.frame_size
        return (int(size[0]), int(size[1]))

    @property
    def phoneme_items(self) -> list[tuple[str, float, float]] | None:
        """(phoneme, start s, end s) per phoneme, when the writer recorded them (the synthetic
        generator does; prepared real videos have none)."""
        items = self.attrs.get("phonemes")
        return None if items is None else [(str(p), float(s), float(e)) for p, s, e in items]

    def feature_names(self) -> list[str]:
        return sorted(self.group["features"].array_keys()) if "features" in self.group else []

    def features(self, variant: str):
        if variant not in self.feature_names():
            raise DatasetError(f"clip {self.name} has no {variant!r} features (it has {self.feature_names() or 'none'})")
        return self.group["features"][variant]

    def window(self, t0: int, length: int, fields: Sequence[str] = ("frames", "audio", "landmarks", "expression", "pose"),
               ) -> dict[str, np.ndarray]:
        """Frames t0 .. t0+length-1 with their audio (length * samples_per_frame samples) and curves."""
        if t0 < 0 or t0 + length > self.n_frames:
            raise DatasetError(f"window [{t0}, {t0 + length}) is outside clip {self.name} ({self.n_frames} frames)")
        spf = self.dataset.samples_per_frame
        out: dict[str, np.ndarray] = {}
        for f in fields:
            if f == "audio":
                out[f] = np.asarray(self.group["audio"][t0 * spf:(t0 + length) * spf])
            elif f in ("expression", "pose", "error"):
                out[f] = np.asarray(self.group["coeffs"][f][t0:t0 + length])
            elif f == "shape":
                out[f] = np.asarray(self.group["coeffs"]["shape"][...])
            elif f.startswith("features/"):
                out[f] = np.asarray(self.features(f.split("/", 1)[1])[t0:t0 + length])
            elif f in self.group:
                out[f] = np.asarray(self.group[f][t0:t0 + length])
            else:
                raise DatasetError(f"clip {self.name} has no field {f!r}")
        return out


class Windows(Sequence):
    """Every window of `length` frames (step `stride`) over a list of clips: a map-style dataset."""

    def __init__(self, dataset: Dataset, clips: Sequence[int], length: int, stride: int, fields: Sequence[str]) -> None:
        self.dataset, self.length, self.fields = dataset, int(length), tuple(fields)
        self.index: list[tuple[int, int]] = []
        for ci in clips:
            n = dataset.clip(ci).n_frames
            self.index.extend((ci, t0) for t0 in range(0, n - self.length + 1, stride))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        ci, t0 = self.index[k]
        out = self.dataset.clip(ci).window(t0, self.length, self.fields)
        out["clip"], out["t0"] = np.int64(ci), np.int64(t0)
        return out


class Dataset:
    def __init__(self, url: str) -> None:
        self.url = str(url)
        self.root = _open_group(self.url, "r")
        self.attrs = dict(self.root.attrs)
        if self.attrs.get("format") != FORMAT:
            raise DatasetError(f"{url} is not a {FORMAT} (its root has format={self.attrs.get('format')!r})")
        if int(self.attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise DatasetError(f"{url} has format version {self.attrs['format_version']}; this reader knows {FORMAT_VERSION}")
        self.names: list[str] = list(self.attrs["clips"])
        self.fps = float(self.attrs["fps"])
        self.sample_rate = int(self.attrs["sample_rate"])
        self.samples_per_frame = int(self.attrs["samples_per_frame"])
        self.frame_size = tuple(self.attrs["frame_size"])
        self.has_frames = bool(self.attrs.get("has_frames", True))
        self.identities = self.root["identities"] if "identities" in self.root else None
        self._clips: dict[str, Clip] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Clip]:
        return (self.clip(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"<Dataset {self.url}: {len(self)} clips, {self.frame_size[0]}x{self.frame_size[1]} @ {self.fps:g} fps>"

    def clip(self, i: int | str) -> Clip:
        name = self.names[i] if isinstance(i, (int, np.integer)) else i
        if name not in self._clips:
            if name not in self.names:
                raise DatasetError(f"dataset {self.url} has no clip {name!r}")
            self._clips[name] = Clip(self, name, self.root[name])
        return self._clips[name]

    def split(self, name: str) -> list[int]:
        if name not in SPLITS:
            raise DatasetError(f"split {name!r} is not one of {SPLITS}")
        return [i for i, c in enumerate(self) if c.split == name]

    def windows(self, length: int, *, stride: int | None = None, split: str | None = None,
                fields: Sequence[str] = ("frames", "audio", "landmarks", "expression", "pose")) -> Windows:
        clips = self.split(split) if split else list(range(len(self)))
        return Windows(self, clips, length, stride or length, fields)


def open_dataset(url: str) -> Dataset:
    """Open a dataset written by MakeSyntheticDataset or PrepareDataset (local path or fsspec URL)."""
    return Dataset(url)

