"""Commands that installed packages add to graphrun (entry-point group `graphrun.commands`):
how `graphrun ui` is found, and how any other package adds one (graphcore/commands.py)."""
from __future__ import annotations

import os
from pathlib import Path

from engine_helpers import graphrun, subprocess_env

from graphcore.commands import command_entry_points


def command_distribution(site: Path, commands: dict[str, str], files: dict[str, str]) -> dict[str, str]:
    """An installed distribution `hello-tools` with `graphrun.commands` entry points; the env to see it."""
    info = site / "hello_tools-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-tools\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[graphrun.commands]\n" + "".join(f"{k} = {v}\n" for k, v in commands.items()))
    for name, text in files.items():
        (site / name).write_text(text)
    return subprocess_env(PYTHONPATH=os.pathsep.join([str(site), subprocess_env()["PYTHONPATH"]]))


HELLO = '''
import argparse


def main(argv):
    """Greet someone (a command added by an installed package)."""
    p = argparse.ArgumentParser(prog="graphrun hello")
    p.add_argument("name")
    p.add_argument("--shout", action="store_true")
    args = p.parse_args(argv)
    print(("HELLO " if args.shout else "hello ") + args.name)
    return 3 if args.name == "nobody" else 0
'''


def test_the_editor_is_a_registered_command():
    eps = command_entry_points()
    assert eps["ui"].value == "ui.app:main" and eps["ui"].dist.name == "talkgraph"
    engine = Path(__file__).resolve().parents[1] / "graphcore"
    assert not [f.name for f in engine.glob("*.py") if "ui.app" in f.read_text()]  # no import by name, not even a string


def test_a_package_adds_a_command(tmp_path):
    env = command_distribution(tmp_path / "site", {"hello": "hello_cmd:main", "broken": "no_such_module_xyz:main"},
                               {"hello_cmd.py": HELLO})
    res = graphrun("hello", "--shout", "world", env=env)
    assert res.returncode == 0 and res.stdout.strip() == "HELLO world", res.stderr
    assert graphrun("hello", "nobody", env=env).returncode == 3  # its exit code is graphrun's
    helped = graphrun("--help", env=env)
    assert helped.returncode == 0
    assert "Greet someone (a command added by an installed package). [from hello-tools;" in helped.stdout
    assert "ui" in helped.stdout and "Open the node editor" in helped.stdout
    broken = graphrun("broken", env=env)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "the command 'broken' (from hello-tools) cannot start: missing module 'no_such_module_xyz'" in broken.stderr
    # a workflow file that happens to share a command's name is still run as a workflow
    (tmp_path / "hello").write_text("version: 1\nnodes:\n  x: {type: Range, params: {num: 3}}\n")
    res = graphrun("hello", "--cache", tmp_path / "cache", env=env, cwd=tmp_path)
    assert res.returncode == 0 and "HELLO" not in res.stdout, res.stdout + res.stderr
