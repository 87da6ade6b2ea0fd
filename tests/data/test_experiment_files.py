"""The per-dataset experiment files load and carry the reference per-dataset settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sakdn.config import load_config
from sakdn.data.registry import ADAPTERS, protocols

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# file → (dataset, protocol, segments, teacher batch, student batch, teacher epochs, student epochs)
PAPER = {
    "utd-mhad_cross-subject": ("utd_mhad", "cross_subject", 8, 16, 16, 100, 100),
    "utd-mhad_trial": ("utd_mhad", "trial", 8, 16, 16, 100, 100),
    "berkeley-mhad_cross-subject": ("berkeley_mhad", "cross_subject", 8, 4, 8, 100, 30),
    "mmact_cross-subject": ("mmact", "cross_subject", 3, 16, 32, 70, 60),
    "mmact_cross-view": ("mmact", "cross_view", 3, 16, 32, 70, 60),
    "mmact_cross-scene": ("mmact", "cross_scene", 3, 16, 32, 70, 60),
    "mmact_cross-session": ("mmact", "cross_session", 3, 16, 32, 60, 60),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_dataset_experiment_files(name: str) -> None:
    cfg = load_config(EXPERIMENTS / f"{name}.yaml")
    dataset, protocol, segments, t_batch, s_batch, t_epochs, s_epochs = PAPER[name]
    assert (cfg.data.dataset, cfg.data.protocol) == (dataset, protocol)
    assert protocol in protocols(dataset) and dataset in ADAPTERS
    assert cfg.data.root and cfg.gaf.image_size == 224
    assert (cfg.teacher.backbone, cfg.student.backbone) == ("vgg16_bn", "googlenet")
    # ImageNet-pretrained teachers and student, as the paper; partial BN presumes them
    assert (cfg.teacher.weights, cfg.student.weights) == ("imagenet", "imagenet")
    assert cfg.student.partial_bn
    assert (cfg.student.segments, cfg.teacher.batch_size, cfg.student.batch_size) == \
        (segments, t_batch, s_batch)
    assert (cfg.teacher.epochs, cfg.student.epochs) == (t_epochs, s_epochs)
    # learning-rate steps land on the reference epochs (50 teacher, 50 / 20 / 30 student)
    if cfg.teacher.lr_decay_at:
        assert round(cfg.teacher.lr_decay_at * cfg.teacher.epochs) == 50
    student_step = {"utd_mhad": 50, "berkeley_mhad": 20, "mmact": 30}[dataset]
    assert round(cfg.student.lr_decay_at * cfg.student.epochs) == student_step


def test_basic_motions_experiment_file() -> None:
    cfg = load_config(EXPERIMENTS / "basic-motions.yaml")
    assert cfg.data.dataset == "basic_motions"
    assert cfg.data.protocol in protocols("basic_motions")


@pytest.mark.parametrize("name", ["synthetic", "synthetic_search", "synthetic_smoke",
                                  "basic-motions"])
def test_synthetic_experiments_train_from_scratch(name: str) -> None:
    """No network in CI: the files the tests run need no weights file."""
    cfg = load_config(EXPERIMENTS / f"{name}.yaml")
    assert (cfg.teacher.weights, cfg.student.weights) == ("", "")


def test_every_real_data_experiment_starts_from_imagenet() -> None:
    real = [p.stem for p in EXPERIMENTS.glob("*.yaml")
            if p.stem.startswith(("utd-mhad_", "berkeley-mhad_", "mmact_"))]
    assert sorted(real) == sorted(PAPER)
