"""Decoding and encoding of images, audio and video: plain functions the I/O nodes wrap.

Trainers and dataset tools call these directly. Every failure is a `MediaError` (a NodeError,
shown to users without a traceback) naming the file and what was wrong with it.

Backends: Pillow for images, soundfile (libsndfile) for wav/flac/ogg, PyAV (FFmpeg) for
everything else and for video. Audio is returned as float32 mono in [-1, 1], resampled with a
polyphase filter (`scipy.signal.resample_poly`) to the rate asked for (16 kHz by default).

Decoding is tolerant, as the ffmpeg command line is: a packet the decoder rejects (typically a
truncated last AC-3 / AAC frame of a file cut short) is skipped with a warning naming the file
and the time, and its duration is filled with silence so later sound keeps its time; a demuxer
error ends the stream where it happened, with a warning. Only input of which nothing decodes
is refused. Warnings go to `warn` (the nodes pass their run log) or to this module's logger.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from graphcore.node import NodeError
from graphcore.outputs import part_path
from nodes.types import AudioClip
from trainers.data.audio_features import frame_count, resample_audio

LOG = logging.getLogger(__name__)
Warn = Callable[[str], None]
AUDIO_RATE = 16000
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + (".mp3", ".m4a", ".aac", ".opus", ".mp4", ".mov", ".mkv", ".webm")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif")


class MediaError(NodeError):
    """A media file is missing, empty, corrupt or of an unsupported kind."""


def _existing_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: file not found")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty (0 bytes)")
    return p


# ---------------------------------------------------------------------------------------
# Images


def working_size(h: int, w: int, max_side: int = 0) -> tuple[int, int]:
    """(h, w) shrunk, aspect kept, so that the longer side is at most `max_side` (0: as is)."""
    if not max_side or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def read_image(path: str | os.PathLike, max_side: int = 0) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); EXIF orientation applied, alpha dropped; shrunk
    (Lanczos, aspect kept) so that its longer side is at most `max_side` when that is set."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = _existing_file(path)
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            h, w = working_size(im.height, im.width, max_side)
            if (h, w) != (im.height, im.width):
                im = im.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
            return np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise MediaError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"{p}: image could not be decoded ({e})") from None


def image_shape(path: str | os.PathLike, max_side: int = 0) -> tuple[int, int, int]:
    """(H, W, 3) of what read_image returns, from the file's header only (nothing decoded)."""
    from PIL import Image

    with Image.open(_existing_file(path)) as im:
        w, h = im.size
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that turn the image on its side
            w, h = h, w
    return (*working_size(h, w, max_side), 3)


