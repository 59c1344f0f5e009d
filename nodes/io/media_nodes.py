"""Media I/O nodes: load images, audio and video; save an H.264 + AAC .mp4.

Thin wrappers over nodes/io/media.py (which trainers and dataset tools use directly).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore.node import In, InputFile, Node, Out, OutputFile, RunContext
from graphcore.stream import Chunks
from nodes.io import media
from nodes.types import AudioClip


class LoadImage(Node):
    """Read an image file (png, jpg, webp, ...) as uint8 RGB; EXIF orientation is applied.
    `max_side` loads a large photo at a working resolution (e.g. `--set portrait.max_side=512`)."""

    category = "io"
    outputs = {"image": Out("Image")}

    class Params(BaseModel):
        path: str = InputFile(description="image file", extensions=media.IMAGE_EXTENSIONS)
        max_side: int = Field(0, ge=0, le=65536, description="shrink (Lanczos, aspect kept) so the longer side is at "
                                                              "most this many pixels; 0: the file's size")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"image": media.read_image(ctx.resolve_path(self.params.path), self.params.max_side)}

    def size_hints(self, inputs: Mapping[str, Mapping[str, Any]], resolve: Callable[[str], Path]) -> dict[str, dict[str, Any]]:
        """The image's shape from its file's header (for the up-front resource check)."""
        return {"image": {"shape": media.image_shape(resolve(self.params.path), self.params.max_side)}}


class ImageToFrames(Node):
    """An image as a frame sequence (the image repeated `count` times, T = count), so that an Image
    can feed a Frames input. The editor inserts it when an Image output is dropped on a Frames input."""

    category = "io"
    adapter = True
    inputs = {"image": In("Image")}
    outputs = {"frames": Out("Frames", "(count, H, W, 3)")}

    class Params(BaseModel):
        count: int = Field(1, ge=1, le=100_000, description="frames in the sequence")

    def run(self, ctx: RunContext, image: np.ndarray) -> dict[str, Any]:
        return {"frames": np.repeat(np.asarray(image)[None], self.params.count, axis=0)}


class LoadAudio(Node):
    """Read the sound of an audio or video file as mono float32, resampled (16 kHz by default)."""

    category = "io"
    outputs = {"audio": Out("Audio")}

    class Params(BaseModel):
        path: str = InputFile(description="audio file (wav, flac, ogg, mp3, m4a) or a video with sound",
                              extensions=media.AUDIO_EXTENSIONS)
        sample_rate: int = Field(media.AUDIO_RATE, ge=8000, le=192000, description="output sample rate in Hz")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"audio": media.read_audio(ctx.resolve_path(self.params.path), self.params.sample_rate, warn=ctx.log)}


class LoadVideo(Node):
    """Decode a video's frames (uint8 RGB), its sound (16 kHz mono) and its frame rate.

    A video without sound gives silence as long as the frames (and says so in the log).
    """

    category = "io"
    outputs = {
        "frames": Out("Frames", stream=True),
        "audio": Out("Audio"),
        "fps": Out("Scalar", "average frame rate of the video stream"),
    }

    class Params(BaseModel):
        path: str = InputFile(description="video file (mp4, mov, mkv, avi, webm)", extensions=media.VIDEO_EXTENSIONS)
        max_frames: int = Field(0, ge=0, description="decode at most this many frames (0: all); the sound is cut to match")
        width: int = Field(0, ge=0, le=8192, description="resize to this width (0: keep, or follow height's aspect)")
        height: int = Field(0, ge=0, le=8192, description="resize to this height (0: keep, or follow width's aspect)")
        sample_rate: int = Field(media.AUDIO_RATE, ge=8000, le=192000, description="sample rate of the audio output")

    def run(self, ctx: RunContext) -> Iterator[dict[str, Any]]:
        """Streams the frames as they are decoded (media.read_video's steps, chunk by chunk)."""
        p = self.params
        path = ctx.resolve_path(p.path)
        info = media.probe_video(path)
        total = p.max_frames or info.frames
        count = 0
        for chunk in media.iter_video_frames(path, max_frames=p.max_frames or None, warn=ctx.log,
                                             size=media.scaled_size(info.width, info.height, p.width, p.height)):
            count += len(chunk)
            yield {"frames": chunk}
            ctx.progress(count, max(total, count), "decoding frames")
        audio = media.read_video_sound(path, info, count, p.sample_rate, warn=ctx.log)
        if audio is None:
            ctx.log(f"{path.name} has no sound: the audio output is silence of the video's length")
            audio = AudioClip(np.zeros(int(round(count / info.fps * p.sample_rate)), np.float32), p.sample_rate)
        yield {"audio": audio, "fps": float(info.fps)}


class SaveVideo(Node):
    """Write frames (and optional sound) to an .mp4: H.264 yuv420p + AAC, via PyAV.

    With sound, the video lasts as long as the shorter stream (extra frames or sound are cut,
    never padded). Odd frame sides are padded by one repeated edge row/column.
    """

    category = "io"
    inputs = {
        "frames": In("Frames", "encoded as its chunks are read", stream=True),
        "audio": In("Audio", "sound to mux", optional=True),
        "fps": In("Scalar", "frame rate (overrides the fps parameter)", optional=True),
    }
    outputs = {"path": Out("Path", "the written .mp4")}

    class Params(BaseModel):
        path: str = OutputFile("output.mp4", description="where to write the .mp4", extensions=(".mp4",))
        fps: float = Field(25.0, gt=0, le=240, description="frame rate when the fps input is not connected")
        crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor (lower: better, larger)")
        preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"] = Field(
            "medium", description="x264 speed/size trade-off")
        audio_bitrate: int = Field(128_000, ge=16_000, le=512_000, description="AAC bit rate in bit/s")

    def run(self, ctx: RunContext, frames: Chunks, audio: AudioClip | None = None, fps: float | None = None) -> dict[str, Any]:
        p = self.params
        path = ctx.resolve_path(p.path)
        rate = float(fps) if fps is not None else p.fps
        media.write_video(path, frames, rate, audio, crf=p.crf, preset=p.preset, audio_bitrate=p.audio_bitrate)
        return {"path": str(path)}
