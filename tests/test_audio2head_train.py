"""Audio2Head training and nodes on a toy dataset (64 px): a few steps lower each loss, the
trainer nodes' checkpoints drive the inference nodes, and bad inputs give clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from audio2head_helpers import one_thread  # noqa: F401 (autouse fixture)
from engine_helpers import ctx_for
from hdtf_data import write_toy_dataset

from graphcore.node import NodeError
from graphcore.stream import run_whole
from graphcore.types import CheckpointBlob
from nodes.audio2head import a2h_nodes as A
from nodes.types import FeatureSeq, Keypoints


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.zarr", n_clips=4, n_frames=40, size=64)


def _overfit(task, steps: int = 6, lr: float = 1e-3) -> tuple[float, float]:
    """Loss on one fixed batch before and after a few Adam steps (no GAN terms)."""
    torch.manual_seed(0)
    task.build()
    task.on_train_start(lambda msg: None)
    batch = task.sample_batch(np.random.default_rng(0), 2)
    opt = torch.optim.Adam(task.generator.parameters(), lr=lr)
    losses = []
    for _ in range(steps + 1):
        out = task.generator_step(batch, use_gan=False)
        losses.append(out.loss.item())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return losses[0], losses[-1]


def test_keypoint_training_step_reduces_loss(toy_dataset):
    from nodes.audio2head.train_keypoints import KeypointTask, KeypointTrainSettings

    first, last = _overfit(KeypointTask(KeypointTrainSettings(dataset=toy_dataset, frame_size=64)))
    assert last < first


def test_head_motion_training_step_reduces_loss(toy_dataset):
    from nodes.audio2head.train_head_motion import HeadMotionTask, HeadMotionTrainSettings

    for loss in ("ssim", "l1"):
        first, last = _overfit(HeadMotionTask(HeadMotionTrainSettings(dataset=toy_dataset, frame_size=64, window=16, pose_loss=loss)))
        assert last < first, loss


@pytest.fixture(scope="module")
def trained(toy_dataset, tmp_path_factory):
    """The three trainer nodes run for a few steps; their checkpoints feed the inference nodes."""
    tmp = tmp_path_factory.mktemp("train")
    common = {"steps": 3, "batch_size": 2, "frame_size": 64, "threads": 1}
    kp = A.TrainKeypointRenderer({**common, "work_dir": str(tmp / "kp"), "save_to": str(tmp / "kp.pt")}).run(
        ctx_for(tmp, "TrainKeypointRenderer"), dataset=toy_dataset)
    hm = A.TrainHeadMotionPredictor({**common, "window": 16, "work_dir": str(tmp / "hm")}).run(
        ctx_for(tmp, "TrainHeadMotionPredictor"), dataset=toy_dataset)
    mf1 = A.TrainMotionFieldGenerator({**common, "work_dir": str(tmp / "mf1")}).run(
        ctx_for(tmp, "TrainMotionFieldGenerator"), dataset=toy_dataset, keypoints=kp["checkpoint"])
    mf2 = A.TrainMotionFieldGenerator({**common, "stage": 2, "batch_size": 1, "work_dir": str(tmp / "mf2")}).run(
        ctx_for(tmp, "TrainMotionFieldGenerator"), dataset=toy_dataset, keypoints=kp["checkpoint"], init=mf1["checkpoint"])
    return {"keypoints": kp, "head_motion": hm, "stage1": mf1, "motion_field": mf2, "dir": tmp}


def test_trainer_nodes_output_checkpoints(trained):
    for name in ("keypoints", "head_motion", "stage1", "motion_field"):
        out = trained[name]
        assert isinstance(out["checkpoint"], CheckpointBlob) and out["checkpoint"].meta["step"] == 3, name
        assert out["metrics"]["steps"] == 3 and out["loss_curve"].dtype == np.uint8
    assert "heatmap_l1" in trained["stage1"]["metrics"] and "rec" in trained["motion_field"]["metrics"]
    assert (trained["dir"] / "kp.pt").read_bytes() == trained["keypoints"]["checkpoint"].data
    assert trained["motion_field"]["checkpoint"].meta["data"]["settings"]["stage"] == 2


def test_pipeline_nodes_run_with_trained_checkpoints(trained, tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    features = FeatureSeq(rng.normal(size=(45, 4, 41)).astype(np.float32), 25.0, "a2h")
    ctx = ctx_for(tmp_path)
    pose = A.HeadMotionPredictor().run(ctx, reference=reference, features=features,
                                       checkpoint=trained["head_motion"]["checkpoint"])["pose"]
    assert pose.shape == (45, 6) and pose.dtype == np.float32 and np.all(pose[:, 5] > 0)
    field = A.MotionFieldGenerator().run(ctx, reference=reference, features=features, pose=pose,
                                         checkpoint=trained["motion_field"]["checkpoint"])
    kp = field["keypoints"]
    assert kp.value.shape == (45, 10, 2) and kp.jacobian.shape == (45, 10, 2, 2)
    assert field["pose_boxes"].shape == (45, 32, 32)
    out = run_whole(A.KeypointRenderer({"size": 64}), ctx, reference=reference, keypoints=kp,
                    checkpoint=trained["keypoints"]["checkpoint"])
    assert out["frames"].shape == (45, 64, 64, 3) and out["frames"].dtype == np.uint8
    assert out["occlusion"].shape == (45, 16, 16)
    det = A.KeypointDetector({"size": 64}).run(ctx, frames=out["frames"][:3], checkpoint=trained["keypoints"]["checkpoint"])
    assert det["keypoints"].value.shape == (3, 10, 2)
    plain = run_whole(A.KeypointRenderer({"size": 64, "jacobians": False}), ctx, reference=reference, keypoints=kp,
                      checkpoint=trained["keypoints"]["checkpoint"])
    assert plain["frames"].shape == out["frames"].shape


def test_missing_checkpoint_names_the_trainer(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    features = FeatureSeq(rng.normal(size=(5, 4, 41)).astype(np.float32), 25.0, "a2h")
    with pytest.raises(NodeError, match="TrainHeadMotionPredictor"):
        A.HeadMotionPredictor({"checkpoint": "nope.pt"}).run(ctx_for(tmp_path), reference=reference, features=features)
    kp = Keypoints(np.zeros((2, 10, 2), np.float32), np.tile(np.eye(2, dtype=np.float32), (2, 10, 1, 1)))
    with pytest.raises(NodeError, match="TrainKeypointRenderer"):
        run_whole(A.KeypointRenderer({"checkpoint": "nope.pt", "size": 64}), ctx_for(tmp_path), reference=reference,
                  keypoints=kp)
    with pytest.raises(NodeError, match="TrainMotionFieldGenerator"):
        A.MotionFieldGenerator({"checkpoint": "nope.pt"}).run(ctx_for(tmp_path), reference=reference, features=features,
                                                              pose=np.ones((5, 6), np.float32))


def test_bad_inputs_are_clear(trained, tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mfcc = FeatureSeq(rng.normal(size=(5, 15)).astype(np.float32), 25.0, "mfcc_pitch")
    with pytest.raises(NodeError, match="a2h"):
        A.HeadMotionPredictor().run(ctx_for(tmp_path), reference=reference, features=mfcc,
                                    checkpoint=trained["head_motion"]["checkpoint"])
    a2h = FeatureSeq(rng.normal(size=(5, 4, 41)).astype(np.float32), 25.0, "a2h")
    with pytest.raises(NodeError, match="5 audio frames but 4 head poses"):
        A.MotionFieldGenerator().run(ctx_for(tmp_path), reference=reference, features=a2h, pose=np.ones((4, 6), np.float32),
                                     checkpoint=trained["motion_field"]["checkpoint"])
    with pytest.raises(NodeError, match="square"):
        A.HeadMotionPredictor().run(ctx_for(tmp_path), reference=reference[:, :40], features=a2h,
                                    checkpoint=trained["head_motion"]["checkpoint"])
    with pytest.raises(NodeError, match="holds a 'head_motion' model"):
        A.MotionFieldGenerator().run(ctx_for(tmp_path), reference=reference, features=a2h, pose=np.ones((5, 6), np.float32),
                                     checkpoint=trained["head_motion"]["checkpoint"])
    with pytest.raises(NodeError, match="stage-1"):
        A.TrainMotionFieldGenerator({"stage": 2, "steps": 1}).run(ctx_for(tmp_path), dataset="unused",
                                                                   keypoints=trained["keypoints"]["checkpoint"])


def test_evaluation_node_writes_table2(trained, toy_dataset, tmp_path):
    out = A.EvaluateAudio2Head({"splits": ["test"], "max_frames": 4, "path": str(tmp_path / "t2.md"),
                                "figures_dir": str(tmp_path / "fig")}).run(
        ctx_for(tmp_path), dataset=toy_dataset, keypoints=trained["keypoints"]["checkpoint"],
        head_motion=trained["head_motion"]["checkpoint"], head_motion_l1=trained["head_motion"]["checkpoint"],
        motion_field=trained["motion_field"]["checkpoint"])
    m = out["metrics"]
    for key in ("gt_keypoint.PSNR", "gt_head.KE", "full_model.HE", "full_model.SSIM", "w_o_jacobians_switch.PSNR",
                "with_l1_pose_loss.HE", "still_reference.KE"):
        assert np.isfinite(m[key]), key
    assert m["full_model.HE"] == pytest.approx(m["with_l1_pose_loss.HE"])  # the same checkpoint twice
    assert "| GT-keypoint |" in (tmp_path / "t2.md").read_text() and "at 64px" in out["report"]
    assert (tmp_path / "fig" / "frames.png").is_file() and (tmp_path / "fig" / "head_pose.png").is_file()
    assert out["figure"].dtype == np.uint8
