"""Official released weights -> talkgraph exports: `graphrun weights import FAMILY SOURCE` and
`graphrun weights ls` (docs/official-weights.md).

Each family registers an `Importer`: the file names of its release, the module whose
`convert(files, out_dir, source_info)` writes the talkgraph exports, and which workflow
parameters take them. Converters use the helpers here: `load_official` (torch.load with
weights_only=True, nothing else is unpickled), `rename_by_rules` + `map_state` (every official
tensor must land on a project tensor of the same shape), `write_export` (the training loop's
export format plus an `official` record). `import_weights` hashes the sources, runs the
converter and writes MANIFEST.json next to the exports.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

MANIFEST = "MANIFEST.json"
WEIGHTS_ENV = "TALKGRAPH_WEIGHTS"


class WeightsError(Exception):
    """A wrong, truncated or unsupported official file: the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Importer:
    family: str
    files: tuple[str, ...]  # the release's file names (SOURCE is one of them or a folder holding them)
    module: str  # has convert(files: dict[name, Path], out_dir: Path, source_info: dict) -> list[Path]
    version: int  # converter version, recorded in the manifest (bump when the conversion changes)
    workflow: str  # the workflow running the imported weights
    parameters: Mapping[str, str]  # "node.param" -> output file name
    origin: str  # where the user gets the files
    licence: str  # as the official repository states it

    def load(self):
        return importlib.import_module(self.module)


_IMPORTERS: dict[str, Importer] = {}


def register_importer(importer: Importer) -> Importer:
    """Add an importer (plugins: at import). A family registered twice by different modules is refused."""
    old = _IMPORTERS.get(importer.family)
    if old is not None and old.module != importer.module:
        raise ValueError(f"weights importer for {importer.family!r} already registered by {old.module}")
    _IMPORTERS[importer.family] = importer
    return importer


def importers() -> dict[str, Importer]:
    return dict(sorted(_IMPORTERS.items()))


register_importer(Importer(
    family="audio2head", files=("audio2head.pth.tar",), module="nodes.audio2head.official", version=1,
    workflow="workflows/official/audio2head.yaml",
    parameters={"head_motion.checkpoint": "head_motion.pt", "motion_field.checkpoint": "motion_field.pt",
                "render.checkpoint": "keypoints.pt"},
    origin="wangsuzhen/Audio2Head README: the Google Drive link under 'Pretrained Checkpoint'",
    licence="none stated in the repository"))
register_importer(Importer(
    family="hdtf", files=("checkpoint_animation2video.pth",), module="nodes.hdtf.official", version=1,
    workflow="workflows/official/hdtf.yaml", parameters={"video.checkpoint": "flow_video.pt"},
    origin="MRzzm/HDTF code_animation2video/readme.md: the Google Drive folder", licence="GPL-3.0"))
register_importer(Importer(
    family="yi", files=("0_net_G.pth", "0_net_mem.pth", "atcnet_lstm_general.pth"), module="nodes.yi.official", version=1,
    workflow="workflows/official/yi.yaml", parameters={"refine.checkpoint": "memory_gan.pt"},
    origin="yiranran/Audio-driven-TalkingFace-HeadPose readme: 'Download pre-trained models' (BaiduYun / Google Drive)",
    licence="research purposes only (patent-protected; commercial use needs the authors' permission)"))
register_importer(Importer(
    family="ip_lap", files=("landmarkgenerator_checkpoint.pth", "renderer_checkpoint.pth"), module="nodes.ip_lap.official",
    version=1, workflow="workflows/official/ip_lap.yaml",
    parameters={"lips.checkpoint": "landmark_generator.pt", "render.checkpoint": "renderer.pt"},
    origin="Weizhi-Zhong/IP_LAP README, section 'Test': the OneDrive / jianguoyun links",
    licence="Apache-2.0"))


