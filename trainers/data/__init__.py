"""Training data over the project's Zarr dataset layout (docs/dataset-format.md): clips held in
memory on first use, audio-aligned windows of T frames, frame pairs and random crops."""
from .clips import ClipStore, crop_resize, random_crop_box, sample_windows

__all__ = ["ClipStore", "crop_resize", "random_crop_box", "sample_windows"]
