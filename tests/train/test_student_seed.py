"""The student stage does not depend on how the teachers came about.

A run that trains its teachers and a run that loads the same teachers from the teacher store
must give the same student: its initial weights are drawn under their own derived seed
(``derive_seed(seed, "student", "init")``), not from whatever random state the teacher stage
left behind. Without that, a search's teacher-store hits would change its trials' results.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sakdn.config import ExperimentConfig
from sakdn.train import train
from tests.tiny import tiny_config


def _config(root: Path, tmp: Path) -> ExperimentConfig:
    return tiny_config(root, tmp, **{"teacher.epochs": 2, "train.seed": 3})


def _student_records(result) -> list[dict]:
    return [h["metrics"] for h in result.history if h["stage"] == "student"]


def test_student_is_the_same_whether_teachers_were_trained_or_loaded(tiny_root, tmp_path):
    config = _config(tiny_root, tmp_path)
    store = tmp_path / "store"
    trained = train(config, workdir=tmp_path / "trained", teacher_store=store, log=lambda m: None)
    loaded = train(config, workdir=tmp_path / "loaded", teacher_store=store, log=lambda m: None)
    assert trained.teacher_cache_hit is False and loaded.teacher_cache_hit is True

    a, b = _student_records(trained), _student_records(loaded)
    assert len(a) == config.student.epochs and a == b  # losses, accuracies, every epoch
    assert a[0]["student/loss"] != a[1]["student/loss"]  # the records do carry the training
    drop = {"time/seconds"}
    assert {k: v for k, v in trained.metrics.items() if k not in drop} == {
        k: v for k, v in loaded.metrics.items() if k not in drop
    }
    sa = torch.load(trained.student_path, weights_only=True)["state_dict"]
    sb = torch.load(loaded.student_path, weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
