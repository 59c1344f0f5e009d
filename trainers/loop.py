"""One training loop for every learned node.

A model family plugs in through a `TrainTask`: it owns its generator (and, for GANs, its
discriminator), draws batches and computes losses. The loop does everything else once:
deterministic seeding (batch `i` depends only on (seed, i), so a resumed run sees the same
batches as an uninterrupted one), device placement with bf16 autocast on CUDA, alternating
generator/discriminator steps, a live progress bar with the losses, a metrics log as JSON
lines plus a loss-curve PNG, checkpoints with optimiser state, resume, and starting from another
run's weights (`init`: fine-tuning, or continuing a run whose dataset was rebuilt).

Files written to `out_dir`:
    last.pt        full training state (modules, optimisers, step, config) for resuming, with the
                   run's fingerprint: a later run resumes it only when model, result-changing
                   settings and data are the same (trainers/fingerprint.py); otherwise these files
                   are moved to out_dir/superseded/<time>/ and training starts over
    model.pt       the inference export: generator weights + model config + final losses
    metrics.jsonl  one JSON object per logged step
    loss_curve.png the logged losses against the step
"""
from __future__ import annotations

import abc
import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .exports import MODEL_FORMAT
from .fingerprint import NOT_RESULTS, dataset_fingerprint, digest

TRAIN_FORMAT = "talkgraph.train/1"
LOOP_FILES = ("last.pt", "model.pt", "metrics.jsonl", "loss_curve.png")  # what the loop writes to out_dir


class TrainConfig(BaseModel):
    """Optimisation settings shared by every trainer."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1000, ge=1, description="generator updates in total")
    batch_size: int = Field(4, ge=1, le=4096)
    lr_g: float = Field(2e-4, gt=0, description="generator learning rate (Adam)")
    lr_d: float = Field(2e-4, gt=0, description="discriminator learning rate (Adam)")
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float | None = Field(10.0, gt=0, description="clip gradient norm (None: off)")
    seed: int = 0
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    gan_start: int = Field(0, ge=0, description="step from which adversarial terms are used")
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(200, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="stop (and save) after this much wall time")
    resume: bool = Field(True, description="continue from out_dir/last.pt when it exists")
    init: str | None = Field(None, description=(
        "start from this checkpoint instead of random weights: a model export (the generator) or a "
        "training state last.pt (generator, discriminator and optimiser moments); the step count starts "
        "at 0, so `steps` more updates are made (gan_start counts from 0 too). The model config must match, "
        "but for the keys the task's init_may_differ_in names (e.g. a fully convolutional renderer's size)"))
    progress_bar: bool = True
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")


class InitError(ValueError):
    """The `init` checkpoint does not fit the run (another task or model config)."""


@dataclasses.dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, float]
    state: Any = None  # what the discriminator step needs (e.g. detached fakes)


class TrainTask(abc.ABC):
    """What a model family gives the loop."""

    name: str = "task"
    generator: nn.Module
    discriminator: nn.Module | None = None
    # model config keys an `init` checkpoint may differ in: ones that change no tensor's shape
    # (a fully convolutional net's image size), so the same weights start a run at another setting
    init_may_differ_in: frozenset[str] = frozenset()

    @abc.abstractmethod
    def build(self) -> None:
        """Create `self.generator` (and `self.discriminator` for GANs). The loop seeds torch
        first, so initial weights depend only on the config's seed."""

    @abc.abstractmethod
    def model_config(self) -> dict[str, Any]:
        """JSON-able configuration that rebuilds the generator (stored in checkpoints)."""

    @abc.abstractmethod
    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        """A training batch drawn with `rng` (CPU tensors; the loop moves them)."""

    @abc.abstractmethod
    def generator_step(self, batch: dict[str, torch.Tensor], use_gan: bool) -> StepOutput:
        """The generator's total loss for the batch."""

    def discriminator_step(self, batch: dict[str, torch.Tensor], state: Any) -> StepOutput | None:
        """The discriminator's loss, given the generator step's `state`. None: no GAN."""
        return None

    def data_description(self) -> dict[str, Any]:
        """What the task trains on (stored in checkpoints and manifests)."""
        return {}

    def data_identity(self) -> dict[str, Any]:
        """What identifies the training data, for the run fingerprint that decides whether a
        run may resume: the description plus, when it names a dataset (`url`), that dataset's
        content fingerprint. Tasks that train on in-memory arrays add a hash of them."""
        desc = self.data_description()
        url = desc.get("url")
        return {**desc, "dataset": dataset_fingerprint(url)} if isinstance(url, (str, os.PathLike)) else desc

    def export_extra(self) -> dict[str, Any]:
        """Extra tensors/values the inference node needs besides the generator weights."""
        return {}

    def on_train_start(self, log: Callable[[str], None]) -> None:
        """Called once the modules are on their device (e.g. to report loss fallbacks)."""


