"""The layers the project keeps (README "Layout"), as import-linter contracts (pyproject.toml [tool.importlinter]):
graphcore imports none of nodes/trainers/ui, trainers import no nodes, ui imports graphcore only,
and no paper's node package imports another paper's.
`make lint` runs them too; here they run with the suite, and a copy of the code with one lazy
import across a layer shows the contracts catch what they promise to."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from engine_helpers import ROOT, subprocess_env

PACKAGES = ("graphcore", "nodes", "trainers", "ui")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          env=subprocess_env(PYTHONPATH=str(cwd)), capture_output=True, text=True, timeout=300, check=False)


def test_the_layers_hold():
    res = lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 kept, 0 broken" in res.stdout


def test_a_lazy_import_across_a_layer_is_caught(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.js"))
    with open(tmp_path / "trainers" / "data" / "clips.py", "a") as f:
        f.write("\n\ndef _lazy():\n    from nodes import types  # noqa: F401\n")
    with open(tmp_path / "graphcore" / "events.py", "a") as f:
        f.write("\n\ndef _lazy():\n    import ui.app  # noqa: F401\n")
    with open(tmp_path / "nodes" / "ip_lap" / "evaluate.py", "a") as f:
        f.write("\n\ndef _lazy():\n    from nodes.yi import memory_gan  # noqa: F401\n")
    res = lint_imports(tmp_path)
    assert res.returncode != 0
    assert "1 kept, 3 broken" in res.stdout, res.stdout
    assert "trainers.data.clips -> nodes.types" in res.stdout and "graphcore.events -> ui.app" in res.stdout
    assert "nodes.ip_lap.evaluate -> nodes.yi.memory_gan" in res.stdout, res.stdout
