"""A real dask deployment (docs/deploy.md): moto's S3 server, a `dask scheduler` and two
`dask worker` processes on 127.0.0.1 (no dashboards), workers that do not see the client's
folder (a private mount namespace hides it, where the machine allows one), the shipped
synth_talk.yaml run from a client, a worker killed in the middle of a node: the run
completes and says so; a second client re-runs it fully cached and gets its video back
from the cache."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from engine_helpers import ROOT, subprocess_env
from s3_helpers import CREDENTIALS, free_port, make_bucket, moto_server, wait_for_port

from graphcore.events import read_events

pytest.importorskip("s3fs")
pytest.importorskip("moto")

DASK = str(Path(sys.executable).with_name("dask"))
KILL_DURING = "render"  # the longest node of synth_talk.yaml (tens of seconds)


def can_hide(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f'mount -t tmpfs tmpfs "{folder}" && test ! -e "{folder}/wf.yaml"'],
                           capture_output=True, check=False)
    return probe.returncode == 0


def start(cmd: list[str], env: dict, log: Path, hide: Path | None = None) -> subprocess.Popen:
    if hide is not None:  # the worker runs where the client's folder does not exist
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs tmpfs "{hide}" && exec "$@"', "sh", *cmd]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def client(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graphcore.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dask_deployment_with_a_shared_s3_cache_survives_a_lost_worker(tmp_path):
    here = tmp_path / "client"  # the client's folder: workflow, its input, its output
    (here / "samples").mkdir(parents=True)
    shutil.copy(ROOT / "assets" / "samples" / "portrait.png", here / "samples" / "portrait.png")
    text = (ROOT / "workflows" / "synth_talk.yaml").read_text(encoding="utf-8")
    (here / "wf.yaml").write_text(text.replace("../assets/samples/", "samples/"), encoding="utf-8")
    hide = here if can_hide(here) else None

    env = subprocess_env(**CREDENTIALS)
    procs: list[subprocess.Popen] = []
    with moto_server() as endpoint:
        bucket = f"deploy-{uuid.uuid4().hex[:8]}"
        os.environ.update(CREDENTIALS)
        make_bucket(endpoint, bucket)
        try:
            port = free_port()
            procs.append(start([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                               env, tmp_path / "scheduler.log"))
            wait_for_port(port, proc=procs[0])
            worker_ports = [free_port(), free_port()]
            workers = {}
            for i, wport in enumerate(worker_ports):
                proc = start([DASK, "worker", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1", "--worker-port", str(wport),
                              "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
                             env, tmp_path / f"worker{i}.log", hide)
                procs.append(proc)
                workers[f"tcp://127.0.0.1:{wport}"] = proc
            for wport in worker_ports:
                wait_for_port(wport, timeout=120)

            cache = ["--cache", f"s3://{bucket}/talkgraph", "--cache-option", f"endpoint_url={endpoint}",
                     "--executor", f"dask://127.0.0.1:{port}"]
            events = tmp_path / "events.jsonl"
            run = client(["wf.yaml", *cache, "--events", str(events)], env, here)
            killed = None
            deadline = time.monotonic() + 300
            while killed is None and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
                started = [e for e in read_events(events) if e.kind == "started" and e.node_id == KILL_DURING] \
                    if events.exists() else []
                if started:
                    time.sleep(1.0)  # well inside the node
                    killed = started[0].data["worker"]
                    os.killpg(workers[killed].pid, signal.SIGKILL)
            out, err = run.communicate(timeout=600)
            assert killed is not None, "the node never started on a worker"
            assert run.returncode == 0, out + err
            got = read_events(events)
            [retry] = [e for e in got if e.kind == "retrying"]
            assert retry.node_id == KILL_DURING and retry.data["worker"] == killed
            assert f"{KILL_DURING} (RenderTalkingFace): its worker was lost ({killed}); running it again" in out
            ran_on = [e.data["worker"] for e in got if e.kind == "started" and e.node_id == KILL_DURING]
            assert ran_on[0] == killed and ran_on[-1] != killed
            assert {e.data["worker"] for e in got if e.kind == "started"} <= set(workers)
            video = here / "out" / "synth_talk.mp4"
            assert video.stat().st_size > 10_000  # written by the client, whose folder the workers never saw
            if hide is not None:  # the workers ran portrait on the copy the client staged in the cache
                import s3fs

                fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
                assert len(fs.ls(f"{bucket}/talkgraph/inputs")) == 1
            first = video.read_bytes()

            video.unlink()  # a second client, without the output file: everything comes from the cache
            again = client(["wf.yaml", *cache, "--events", str(tmp_path / "again.jsonl")], env, here)
            out2, err2 = again.communicate(timeout=300)
            assert again.returncode == 0, out2 + err2
            second = read_events(tmp_path / "again.jsonl")
            assert not [e for e in second if e.kind == "started"], out2
            assert "7 cached" in out2 and video.read_bytes() == first
            summary = json.dumps([e.to_dict() for e in second if e.kind == "log"])
            assert "written again from its cache entry" in summary
        finally:
            for proc in reversed(procs):
                stop(proc)