@dataclasses.dataclass
class TrainResult:
    out_dir: Path
    export_path: Path
    steps: int
    wall_s: float
    final_losses: dict[str, float]
    stopped_early: bool = False


def resolve_device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state or model export written by this loop (tensors on CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class Trainer:
    """Runs a TrainTask under a TrainConfig, writing into `out_dir`."""

    def __init__(
        self,
        task: TrainTask,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.task, self.cfg = task, config
        self.out_dir = Path(out_dir)
        self.on_progress = on_progress or (lambda i, n, logs: None)
        self.log = log or (lambda msg: None)
        self.device = resolve_device(config.device)
        self.step = 0
        self.wall_s = 0.0
        self.opt_g = self.opt_d = None
        self.fingerprint = ""  # set by fit(), once the task is built

    # --- state ---

    def _build_optimizers(self) -> None:
        c = self.cfg
        self.opt_g = torch.optim.Adam(self.task.generator.parameters(), lr=c.lr_g, betas=c.betas)
        if self.task.discriminator is not None:
            self.opt_d = torch.optim.Adam(self.task.discriminator.parameters(), lr=c.lr_d, betas=c.betas)

    def run_fingerprint(self) -> str:
        """The run's identity: task, model config, the settings that change results (not `steps`,
        so a finished run can be extended) and the data."""
        t = self.task
        init = {"init": file_sha256(self.cfg.init)} if self.cfg.init else {}  # the weights, not just their path
        return digest({"task": t.name, "model_config": t.model_config(),
                       "train_config": self.cfg.model_dump(mode="json", exclude=set(NOT_RESULTS)),
                       "data": t.data_identity(), **init})

    def _header(self, fmt: str) -> dict[str, Any]:
        t = self.task
        return {
            "format": fmt,
            "task": t.name,
            "model_config": t.model_config(),
            "train_config": self.cfg.model_dump(mode="json"),
            "data": t.data_description(),
            "step": self.step,
            "wall_s": self.wall_s,
        }

    def state_dict(self) -> dict[str, Any]:
        t = self.task
        return {
            **self._header(TRAIN_FORMAT),
            "generator": t.generator.state_dict(),
            "discriminator": t.discriminator.state_dict() if t.discriminator is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "run_fingerprint": self.fingerprint,
        }

    def _resume(self, path: Path) -> None:
        """Continue the run saved at `path`, when it is this run; otherwise move its files aside
        and start over."""
        state = load_checkpoint(path)
        t = self.task
        if state.get("format") != TRAIN_FORMAT or state.get("task") != t.name:
            raise RuntimeError(f"{path} is not a {t.name} training state; use another out_dir or resume=false")
        if state.get("run_fingerprint") != self.fingerprint:
            why = self._difference(state)
            moved = self._move_aside()
            self.log(f"not resuming {t.name} from {path}: {why}; starting over (the previous run's files are in {moved})")
            return
        t.generator.load_state_dict(state["generator"])
        if t.discriminator is not None and state["discriminator"] is not None:
            t.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None and state["opt_d"] is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.wall_s = int(state["step"]), float(state["wall_s"])
        self.log(f"resumed {t.name} from {path} at step {self.step}")

    def _set_hyperparameters(self) -> None:
        c = self.cfg
        for opt, lr in ((self.opt_g, c.lr_g), (self.opt_d, c.lr_d)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"], group["betas"] = lr, c.betas

    def _initialise(self, path: Path) -> None:
        """Start from the weights (and, from a training state, the discriminator and optimiser
        moments) of another run of the same task and model config."""
        t = self.task
        try:
            state = load_checkpoint(path)
        except Exception as exc:  # not a torch file, or one holding more than tensors
            raise InitError(f"init checkpoint {path} could not be read: {exc}") from None
        what = f"{state.get('format')!r} of task {state.get('task')!r}" if isinstance(state, dict) else type(state).__name__
        if not isinstance(state, dict) or state.get("format") not in (TRAIN_FORMAT, MODEL_FORMAT) or state.get("task") != t.name:
            raise InitError(f"init checkpoint {path} is not a {t.name} model export or training state (it is {what})")
        def compared(config: Any) -> Any:
            return {k: v for k, v in config.items() if k not in t.init_may_differ_in} if isinstance(config, dict) else config

        if compared(state.get("model_config")) != compared(t.model_config()):
            raise InitError(f"init checkpoint {path} has another model config: {state.get('model_config')}; "
                            f"this run builds {t.model_config()}")
        t.generator.load_state_dict(state["generator"])
        parts = ["generator"]
        if state["format"] == TRAIN_FORMAT:
            if t.discriminator is not None and state.get("discriminator") is not None:
                t.discriminator.load_state_dict(state["discriminator"])
                parts.append("discriminator")
            self.opt_g.load_state_dict(state["opt_g"])
            parts.append("generator optimiser")
            if self.opt_d is not None and state.get("opt_d") is not None:
                self.opt_d.load_state_dict(state["opt_d"])
                parts.append("discriminator optimiser")
            self._set_hyperparameters()  # the moments carry over; this run's learning rates and betas apply
        changed = sorted(k for k in t.init_may_differ_in if state["model_config"].get(k) != t.model_config().get(k))
        note = "; " + ", ".join(f"{k} {state['model_config'].get(k)} -> {t.model_config().get(k)}" for k in changed) if changed else ""
        self.log(f"{t.name}: initialised the {', '.join(parts)} from {path} (step {state.get('step')} of that run{note})")

    def _difference(self, state: dict[str, Any]) -> str:
        """What differs between a saved state and this run, in words (for the log)."""
        t = self.task
        if state.get("run_fingerprint") is None:
            return "it records no run fingerprint (written by an older version)"
        if state.get("model_config") != t.model_config():
            return f"the model config changed ({state.get('model_config')} -> {t.model_config()})"
        old = {k: v for k, v in (state.get("train_config") or {}).items() if k not in NOT_RESULTS}
        new = self.cfg.model_dump(mode="json", exclude=set(NOT_RESULTS))
        changed = sorted(k for k in new if old.get(k) != new[k])
        if changed:
            return "the training settings changed: " + ", ".join(f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed)
        return "the training data changed"

    def _move_aside(self) -> Path:
        """Move the loop's files of a superseded run to out_dir/superseded/<time>/ (kept, not deleted)."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.out_dir / "superseded" / stamp
        dest.mkdir(parents=True)
        for name in LOOP_FILES:
            if (self.out_dir / name).exists():
                os.replace(self.out_dir / name, dest / name)
        return dest

    def _atomic_save(self, obj: Any, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, path)

    def save(self) -> None:
        self._atomic_save(self.state_dict(), self.out_dir / "last.pt")

    def export(self, final_losses: dict[str, float]) -> Path:
        t = self.task
        path = self.out_dir / "model.pt"
        self._atomic_save(
            {
                **self._header(MODEL_FORMAT),
                "final_losses": final_losses,
                "generator": {k: v.detach().cpu() for k, v in t.generator.state_dict().items()},
                "extra": t.export_extra(),
            },
            path,
        )
        return path

    # --- the loop ---

    def fit(self) -> TrainResult:
        threads = torch.get_num_threads()
        if self.cfg.threads is not None:
            torch.set_num_threads(self.cfg.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> TrainResult:
        c, t = self.cfg, self.task
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(c.seed)
        t.build()
        t.generator.to(self.device)
        if t.discriminator is not None:
            t.discriminator.to(self.device)
        self._build_optimizers()
        if c.init and not Path(c.init).is_file():
            raise InitError(f"init checkpoint {c.init} does not exist")
        self.fingerprint = self.run_fingerprint()
        last = self.out_dir / "last.pt"
        if c.resume and last.exists():
            self._resume(last)
        if c.init and self.step == 0:  # a resumed run already holds what init gave it
            self._initialise(Path(c.init))
        t.on_train_start(self.log)
        metrics = MetricsLog(self.out_dir / "metrics.jsonl", truncate_after=self.step)

        window: dict[str, list[float]] = {}
        final: dict[str, float] = dict(metrics.last or {})
        final.pop("step", None), final.pop("wall_s", None)
        start_wall, start_wall_s = time.monotonic(), self.wall_s
        stopped_early = False
        with ProgressDisplay(c.steps, t.name, enabled=c.progress_bar) as bar:
            bar.update(self.step, final)
            while self.step < c.steps:
                logs = self._train_step()
                for k, v in logs.items():
                    window.setdefault(k, []).append(v)
                self.step += 1
                self.wall_s = start_wall_s + (time.monotonic() - start_wall)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    final = {k: float(np.mean(v)) for k, v in window.items()}
                    window.clear()
                    metrics.append({"step": self.step, "wall_s": round(self.wall_s, 3), **final})
                    bar.update(self.step, final)
                    self.on_progress(self.step, c.steps, final)
                if self.step % c.checkpoint_every == 0:
                    self.save()
                    plot_loss_curves(metrics.path, self.out_dir / "loss_curve.png", title=t.name)
                if c.max_minutes is not None and (time.monotonic() - start_wall) > c.max_minutes * 60:
                    stopped_early = self.step < c.steps
                    if stopped_early:
                        self.log(f"stopping at step {self.step} of {c.steps}: max_minutes={c.max_minutes} reached")
                    break
        if window:  # steps since the last log line
            final = {k: float(np.mean(v)) for k, v in window.items()}
            metrics.append({"step": self.step, "wall_s": round(self.wall_s, 3), **final})
        self.save()
        plot_loss_curves(metrics.path, self.out_dir / "loss_curve.png", title=t.name)
        export = self.export(final)
        return TrainResult(self.out_dir, export, self.step, self.wall_s, final, stopped_early)

    def _train_step(self) -> dict[str, float]:
        c, t = self.cfg, self.task
        seed = _step_seed(c.seed, self.step)
        torch.manual_seed(seed)
        batch = _to(t.sample_batch(np.random.default_rng(seed), c.batch_size), self.device)
        use_gan = t.discriminator is not None and self.step >= c.gan_start
        t.generator.train()
        if t.discriminator is not None:
            t.discriminator.train()

        _set_requires_grad(t.discriminator, False)  # the G step must not accumulate D gradients
        with _autocast(self.device, c.precision):
            g = t.generator_step(batch, use_gan)
        logs = dict(g.logs)
        if not math.isfinite(g.loss.item()):
            raise FloatingPointError(f"{t.name}: generator loss is {g.loss.item()} at step {self.step}: {logs}")
        self.opt_g.zero_grad(set_to_none=True)
        g.loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(t.generator.parameters(), c.grad_clip)
        self.opt_g.step()

        if use_gan:
            _set_requires_grad(t.discriminator, True)
            with _autocast(self.device, c.precision):
                d = t.discriminator_step(batch, g.state)
            if d is not None:
                self.opt_d.zero_grad(set_to_none=True)
                d.loss.backward()
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(t.discriminator.parameters(), c.grad_clip)
                self.opt_d.step()
                logs.update(d.logs)
        return logs


class MetricsLog:
    """Append-only JSON-lines metrics; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, truncate_after: int | None = None) -> None:
        self.path = path
        self.last: dict[str, float] | None = None
        rows = read_metrics(path) if path.exists() else []
        if truncate_after is not None:
            rows = [r for r in rows if r.get("step", 0) <= truncate_after]
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        self.last = rows[-1] if rows else None

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.last = row


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curves(metrics_path: Path, png_path: Path, title: str = "",
                     groups: dict[str, list[str]] | None = None) -> None:
    """One panel per loss group against the step: generator and discriminator terms, or the
    panels given as {title: [metric keys]} (e.g. for a docs figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path) if metrics_path.exists() else []
    if not rows:
        return
    if groups is None:
        keys = sorted({k for r in rows for k in r if k not in ("step", "wall_s")})
        groups = {"generator": [k for k in keys if not k.startswith("d_")], "discriminator": [k for k in keys if k.startswith("d_")]}
    groups = {g: ks for g, ks in groups.items() if ks}
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (group, ks) in zip(axes[0], groups.items()):
        for k in ks:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        ax.set_xlabel("step")
        ax.set_title(f"{title} — {group}" if title else group)
        if all(r[k] > 0 for k in ks for r in rows if k in r):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


class ProgressDisplay:
    """A rich progress bar showing the latest losses; silent when disabled."""

    def __init__(self, total: int, name: str, enabled: bool = True) -> None:
        self.total, self.name, self.enabled = total, name, enabled
        self._progress = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.name, total=self.total, losses="")
        return self

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self._progress is not None:
            text = " ".join(f"{k}={v:.4g}" for k, v in sorted(losses.items()))
            self._progress.update(self._task, completed=step, losses=text)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
