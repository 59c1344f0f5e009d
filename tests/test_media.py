"""Media I/O: images, audio (soundfile + PyAV paths), video round trips checked with ffprobe."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from graphcore.node import NodeError, RunContext
from graphcore.stream import run_whole
from nodes.io import media
from nodes.io.media_nodes import LoadAudio, LoadImage, LoadVideo, SaveVideo
from nodes.types import AudioClip

SR = 16000


def make_ctx(tmp_path: Path, events: list | None = None) -> RunContext:
    sink = (lambda kind, data: events.append((kind, dict(data)))) if events is not None else (lambda k, d: None)
    return RunContext(node_id="n", node_type="T", key="k", tmp_dir=tmp_path, emit=sink, workflow_dir=tmp_path)


def sine(freq: float, seconds: float, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def gradient_frames(t: int, h: int, w: int) -> np.ndarray:
    """Smooth moving gradients: compress well, so decoded frames stay close to the originals."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = 20 + xx * 160 // max(1, w - 1) + 2 * i
        out[i, ..., 1] = 30 + yy * 190 // max(1, h - 1)
        out[i, ..., 2] = 128 + 60 * np.sin((xx + yy + 4 * i) / 17.0)
    return out


def ffprobe(path: Path) -> dict:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=codec_type,codec_name,pix_fmt,width,height,duration,nb_frames,sample_rate,channels,r_frame_rate",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


# ---------------------------------------------------------------------------------------- images


def test_load_image_png_and_relative_path(tmp_path):
    from PIL import Image

    img = gradient_frames(1, 37, 53)[0]
    Image.fromarray(img).save(tmp_path / "a.png")
    out = LoadImage({"path": "a.png"}).run(make_ctx(tmp_path))["image"]
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    np.testing.assert_array_equal(out, img)


def test_load_image_at_a_working_resolution(tmp_path):
    """max_side shrinks a large photo (aspect kept) and the header-only shape says so; an image
    already small enough comes back byte for byte."""
    from PIL import Image

    img = gradient_frames(1, 200, 300)[0]
    Image.fromarray(img).save(tmp_path / "a.png")
    small = LoadImage({"path": "a.png", "max_side": 100}).run(make_ctx(tmp_path))["image"]
    assert small.shape == (67, 100, 3) == media.image_shape(tmp_path / "a.png", 100)
    # a smooth gradient stays one when shrunk: compare with a plain subsampling of it
    assert np.abs(small.astype(int) - img[1::3, 1::3][:67, :100]).mean() < 3
    same = LoadImage({"path": "a.png", "max_side": 300}).run(make_ctx(tmp_path))["image"]
    assert same.tobytes() == img.tobytes() and media.image_shape(tmp_path / "a.png", 300) == (200, 300, 3)


def test_load_image_rgba_and_grey_become_rgb(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 9, 4), 200, np.uint8)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((8, 9), 70, np.uint8)).save(tmp_path / "grey.jpg")
    assert media.read_image(tmp_path / "rgba.png").shape == (8, 9, 3)
    grey = media.read_image(tmp_path / "grey.jpg")
    assert grey.shape == (8, 9, 3) and abs(int(grey.mean()) - 70) <= 2


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"plain text, no image here", "not a readable image"),
    (b"\x89PNG\r\n\x1a\nnot really", "could not be decoded"),  # truncated png
])
def test_bad_images_name_the_file(tmp_path, content, needle):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(NodeError) as e:
        LoadImage({"path": str(p)}).run(make_ctx(tmp_path))
    assert "bad.png" in str(e.value) and needle in str(e.value)


def test_missing_image(tmp_path):
    with pytest.raises(media.MediaError, match="nope.png: file not found"):
        media.read_image(tmp_path / "nope.png")


# ----------------------------------------------------------------------------------------- audio


def test_wav_stereo_44k_is_resampled_to_16k_mono(tmp_path):
    left, right = sine(440, 1.5, 44100), sine(440, 1.5, 44100, amp=0.3)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 44100, subtype="PCM_16")
    clip = LoadAudio({"path": "s.wav"}).run(make_ctx(tmp_path))["audio"]
    assert clip.sample_rate == SR and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert len(clip.samples) == 24000
    assert abs(dominant_freq(clip.samples, SR) - 440) < 1.5
    # channel mean: amplitude (0.5 + 0.3) / 2
    assert abs(np.abs(clip.samples[1000:-1000]).max() - 0.4) < 0.01


@pytest.mark.parametrize("ext", [".flac", ".ogg"])
def test_soundfile_formats(tmp_path, ext):
    sf.write(tmp_path / f"s{ext}", sine(300, 1.0, 22050), 22050)
    clip = media.read_audio(tmp_path / f"s{ext}")
    assert abs(len(clip.samples) - SR) <= 1 and abs(dominant_freq(clip.samples, SR) - 300) < 2