# ---------------------------------------------------------------------------------------
# Audio


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) samples of any dtype → float32 mono (channel mean)."""
    a = np.asarray(samples)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        a = (a.astype(np.float64) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    if a.ndim == 2:
        a = a.mean(axis=1)
    return a.astype(np.float32, copy=False)


def _packet_time(packet, stream) -> float:
    pts = packet.pts if packet.pts is not None else packet.dts
    return float(pts * stream.time_base) if pts is not None and stream.time_base else float("nan")


def _tolerant_packets(container, stream, p: Path, warn: Warn, what: str):
    """(packet, decoded frames) of one stream; corrupt packets give (packet, None) after a warning."""
    import av

    try:
        for packet in container.demux(stream):
            if packet.is_corrupt:  # the demuxer flags a packet cut short (a truncated last frame)
                warn(f"{p}: corrupt (truncated) {what} packet at {_packet_time(packet, stream):.3f} s skipped")
                yield packet, None
                continue
            try:
                yield packet, packet.decode()
            except av.FFmpegError as e:
                warn(f"{p}: corrupt {what} packet at {_packet_time(packet, stream):.3f} s skipped ({e})")
                yield packet, None
    except av.FFmpegError as e:  # the container itself ends early (cut short, damaged index)
        warn(f"{p}: {what} stream ends early, after a demuxing error ({e})")


def _decode_audio_stream(container, stream, p: Path, warn: Warn) -> tuple[np.ndarray, int]:
    """All samples of one PyAV audio stream as float32 mono at the stream's own rate.

    A packet that does not decode becomes silence of its duration (when the container says it).
    """
    import av

    resampler = av.AudioResampler(format="fltp")  # keep layout and rate, planar float
    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    parts: list[np.ndarray] = []
    decoded = 0
    for packet, frames in _tolerant_packets(container, stream, p, warn, "audio"):
        if frames is None:
            if parts and packet.duration and stream.time_base and rate:
                parts.append(np.zeros(int(round(float(packet.duration * stream.time_base) * rate)), np.float32))
            continue
        for frame in frames:
            rate = int(frame.sample_rate) or rate
            decoded += frame.samples
            for f in resampler.resample(frame):
                parts.append(f.to_ndarray().mean(axis=0))
    for f in resampler.resample(None):
        parts.append(f.to_ndarray().mean(axis=0))
    if decoded == 0:
        raise MediaError(f"{p}: audio could not be decoded (no packet of its {stream.codec_context.name} stream decodes)")
    samples = np.concatenate(parts).astype(np.float32)
    return samples, rate


def _read_audio_av(p: Path, warn: Warn) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise MediaError(f"{p}: has no audio stream")
            return _decode_audio_stream(container, container.streams.audio[0], p, warn)
    except av.FFmpegError as e:
        raise MediaError(f"{p}: audio could not be decoded ({e})") from None


def read_audio(path: str | os.PathLike, sample_rate: int = AUDIO_RATE, warn: Warn | None = None) -> AudioClip:
    """An audio file (or the first audio stream of a video) as float32 mono at `sample_rate`.

    wav/flac/ogg go through soundfile; other containers (mp3, m4a, mp4, ...) through PyAV,
    tolerantly (see the module docstring; `warn` receives the warnings).
    """
    warn = warn or LOG.warning
    p = _existing_file(path)
    samples = rate = None
    if p.suffix.lower() in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            data, rate = sf.read(str(p), dtype="float32", always_2d=True)
            samples = to_mono_float(data)
        except (sf.LibsndfileError, RuntimeError, TypeError):
            samples = None  # e.g. a .wav with a codec libsndfile lacks: let FFmpeg try
    if samples is None:
        samples, rate = _read_audio_av(p, warn)
    if len(samples) == 0 or not rate:
        raise MediaError(f"{p}: contains no audio samples")
    if not np.isfinite(samples).all():
        raise MediaError(f"{p}: audio contains NaN or infinite samples")
    samples = resample_audio(samples, rate, sample_rate)
    return AudioClip(np.clip(samples, -1.0, 1.0).astype(np.float32), int(sample_rate))


def write_audio(path: str | os.PathLike, audio: AudioClip) -> Path:
    """A 16-bit PCM file (format from the extension: wav, flac, ogg)."""
    import soundfile as sf

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if p.suffix.lower() in (".wav", ".flac", ".aif", ".aiff") else None
    sf.write(str(p), audio.samples, int(audio.sample_rate), subtype=subtype)
    return p


# ---------------------------------------------------------------------------------------
# Video


@dataclasses.dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # the container's count; 0 when it does not say
    has_audio: bool


@dataclasses.dataclass
class Video:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float
    audio: AudioClip | None


def _open_video(p: Path):
    import av

    try:
        container = av.open(str(p))
    except av.FFmpegError as e:
        raise MediaError(f"{p}: not a readable video ({e})") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{p}: has no video stream")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 25.0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, size, frame count and whether there is sound, without decoding."""
    p = _existing_file(path)
    with _open_video(p) as container:
        s = container.streams.video[0]
        return VideoInfo(_stream_fps(s), int(s.codec_context.width), int(s.codec_context.height),
                         int(s.frames or 0), bool(container.streams.audio))


def iter_video_frames(
    path: str | os.PathLike,
    *,
    chunk: int = 64,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    warn: Warn | None = None,
) -> Iterator[np.ndarray]:
    """Decoded frames in chunks of uint8 RGB (n, H, W, 3), for flat-memory processing.

    `size` = (width, height) rescales each frame with FFmpeg's bicubic scaler while decoding.
    A packet that does not decode is skipped with a warning (see the module docstring).
    """
    import av

    warn = warn or LOG.warning
    p = _existing_file(path)
    container = _open_video(p)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        buf: list[np.ndarray] = []
        n = 0
        width, height = size if size else (None, None)
        for _, frames in _tolerant_packets(container, stream, p, warn, "video"):
            for frame in frames or ():
                if max_frames is not None and n >= max_frames:
                    break
                buf.append(frame.to_ndarray(format="rgb24", width=width, height=height,
                                            interpolation="BICUBIC" if size else None))
                n += 1
                if len(buf) == chunk:
                    yield np.stack(buf)
                    buf = []
            if max_frames is not None and n >= max_frames:
                break
        if buf:
            yield np.stack(buf)
        if n == 0:
            raise MediaError(f"{p}: no video frames could be decoded")
    except av.FFmpegError as e:
        raise MediaError(f"{p}: video could not be decoded ({e})") from None
    finally:
        container.close()


def scaled_size(width: int, height: int, want_w: int = 0, want_h: int = 0) -> tuple[int, int] | None:
    """(w, h) for a resize request where 0 means 'keep the aspect ratio' (None: no resize)."""
    if want_w <= 0 and want_h <= 0:
        return None
    if want_w <= 0:
        want_w = max(1, round(width * want_h / height))
    if want_h <= 0:
        want_h = max(1, round(height * want_w / width))
    return int(want_w), int(want_h)


