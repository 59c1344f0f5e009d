"""Write a checkpoint folder's MANIFEST.json from the model exports in it (every family).

    python -m tools.manifest assets/checkpoints/yi --command audio_exp_pose_tiny.pt="graphrun workflows/train_yi_audio.yaml"
    python -m tools.manifest assets/checkpoints/yi --half memory_gan_tiny.pt   # store its float tensors as float16 first
    python -m tools.manifest PLUGIN/checkpoints --import my_plugin.models      # a plugin's models register at import

One entry per `*.pt` under "checkpoints", read from the file itself so that the manifest cannot
drift from it (sha256, bytes, task, model and training configs, the data, steps, wall time,
final losses, storage dtype; the parameter count of the registered model it holds), plus the
command that made it. Commands and the folder's other notes (about, machine, made_by, ...) are kept
from the existing manifest unless given again; tests check every bundled checkpoint against it.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "MANIFEST.json"


def to_half(path: Path) -> None:
    """Store an export's floating-point weights as float16 (loading casts them back): half the bytes."""
    import torch

    export = torch.load(path, map_location="cpu", weights_only=True)
    export["generator"] = {k: (v.half() if v.is_floating_point() else v) for k, v in export["generator"].items()}
    export["stored_as"] = "float16"
    tmp = path.with_suffix(".tmp")
    torch.save(export, tmp)
    os.replace(tmp, path)


def export_summary(path: str | os.PathLike) -> dict[str, Any]:
    """What a manifest records of one model export (trainers/loop.py `model.pt`), from the file."""
    import torch

    from nodes.model_registry import count_parameters, create_model

    raw = Path(path).read_bytes()
    export = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        model = create_model(export["model_config"]["arch"], export["model_config"])
    summary = {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
        "task": export.get("task"),
        "parameters": count_parameters(model),
        "model_config": export["model_config"],
        "train_config": export["train_config"],
        "data": export["data"],
        "steps": export["step"],
        "wall_s": round(float(export["wall_s"]), 1),
        "final_losses": {k: round(float(v), 5) for k, v in export["final_losses"].items()},
    }
    if "stored_as" in export:
        summary["stored_as"] = export["stored_as"]
    return summary


def build_manifest(folder: Path, commands: dict[str, str] | None = None, notes: dict[str, str] | None = None) -> dict[str, Any]:
    path = folder / MANIFEST
    old = json.loads(path.read_text()) if path.is_file() else {}
    old_entries = old.pop("checkpoints", None) or old.pop("files", None) or {}  # "files": the former Audio2Head layout
    commands = commands or {}
    entries = {}
    for pt in sorted(folder.glob("*.pt")):
        command = commands.get(pt.name, old_entries.get(pt.name, {}).get("command", ""))
        entries[pt.name] = {**export_summary(pt), **({"command": command} if command else {})}
    unknown = set(commands) - set(entries)
    if unknown:
        raise SystemExit(f"--command for files that are not in {folder}: {sorted(unknown)}")
    return {**old, **(notes or {}), "checkpoints": entries}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of model exports, e.g. assets/checkpoints/audio2head")
    ap.add_argument("--command", action="append", default=[], metavar="FILE=COMMAND", help="the command that made FILE")
    ap.add_argument("--note", action="append", default=[], metavar="KEY=TEXT", help="set a top-level note (about, machine, ...)")
    ap.add_argument("--half", action="append", default=[], metavar="FILE", help="first store FILE's float weights as float16")
    ap.add_argument("--import", dest="modules", action="append", default=[], metavar="MODULE",
                    help="import MODULE first (a plugin's module that registers its models)")
    args = ap.parse_args(argv)
    for module in args.modules:
        importlib.import_module(module)
    for name in args.half:
        to_half(args.folder / name)
    manifest = build_manifest(args.folder, _pairs(args.command, "--command"), _pairs(args.note, "--note"))
    (args.folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.folder / MANIFEST} ({len(manifest['checkpoints'])} checkpoints)")


if __name__ == "__main__":
    main()