@pytest.mark.parametrize("codec,ext", [("libmp3lame", ".mp3"), ("aac", ".m4a")])
def test_compressed_audio_through_pyav(tmp_path, codec, ext):
    import av

    x = sine(500, 2.0, 24000)
    p = tmp_path / f"s{ext}"
    with av.open(str(p), "w") as c:
        s = c.add_stream(codec, rate=24000, layout="mono")
        f = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
        f.sample_rate, f.pts = 24000, 0
        c.mux(s.encode(f))
        c.mux(s.encode(None))
    clip = media.read_audio(p)
    assert abs(clip.duration - 2.0) < 0.1  # codec padding
    assert abs(dominant_freq(clip.samples, SR) - 500) < 2


def test_espeak_speech_loads(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "say.wav"), "hello world"], check=True)
    clip = media.read_audio(tmp_path / "say.wav")
    info = sf.info(str(tmp_path / "say.wav"))
    assert abs(clip.duration - info.duration) < 1e-3 and np.abs(clip.samples).max() > 0.05


@pytest.mark.parametrize("name,content,needle", [
    ("e.wav", b"", "empty"),
    ("c.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", "could not be decoded"),
    ("c.mp3", b"this is not an mp3 file at all" * 10, "could not be decoded"),
])
def test_bad_audio_names_the_file(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(NodeError) as e:
        LoadAudio({"path": name}).run(make_ctx(tmp_path))
    assert name in str(e.value) and needle in str(e.value)


def test_video_without_sound_is_an_audio_error(tmp_path):
    media.write_video(tmp_path / "silent.mp4", gradient_frames(5, 32, 32), 25)
    with pytest.raises(media.MediaError, match="silent.mp4: has no audio stream"):
        media.read_audio(tmp_path / "silent.mp4")


# ----------------------------------------------------------------------------------------- video


def test_save_video_decodes_with_pyav_and_ffprobe(tmp_path):
    frames = gradient_frames(50, 96, 128)
    x = np.zeros(3 * SR, np.float32)  # 3 s of sound for 2 s of frames: sound is cut
    x[SR:SR + SR // 2] = sine(440, 0.5)  # a tone from 1.0 s to 1.5 s marks A/V sync
    events: list = []
    out = run_whole(SaveVideo({"path": "out/v.mp4", "crf": 12}), make_ctx(tmp_path, events), frames=frames,
                    audio=AudioClip(x, SR))["path"]
    assert Path(out) == tmp_path / "out" / "v.mp4"
    probe = ffprobe(Path(out))
    v, a = probe["video"], probe["audio"]
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p", 128, 96)
    assert v["r_frame_rate"] == "25/1" and int(v["nb_frames"]) == 50
    assert abs(float(v["duration"]) - 2.0) < 1e-3
    assert (a["codec_name"], int(a["sample_rate"]), a["channels"]) == ("aac", SR, 1)
    assert abs(float(a["duration"]) - 2.0) < 0.07  # one AAC frame (64 ms) of slack

    back = media.read_video(out)
    assert back.fps == 25.0 and back.frames.shape == frames.shape
    mse = np.mean((back.frames.astype(np.float64) - frames) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35
    onset = np.argmax(np.abs(back.audio.samples) > 0.1) / SR
    assert abs(onset - 1.0) < 0.01
    assert abs(back.audio.duration - 2.0) < 1e-3


def test_save_video_odd_size_and_short_audio(tmp_path):
    frames = gradient_frames(40, 45, 61)
    audio = AudioClip(sine(220, 1.01), SR)  # 25.25 frames of sound -> 25 frames kept
    out = media.write_video(tmp_path / "odd.mp4", frames, 25, audio)
    probe = ffprobe(out)
    assert (probe["video"]["width"], probe["video"]["height"]) == (62, 46)
    assert int(probe["video"]["nb_frames"]) == 25
    back = media.read_video(out)
    # the padded column/row repeat the edge; the original area is intact
    assert np.abs(back.frames[:, :45, :61].astype(int) - frames[:25]).mean() < 3
    assert np.abs(back.frames[:, :, 61].astype(int) - back.frames[:, :, 60]).mean() < 4


def test_save_video_fractional_fps_and_fps_input(tmp_path):
    node = SaveVideo({"path": "f.mp4"})
    out = node.run(make_ctx(tmp_path), frames=gradient_frames(30, 32, 32), fps=29.97)["path"]
    probe = ffprobe(Path(out))
    assert probe["video"]["r_frame_rate"] == "2997/100"
    assert abs(float(probe["video"]["duration"]) - 30 / 29.97) < 1e-3
    assert "audio" not in probe


def test_save_video_rejects_bad_frames(tmp_path):
    with pytest.raises(NodeError, match="nothing to write"):
        media.write_video(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(NodeError, match="uint8"):
        media.write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32))
    assert not list(tmp_path.iterdir())  # no partial files left behind


def test_load_video_node(tmp_path):
    frames = gradient_frames(30, 64, 96)
    media.write_video(tmp_path / "v.mp4", frames, 25, AudioClip(sine(300, 1.2), SR))
    events: list = []
    out = run_whole(LoadVideo({"path": "v.mp4", "max_frames": 10, "width": 48}), make_ctx(tmp_path, events))
    assert out["frames"].shape == (10, 32, 48, 3) and out["fps"] == 25.0
    assert out["audio"].sample_rate == SR and len(out["audio"].samples) == int(10 / 25 * SR)
    assert any(k == "progress" for k, _ in events)

    media.write_video(tmp_path / "mute.mp4", frames[:7], 25)
    events.clear()
    out = run_whole(LoadVideo({"path": "mute.mp4"}), make_ctx(tmp_path, events))
    assert out["frames"].shape == (7, 64, 96, 3)
    assert len(out["audio"].samples) == int(7 / 25 * SR) and not out["audio"].samples.any()
    assert any(k == "log" and "no sound" in d["message"] for k, d in events)


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "v.mp4")])
def test_bad_video_names_the_file(tmp_path, content, needle):
    (tmp_path / "v.mp4").write_bytes(content)
    with pytest.raises(NodeError) as e:
        run_whole(LoadVideo({"path": "v.mp4"}), make_ctx(tmp_path))
    assert "v.mp4" in str(e.value) and needle in str(e.value)