@dataclasses.dataclass(frozen=True)
class OfficialImport:
    """`ModelSpec.convert_official` of a network the family's release holds (nodes/<family>/models.py):
    calling it imports the release's file(s) as `graphrun weights import FAMILY SOURCE` does."""

    family: str

    def __call__(self, source: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        return import_weights(self.family, source, out_dir)

    def __str__(self) -> str:
        return f"graphrun weights import {self.family} SOURCE"


OfficialMode = Literal["auto", "on", "off"]


def official_mode_field(what: str) -> Any:
    """The `official` parameter of a node whose network runs the same weights either way (`what`:
    what the mode changes)."""
    from pydantic import Field

    return Field("auto", description=f"the release's conventions ({what}). auto: as the checkpoint says (on for "
                                     "imported official weights, off for the project's); on / off force them for "
                                     "the same weights (docs/official-weights.md)")


def official_config(mode: str, on: Mapping[str, Any], off: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The model-config override a node's `official` parameter asks for (None: the checkpoint's own)."""
    return None if mode == "auto" else on if mode == "on" else off


# --- reading and converting -----------------------------------------------------------------------


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_official(path: Path, name: str) -> dict[str, Any]:
    """torch.load(path, weights_only=True): tensors, dicts, lists and numbers only; a file that
    would need arbitrary unpickling is refused with a message saying so."""
    import pickle
    import zipfile

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path} ({name}) needs more than torch.load(weights_only=True) allows, which is all "
                           f"talkgraph unpickles: {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        size = path.stat().st_size
        raise WeightsError(f"{path} cannot be read as {name} ({size} bytes; truncated or not a PyTorch file): "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not the dict of tensors {name} is")
    return obj


def rename_by_rules(rules: list, key: str, what: str) -> str:
    """The first rule (regex matched at the start of `key`, replacement string or callable on
    the match) decides; the rest of the key is kept."""
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            head = repl(m) if callable(repl) else m.expand(repl)
            return head + key[m.end():]
    raise WeightsError(f"{what}: no rule maps this official key (an unexpected file or version)")


def map_state(state: Mapping[str, Any], rename: Callable[[str], str], target: Mapping[str, Any],
              extra: Mapping[str, Any] | None = None, *, what: str) -> dict[str, Any]:
    """Rename an official state dict onto `target`'s keys (a state dict or meta tensors of the
    project model): every key mapped once, same shapes, nothing missing; `extra` fills the
    project-only entries. Values take the target's dtype."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{what}: {key} is a {type(value).__name__}, not a tensor")
        new = rename(key)
        if new not in target:
            raise WeightsError(f"{what}: {key} -> {new}, which the project's model does not have")
        if new in out:
            raise WeightsError(f"{what}: two official keys map onto {new}")
        if tuple(value.shape) != tuple(target[new].shape):
            raise WeightsError(f"{what}: {key} has shape {tuple(value.shape)}, the project's {new} {tuple(target[new].shape)}")
        out[new] = value.to(target[new].dtype)
    for key, value in (extra or {}).items():
        out[key] = torch.as_tensor(value).to(target[key].dtype)
    missing = [k for k in target if k not in out]
    if missing:
        raise WeightsError(f"{what}: {len(missing)} tensors missing, e.g. {', '.join(missing[:4])}")
    return out


def check_gaussian_kernel(state: Mapping[str, Any], key: str, channels: int, scale: float, what: str) -> None:
    """FOMM's AntiAliasInterpolation2d stores its fixed Gaussian kernel: it must be the one the
    project computes (the project's downsampling recomputes it and does not load it)."""
    import torch

    from nodes.antialias import AntiAliasDownsample

    if key not in state:
        raise WeightsError(f"{what}: missing")
    expected = AntiAliasDownsample(channels, scale).kernel
    got = state[key].float()
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-6):
        raise WeightsError(f"{what}: not the Gaussian downsampling kernel of scale {scale} the official code builds")


def write_export(path: Path, task: str, model_config: dict[str, Any], state: dict[str, Any], source_info: dict[str, Any],
                 description: str) -> Path:
    """A talkgraph model export (trainers/loop.py's format) of converted official weights."""
    import torch

    from trainers.exports import MODEL_FORMAT

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({
        "format": MODEL_FORMAT, "task": task, "model_config": model_config, "train_config": {},
        "data": {"official": description}, "step": 0, "wall_s": 0.0, "final_losses": {},
        "generator": {k: v.detach().cpu().contiguous() for k, v in state.items()}, "extra": {},
        "official": {**source_info, "description": description},
    }, tmp)
    os.replace(tmp, path)
    return path


# --- the command ----------------------------------------------------------------------------------


def default_root() -> Path:
    """Where `graphrun weights import` writes without --out: $TALKGRAPH_WEIGHTS, else ./weights."""
    return Path(os.environ.get(WEIGHTS_ENV) or "weights")


def source_files(importer: Importer, source: Path) -> dict[str, Path]:
    """SOURCE: one of the release's files, or a folder holding some of them. A family of several
    files converts what the given ones allow (its converter says when a part needs another file)."""
    if source.is_dir():
        files = {name: source / name for name in importer.files if (source / name).is_file()}
        if not files:
            raise WeightsError(f"{source} holds none of the {importer.family} release's files ({', '.join(importer.files)})")
        return files
    if not source.is_file():
        raise WeightsError(f"{source} not found")
    if len(importer.files) == 1:
        return {importer.files[0]: source}
    if source.name in importer.files:
        return {source.name: source}
    raise WeightsError(f"{source.name} is not a file of the {importer.family} release ({', '.join(importer.files)}); "
                       "name it as the release does, or give the folder holding the files")


