"""Write the manifest of the bundled Audio2Head checkpoints (assets/checkpoints/audio2head/).

For each model export: sha256, bytes, architecture config, training config, the data it saw,
steps, wall time and final losses; plus the command that made them and its total wall time.

    python -m nodes.audio2head.manifest --dir assets/checkpoints/audio2head \
        --command "graphrun workflows/train_audio2head.yaml" --wall-s 1750 \
        [--also stage1=/path/to/stage-1/model.pt]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from pathlib import Path

from trainers.exports import export_summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--command", required=True, help="the exact command that trained the checkpoints")
    ap.add_argument("--wall-s", type=float, required=True, help="its total wall time in seconds")
    ap.add_argument("--also", action="append", default=[], help="NAME=PATH of an intermediate export to describe (not bundled)")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    files = {p.name: export_summary(p) for p in sorted(args.dir.glob("*.pt"))}
    intermediate = {}
    for item in args.also:
        name, _, path = item.partition("=")
        d = export_summary(Path(path))
        d.pop("sha256"), d.pop("bytes")
        intermediate[name] = d
    manifest = {
        "made_by": args.command,
        "total_wall_s": args.wall_s,
        "code_commit": commit,
        "date": datetime.date.today().isoformat(),
        "note": args.note,
        "files": files,
        "intermediate": intermediate,
    }
    (args.dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.dir / 'MANIFEST.json'} ({len(files)} checkpoints)")


if __name__ == "__main__":
    main()
