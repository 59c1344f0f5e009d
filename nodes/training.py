"""Glue shared by every trainer node (HDTF, Audio2Head, Yi et al.): the common parameters,
the run of the shared training loop (trainers/loop.py) with progress and logs forwarded to the
node's context, the dataset check and the three outputs every trainer node has."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from graphcore.node import InputFile, NodeError, Out, OutputFile, OutputPath, Port, RunContext
from nodes.checkpoints import CheckpointOutput
from nodes.model_registry import ModelSpec
from trainers.exports import blob_from_export


class TrainParams(BaseModel):
    preset: Literal["tiny", "paper"] = Field("tiny", description="size preset")
    steps: int = Field(2000, ge=1, le=10_000_000, description="generator updates")
    batch_size: int = Field(8, ge=1, le=1024)
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    gan_start: int = Field(0, ge=0, description="step from which the adversarial terms are used")
    seed: int = Field(0, description="training seed (initial weights and batches)")
    max_minutes: float = Field(0, ge=0, description="stop early after this much wall time (0: no limit)")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0: torch's default)")
    work_dir: str = OutputPath("", folder=True,
                               description="where training state lives (resume after an interruption); empty: the user cache dir")
    init: str = InputFile("", description=(
        "start from this checkpoint instead of random weights: a model export of the same model and preset (fine-tuning; "
        "IP_LAP's renderer also takes tiny's weights for tiny128), "
        "or a training state last.pt (also the discriminator and optimiser moments: continuing a run, e.g. after its "
        "dataset was rebuilt); `steps` more updates, gan_start counted from this run's start"), extensions=(".pt",))
    save_to: str = OutputFile("", description="also copy the trained model here (e.g. assets/checkpoints/x.pt)", extensions=(".pt",))


def run_training(ctx: RunContext, node: str, task: Any, params: TrainParams) -> dict[str, Any]:
    """Train `task` (a TrainTask, or a zero-argument function that builds one) with the shared loop.
    A bad setting or dataset found while building it (ValueError, DatasetError) becomes a
    NodeError naming the node."""
    from trainers.data.dataset import DatasetError
    from trainers.loop import InitError, TrainConfig, Trainer

    if callable(task):
        try:
            task = task()
        except (ValueError, DatasetError) as exc:
            raise NodeError(f"{node}: {exc}") from None
    p = params
    work = ctx.resolve_path(p.work_dir) if p.work_dir else default_work_dir(ctx)
    cfg = TrainConfig(steps=p.steps, batch_size=p.batch_size, lr_g=p.lr_g, lr_d=p.lr_d, gan_start=p.gan_start, seed=p.seed,
                      init=str(ctx.resolve_path(p.init)) if p.init else None,
                      device=ctx.device, max_minutes=p.max_minutes or None, threads=p.threads or None, progress_bar=False,
                      log_every=max(1, min(50, p.steps // 50)), checkpoint_every=max(50, p.steps // 10))

    def progress(i: int, n: int, losses: dict[str, float]) -> None:
        ctx.progress(i, n, " ".join(f"{k}={v:.3g}" for k, v in sorted(losses.items())))

    ctx.log(f"{node}: training state in {work}")
    try:
        result = Trainer(task, cfg, work, on_progress=progress, log=ctx.log).fit()
    except InitError as exc:
        raise NodeError(f"{node}: {exc}") from None
    if p.save_to:
        dest = ctx.resolve_path(p.save_to)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.export_path, dest)
        ctx.log(f"{node}: wrote {dest}")
    import cv2

    curve = cv2.cvtColor(cv2.imread(str(work / "loss_curve.png")), cv2.COLOR_BGR2RGB)
    metrics = {"steps": result.steps, "wall_s": round(result.wall_s, 2), **result.final_losses}
    return {"checkpoint": blob_from_export(result.export_path), "metrics": metrics, "loss_curve": curve}


def default_work_dir(ctx: RunContext) -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("talkgraph")) / "train" / f"{ctx.node_type}-{ctx.key[:16]}"


def dataset_path(ctx: RunContext, dataset: str, node: str) -> str:
    path = ctx.resolve_path(dataset) if "://" not in str(dataset) else dataset
    from trainers.data.dataset import DatasetError, open_dataset

    try:
        open_dataset(str(path))
    except DatasetError as exc:
        raise NodeError(f"{node}: {exc}") from None
    return str(path)



DATASET_DOC = ("talkgraph dataset location: MakeSyntheticDataset.dataset or PrepareDataset.dataset, or a literal "
               "folder path (keyed by its content)")

def train_outputs(model: str | ModelSpec) -> dict[str, Port]:
    """The three outputs of every trainer node; the checkpoint holds a `model` export."""
    return {
        "checkpoint": CheckpointOutput(model),
        "metrics": Out("Metrics", "steps, wall time and the final losses"),
        "loss_curve": Out("Image", "the loss curves"),
    }