def import_weights(family: str, source: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert a family's official files; returns the manifest written to out_dir/MANIFEST.json."""
    if family not in _IMPORTERS:
        raise WeightsError(f"unknown family {family!r}; known: {', '.join(importers())}")
    importer = _IMPORTERS[family]
    files = source_files(importer, Path(source))
    out = Path(out_dir) if out_dir is not None else default_root() / family
    info = {
        "family": family, "converter_version": importer.version,
        "sources": {name: {"path": str(p.resolve()), "sha256": sha256(p), "bytes": p.stat().st_size} for name, p in files.items()},
        "licence": importer.licence, "origin": importer.origin,
    }
    try:
        written = importer.load().convert(files, out, info)
    except WeightsError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as exc:  # a structure the converter did not expect
        raise WeightsError(f"{family}: {', '.join(files)} do not have the official structure: {type(exc).__name__}: {exc}") from None
    exports = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size, "sources": sorted(files)} for p in written}
    try:  # an earlier import of other files of the same release into this folder: keep its entries
        old = json.loads((out / MANIFEST).read_text())
        if old.get("family") == family:
            info["sources"] = {**old.get("sources", {}), **info["sources"]}
            exports = {**{k: v for k, v in old.get("exports", {}).items() if (out / k).is_file()}, **exports}
    except (OSError, ValueError):
        pass
    manifest = {**info, "imported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "exports": exports, "workflow": importer.workflow, "parameters": dict(importer.parameters)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def import_hint(path: str | os.PathLike) -> str:
    """For a missing checkpoint path that names an importer's output (…/<family>/<file>): how to make it."""
    p = Path(path)
    importer = _IMPORTERS.get(p.parent.name)
    if importer is None or p.name not in set(importer.parameters.values()):
        return ""
    out = "" if p.parent.resolve() == (default_root() / importer.family).resolve() else f" --out {p.parent}"
    source = importer.files[0] if len(importer.files) == 1 else f"FOLDER (holding {', '.join(importer.files)})"
    return f"import the official weights first: graphrun weights import {importer.family} {source}{out}"


@classmethod  # type: ignore[misc]
def missing_weights_hint(cls: Any, param: str, path: str) -> str:
    """Node.missing_file_hint of nodes reading imported checkpoints (`missing_file_hint = missing_weights_hint`)."""
    return import_hint(path)


def imported(root: Path | None = None) -> list[dict[str, Any]]:
    """The manifests of imported weights under `root` (default: the default root)."""
    root = root or default_root()
    found = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        data["folder"] = str(manifest.parent)
        found.append(data)
    return found


def register_cli(sub: Any) -> None:
    """`graphrun weights import|ls` as a subparser (`main` is the `graphrun.commands` entry point)."""
    weights = sub.add_parser("weights", help="import official released weights, list imported ones",
                             description="Convert a paper's released checkpoint into talkgraph's export format.")
    wsub = weights.add_subparsers(dest="weights_command", metavar="import|ls")
    imp = wsub.add_parser("import", help="convert official files", description="Convert FAMILY's official files at SOURCE "
                          f"(a file, or a folder holding the release's files). Families: {', '.join(importers())}.")
    imp.add_argument("family", metavar="FAMILY")
    imp.add_argument("source", metavar="SOURCE")
    imp.add_argument("--out", metavar="DIR", help=f"output folder (default ${WEIGHTS_ENV}/FAMILY or ./weights/FAMILY)")
    imp.set_defaults(func=_cmd_import)
    ls = wsub.add_parser("ls", help="list imported weights", description="List imported weights (and the importable families).")
    ls.add_argument("--root", metavar="DIR", help=f"where to look (default ${WEIGHTS_ENV} or ./weights)")
    ls.set_defaults(func=_cmd_ls)
    weights.set_defaults(func=lambda args: (weights.print_help(), 2)[1])


def main(argv: list[str]) -> int:
    """Import and inspect official weights (graphrun weights import FAMILY SOURCE)."""
    import argparse

    parser = argparse.ArgumentParser(prog="graphrun")
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["weights", *argv])
    return int(args.func(args) or 0)


def _cmd_import(args: Any) -> int:
    import sys

    try:
        manifest = import_weights(args.family, args.source, args.out)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else default_root() / args.family
    print(f"imported {args.family} (converter v{manifest['converter_version']}) into {out}:")
    for name, e in manifest["exports"].items():
        print(f"  {out / name}  sha256 {e['sha256'][:16]}…")
    sets = " ".join(f"--set {k}={out.resolve() / v}" for k, v in manifest["parameters"].items())  # absolute: workflow paths are file-relative
    print(f"run it: graphrun {manifest['workflow']}" + ("" if out == default_root() / args.family else f" {sets}"))
    print(f"workflow parameters: {sets}")
    print(f"licence ({args.family}): {manifest['licence']}")
    return 0


def _cmd_ls(args: Any) -> int:
    root = Path(args.root) if args.root else default_root()
    found = imported(root)
    if not found:
        print(f"no imported weights under {root}")
    for m in found:
        sources = ", ".join(f"{n} (sha256 {s['sha256'][:12]}…)" for n, s in m["sources"].items())
        print(f"{m['family']:<11} {m['folder']}  converter v{m['converter_version']}  {m.get('imported', '')}  from {sources}")
        for name in m.get("exports", {}):
            print(f"            {name}")
    print("importable families: " + ", ".join(f"{f} ({' '.join(i.files)})" for f, i in importers().items()))
    return 0