def read_video(
    path: str | os.PathLike,
    *,
    max_frames: int | None = None,
    width: int = 0,
    height: int = 0,
    audio: bool = True,
    sample_rate: int = AUDIO_RATE,
    progress: Callable[[int, int], None] | None = None,
    warn: Warn | None = None,
) -> Video:
    """Frames (T, H, W, 3) uint8, the average frame rate and the sound (None if it has none).

    Frames are taken in decode order (variable-rate videos are not retimed); `width`/`height`
    resize (0 = keep, or follow the other's aspect ratio). The sound is cut to the duration of
    the frames returned (AAC decoders add up to one codec frame of padding, and `max_frames`
    may stop early); it is never padded. `progress(done, total)` follows decoding; `warn`
    receives the warnings of tolerant decoding.
    """
    info = probe_video(path)
    size = scaled_size(info.width, info.height, width, height)
    total = max_frames or info.frames
    chunks: list[np.ndarray] = []
    done = 0
    for chunk in iter_video_frames(path, max_frames=max_frames, size=size, warn=warn):
        chunks.append(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    frames = np.concatenate(chunks)
    clip = read_video_sound(path, info, len(frames), sample_rate, warn) if audio else None
    return Video(frames, info.fps, clip)


def read_video_sound(path: str | os.PathLike, info: VideoInfo, n_frames: int, sample_rate: int = AUDIO_RATE,
                     warn: Warn | None = None) -> AudioClip | None:
    """The sound of a video cut to the duration of its first `n_frames` frames (None if it has none)."""
    if not info.has_audio:
        return None
    clip = read_audio(path, sample_rate, warn=warn)
    keep = int(round(n_frames / info.fps * clip.sample_rate))
    return AudioClip(clip.samples[:keep], clip.sample_rate)


def _even_pad(frames: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sides: repeat the last row/column where one is odd."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def _blocks(frames: Any, size: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of `size` frames of an array or a lazy view (read chunk by chunk)."""
    if hasattr(frames, "chunks"):
        return frames.chunks(size)
    return (frames[i:i + size] for i in range(0, len(frames), size))


def write_video(
    path: str | os.PathLike,
    frames: Any,  # an ndarray, or a lazy graphcore.stream.Chunks view
    fps: float = 25.0,
    audio: AudioClip | None = None,
    *,
    crf: int = 18,
    preset: str = "medium",
    audio_bitrate: int = 128_000,
) -> Path:
    """Encode frames (T, H, W, 3) uint8 to an .mp4: H.264 yuv420p + AAC mono.

    Odd sides are padded by one edge-replicated row/column. With audio, the result lasts as
    long as the shorter stream: n = min(T, frame_count(audio)) frames are kept and the sound is
    cut to n / fps seconds (it is never padded). The file is written under a temporary name and
    renamed when complete, so a failure never leaves a truncated video at `path`.

    `frames` may be a lazy view (graphcore.stream.Chunks): it is encoded as its chunks are
    read, never held whole; the file is the same as from the array.
    """
    import av

    p = Path(path)
    if not hasattr(frames, "chunks"):
        frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"{p}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if not (fps > 0 and math.isfinite(fps)):
        raise MediaError(f"{p}: frame rate must be positive, got {fps}")
    n = len(frames)
    if audio is not None:
        n = min(n, frame_count(len(audio.samples), audio.sample_rate, fps))
    if n == 0:
        raise MediaError(f"{p}: nothing to write (0 frames" + (", or audio shorter than half a frame)" if audio is not None else ")"))
    rate = Fraction(fps).limit_denominator(1001)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(p)  # renamed into place when complete; a killed run's is swept by the next
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            h, w = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
            vs = container.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": str(int(crf)), "preset": preset}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=int(audio.sample_rate), layout="mono")
                astream.bit_rate = int(audio_bitrate)
                sound = np.asarray(audio.samples, dtype=np.float32)[: int(round(n / fps * audio.sample_rate))]
            sent = 0  # audio samples muxed so far: interleave sound with the frames it goes with
            for i0, block in zip(range(0, n, 32), _blocks(frames, 32)):
                chunk = _even_pad(block[:n - i0])
                for j, img in enumerate(chunk):
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                    vf.pts = i0 + j
                    container.mux(vs.encode(vf))
                if astream is not None:
                    until = min(len(sound), int(round((i0 + len(chunk)) / fps * audio.sample_rate)))
                    if until > sent:
                        af = av.AudioFrame.from_ndarray(sound[None, sent:until], format="flt", layout="mono")
                        af.sample_rate, af.pts = int(audio.sample_rate), sent
                        container.mux(astream.encode(af))
                        sent = until
            container.mux(vs.encode(None))
            if astream is not None:
                container.mux(astream.encode(None))
        os.replace(tmp, p)
    except av.FFmpegError as e:
        raise MediaError(f"{p}: video could not be encoded ({e})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
