"""Write assets/checkpoints/yi/MANIFEST.json for the bundled checkpoints (and optionally store
their floating-point tensors as float16, which halves the files; loading casts them back).

    python -m nodes.yi.bundle --half --command-audio "..." --command-gan "..."
"""
from __future__ import annotations

import argparse
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
    from trainers.exports import export_summary

    return {"file": str(path.relative_to(path.parents[3])), **export_summary(path), "command": command}


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


if __name__ == "__main__":
    main()
