"""The conformance fixtures (tests/conformance/README.md): the seeded weight rule, rebuilding the
official state dicts from a fixture's key list and writing them in the official file layouts.

The folder is $TALKGRAPH_CONFORMANCE_DIR when set (fixtures made by the same rule with another
seed and other inputs), else the project's own copy.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4


def fixture_dir(family: str) -> Path:
    root = Path(os.environ.get("TALKGRAPH_CONFORMANCE_DIR") or HERE / "conformance")
    return root / family


def case(family: str, name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_dir(family) / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def draw(i: int, key: str, shape: list[int], seed: int) -> torch.Tensor:
    """Key i's tensor under the rule (README: 'The weight rule')."""
    g = torch.Generator().manual_seed(seed * 100003 + i)
    name = key.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if name == "running_var":
        return 1 + 0.1 * torch.rand(shape, generator=g)
    if name == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1 and name == "weight":
        return 1 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) <= 1:
        return 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))


def official_state(family: str, sections: tuple[str, ...] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """{section: official state dict} rebuilt from the fixture's list and the rule alone (only
    `sections` when given; the numbering still counts every key)."""
    folder = fixture_dir(family)
    spec = json.loads((folder / "state_dicts.json").read_text())
    constants = {}
    if (folder / "constants.npz").exists():
        with np.load(folder / "constants.npz") as c:
            constants = {k: c[k] for k in c.files}
    out, flat, i = {}, {}, 0
    for section, rows in spec["sections"].items():
        if sections is not None and section not in sections:
            i += len(rows)
            continue
        sd = {}
        for key, shape, dtype, kind in rows:
            dt = getattr(torch, dtype)
            if kind == "constant":
                value = torch.from_numpy(constants[f"{section}/{key}"]).to(dt)
            elif isinstance(kind, list):
                value = flat[kind[1]]
            elif kind == "zeros":
                value = torch.zeros(shape, dtype=dt)
            else:
                value = draw(i, key, shape, spec["seed"]).to(dt)
            sd[key] = flat[i] = value
            i += 1
        out[section] = sd
    return out


# --- the official file layouts ---------------------------------------------------------------------


def write_audio2head(folder: Path) -> Path:
    """audio2head.pth.tar: one dict with the four state dicts as top-level keys."""
    path = folder / "audio2head.pth.tar"
    torch.save(official_state("audio2head"), path)
    return path


HDTF_OLD_NAMES = (("foreground_matting", "dense_motion"), ("matting_mask", "attention_mask"))


def write_hdtf(folder: Path) -> Path:
    """checkpoint_animation2video.pth: ckpt['state_dict']['net_g'], 'module.' prefix, the older names."""
    sd = {}
    for key, value in official_state("hdtf")["net_g"].items():
        for new, old in HDTF_OLD_NAMES:
            key = key.replace(new, old)
        sd["module." + key] = value
    path = folder / "checkpoint_animation2video.pth"
    torch.save({"state_dict": {"net_g": sd}, "epoch": 0}, path)
    return path


def write_yi(folder: Path, parts: tuple[str, ...] = ("G", "mem", "atcnet")) -> Path:
    """0_net_G.pth (plain state dict), 0_net_mem.pth (mem_model + the memory tensors), atcnet_lstm_general.pth."""
    wanted = {"G": ("G",), "mem": ("mem_model", "mem"), "atcnet": ("atcnet",)}
    state = official_state("yi", tuple(s for p in parts for s in wanted[p]))
    folder.mkdir(parents=True, exist_ok=True)
    if "G" in parts:
        torch.save(state["G"], folder / "0_net_G.pth")
    if "mem" in parts:
        torch.save({"mem_model": state["mem_model"], **state["mem"]}, folder / "0_net_mem.pth")
    if "atcnet" in parts:
        torch.save(state["atcnet"], folder / "atcnet_lstm_general.pth")
    return folder


def max_diff(a, b) -> float:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
