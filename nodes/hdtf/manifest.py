"""Write assets/checkpoints/MANIFEST.json from the bundled model exports.

    python -m nodes.hdtf.manifest assets/checkpoints

Each entry: sha256, size, architecture config, training config, what it was trained on,
steps, wall time, final losses and the exact command that produced it. Everything but the
command and machine note is read from the checkpoint itself, so the manifest cannot drift
from the file.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

COMMANDS = {
    "hdtf_animation_tiny.pt": "graphrun workflows/train_animation.yaml --cache out/cache",
    "hdtf_flow_video_tiny.pt": "graphrun workflows/train_flow_video.yaml --cache out/cache",
}


def entry(path: Path) -> dict:
    from trainers.exports import export_summary

    return {**export_summary(path), "command": COMMANDS.get(path.name, "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--machine", default=f"{platform.machine()} CPU, 2 cores shared with other jobs, torch threads=1")
    args = ap.parse_args()
    checkpoints = {p.name: entry(p) for p in sorted(args.folder.glob("*.pt"))}
    manifest = {
        "about": "HDTF tiny checkpoints trained by this project on its synthetic talking-face dataset "
                 "(see docs/hdtf.md). Commands run from the repository root with the project's venv.",
        "machine": args.machine,
        "checkpoints": checkpoints,
    }
    (args.folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.folder / 'MANIFEST.json'} ({len(checkpoints)} checkpoints)")


if __name__ == "__main__":
    main()
