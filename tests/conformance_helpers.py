"""Conformance fixtures (facts kept from running official code outside the project) and the
documented seeded weight rule that rebuilds an official-layout state dict from a fixture's
(key, shape, dtype) list.

The rule: the i-th entry of the official state_dict (in its order) draws from
`torch.Generator().manual_seed(seed * 100003 + i)`: float tensors `randn(shape) * 0.05`, except
BatchNorm `running_var` = `1 + 0.1 * rand(shape)` and `num_batches_tracked` = 0; buffers the
official code computes at construction (rule "computed" in the list, e.g. sinusoidal position
tables) are rebuilt by the test that needs them.

A second rule, "scaled", keeps signals alive through deep conv/BatchNorm stacks, where under
the base rule (norm scales ~0.05) a network's output can stop depending on its inputs: tensors
of 2+ dims `randn / sqrt(fan_in)` (fan_in = prod(shape[1:])), 1-D `*weight` entries (norm
scales) `1 + 0.1 * randn`, other 1-D entries `randn * 0.05`; the rest as the base rule.

Fixtures live in `$TALKGRAPH_CONFORMANCE_DIR/<family>/` when that variable is set, else in
tests/conformance/<family>/.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_DIR = Path(__file__).resolve().parent / "conformance"


def fixture_dir(family: str) -> Path:
    root = Path(os.environ.get("TALKGRAPH_CONFORMANCE_DIR") or DEFAULT_DIR)
    return root / family


def seeded_tensor(entry: dict, index: int, seed: int, rule: str = "base") -> torch.Tensor:
    shape, dtype = tuple(entry["shape"]), getattr(torch, entry["dtype"])
    key = entry["key"]
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(seed * 100003 + index)
    if key.endswith("running_var"):
        return (1 + 0.1 * torch.rand(shape, generator=g)).to(dtype)
    if rule == "scaled" and len(shape) >= 2:
        return (torch.randn(shape, generator=g) / math.prod(shape[1:]) ** 0.5).to(dtype)
    if rule == "scaled" and key.endswith("weight"):
        return (1 + 0.1 * torch.randn(shape, generator=g)).to(dtype)
    if rule not in ("base", "scaled"):
        raise ValueError(f"unknown weight rule {rule!r} (base or scaled)")
    return (torch.randn(shape, generator=g) * 0.05).to(dtype)


def seeded_official_state(keys_file: Path, seed: int, computed: Callable[[str, tuple[int, ...]], torch.Tensor] | None = None,
                          rule: str = "base") -> dict[str, torch.Tensor]:
    """The official-layout state dict the rule gives for a fixture's keys.json."""
    entries = json.loads(Path(keys_file).read_text())["entries"]
    state = {}
    for i, e in enumerate(entries):
        if e.get("rule") == "computed":
            if computed is None:
                raise ValueError(f"{keys_file}: entry {e['key']} is computed by the official code; pass `computed`")
            state[e["key"]] = computed(e["key"], tuple(e["shape"]))
        else:
            state[e["key"]] = seeded_tensor(e, i, seed, rule)
    return state