def test_image_is_not_a_video(tmp_path):
    from PIL import Image

    Image.fromarray(gradient_frames(1, 8, 8)[0]).save(tmp_path / "i.png")
    # FFmpeg reads a png as a one-frame video; a text file is refused with its name
    assert media.read_video(tmp_path / "i.png").frames.shape == (1, 8, 8, 3)
    (tmp_path / "t.mp4").write_text("hello")
    with pytest.raises(media.MediaError, match="t.mp4"):
        media.read_video(tmp_path / "t.mp4")


def _talking_file(tmp_path: Path, codec: str, ext: str, video: bool = True, faststart: bool = True) -> Path:
    """A 2 s clip (440 Hz tone, optional 64x64 test video) written by the ffmpeg command line."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path / f"{codec}{'_v' if video else ''}{'' if faststart else '_moov_last'}.{ext}"
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    if video:
        cmd += ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", codec] + (["-movflags", "+faststart"] if faststart and ext in ("mp4", "m4a") else []) + [str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _truncate(path: Path, nbytes: int) -> Path:
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(path.read_bytes()[:-nbytes])
    return cut


@pytest.mark.parametrize("codec,ext", [("ac3", "mp4"), ("aac", "mp4"), ("aac", "m4a"), ("ac3", "ac3")])
def test_truncated_last_audio_frame_loads_with_a_warning(tmp_path, codec, ext):
    whole = _talking_file(tmp_path, codec, ext, video=ext == "mp4")
    full = media.read_audio(whole).samples
    cut = _truncate(whole, 300)  # the last packet of the file (an audio frame) loses its tail
    events: list = []
    clip = LoadAudio({"path": str(cut)}).run(make_ctx(tmp_path, events))["audio"]
    warnings = [str(data) for _, data in events]
    assert 0.85 * len(full) < len(clip.samples) <= len(full)
    # what was decoded is the same sound
    n = len(clip.samples) - 2000
    assert np.abs(clip.samples[1000:n] - full[1000:n]).max() < 1e-3
    if ext != "ac3":  # a raw .ac3 stream just ends: FFmpeg's parser drops the partial frame silently
        assert any(str(cut) in w and " s skipped" in w for w in warnings), warnings
        secs = [float(w.split(" packet at ")[1].split(" s ")[0]) for w in warnings if " packet at " in w]
        assert all(1.5 < s < 2.0 for s in secs), warnings  # names the time: near the end


def test_truncated_video_file_loads_frames_and_sound(tmp_path):
    cut = _truncate(_talking_file(tmp_path, "ac3", "mp4"), 300)
    events: list = []
    out = run_whole(LoadVideo({"path": str(cut)}), make_ctx(tmp_path, events))
    warnings = [str(data) for _, data in events]
    assert out["frames"].shape[1:] == (64, 64, 3) and len(out["frames"]) >= 45
    assert len(out["audio"].samples) > 0.9 * len(out["frames"]) / 25.0 * 16000
    assert any(str(cut) in w and "audio packet" in w for w in warnings), warnings


def test_really_undecodable_audio_is_refused(tmp_path):
    # moov at the end: cutting the file loses its index, as with the ffmpeg command line
    cut = _truncate(_talking_file(tmp_path, "aac", "mp4", faststart=False), 300)
    with pytest.raises(media.MediaError, match=str(cut.name)):
        media.read_audio(cut)
    # a header followed by garbage: nothing decodes
    whole = _talking_file(tmp_path, "aac", "m4a")
    data = bytearray(whole.read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = bytes(len(data) - start)
    zeroed = tmp_path / "zeroed.m4a"
    zeroed.write_bytes(bytes(data))
    with pytest.raises(media.MediaError, match="could not be decoded"):
        media.read_audio(zeroed)

