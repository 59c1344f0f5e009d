"""Write assets/checkpoints/yi/MANIFEST.json for the bundled checkpoints (and optionally store
their floating-point tensors as float16, which halves the files; loading casts them back).

    python -m nodes.yi.bundle --half --command-audio "..." --command-gan "..."
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from .inference import AUDIO_ARCH, BUNDLED, GAN_ARCH, bundled


def to_half(path: Path) -> None:
    import torch

    export = torch.load(path, map_location="cpu", weights_only=True)
    export["generator"] = {k: (v.half() if v.is_floating_point() else v) for k, v in export["generator"].items()}
    export["stored_as"] = "float16"
    tmp = path.with_suffix(".tmp")
    torch.save(export, tmp)
    os.replace(tmp, path)


def describe(path: Path, command: str) -> dict:
    import torch

    export = torch.load(path, map_location="cpu", weights_only=True)
    entry = {
        "file": str(path.relative_to(path.parents[3])),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "stored_as": export.get("stored_as", "float32"),
        "model_config": export["model_config"],
        "train_config": export["train_config"],
        "data": export["data"],
        "steps": export["step"],
        "wall_s": round(float(export["wall_s"]), 1),
        "final_losses": export["final_losses"],
        "command": command,
    }
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half", action="store_true", help="store float tensors as float16")
    ap.add_argument("--command-audio", required=True)
    ap.add_argument("--command-gan", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    out = {"made_by": "python -m nodes.yi.bundle" + (" --half" if args.half else ""), "note": args.note, "checkpoints": {}}
    for arch, command in ((AUDIO_ARCH, args.command_audio), (GAN_ARCH, args.command_gan)):
        path = bundled(arch)
        if args.half:
            to_half(path)
        out["checkpoints"][Path(BUNDLED[arch]).name] = describe(path, command)
    manifest = bundled(AUDIO_ARCH).parent / "MANIFEST.json"
    manifest.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {manifest}")


if __name__ == "__main__":
    main()


def plot_metrics(metrics: Path, panels: dict[str, list[str]], png: Path, title: str) -> None:
    """Loss curves of a training run's metrics.jsonl, one panel per group of keys (docs figures).

    python -c "from nodes.yi.bundle import *; plot_metrics(...)"
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for k in keys:
            ax.plot([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r], label=k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def video_strips(rows: dict[str, Path], frames: list[int], jpg: Path, size: int = 256,
                 crop: tuple[slice, slice] | None = None) -> None:
    """One labelled row of frames per video (docs figures: the demos before/after a retrain).

    python -c "from nodes.yi.bundle import *; video_strips({...}, [...], Path(...))"
    """
    import cv2
    import numpy as np

    from nodes.io.media import read_video

    strips = []
    for label, path in rows.items():
        video = read_video(str(path))
        tiles = [cv2.resize(video.frames[i], (size, size), interpolation=cv2.INTER_AREA) for i in frames]
        tiles = [t[crop] if crop else t for t in tiles]
        strip = np.ascontiguousarray(np.concatenate(tiles, 1)[..., ::-1])
        cv2.putText(strip, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(strip, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        strips.append(strip)
    cv2.imwrite(str(jpg), np.concatenate(strips, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])
