"""Stored teacher outputs: a run that reuses a teacher set reads the frozen teachers' outputs on
its student batches instead of recomputing them, with results identical to computing them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sakdn.config import ExperimentConfig
from tests.tiny import tiny_config as smoke_config
from sakdn.models.teacher import TeacherEnsemble
from sakdn.train import train
from sakdn.train.attention import gsdm_plan
from sakdn.train.data import build_data
from sakdn.train.student_stage import TeacherBatch, run_teachers
from sakdn.train.teacher_stage import build_teachers
from sakdn.train.teacher_store import TeacherOutputs, TeacherStore


def tiny_config(root: Path, tmp: Path, **overrides) -> ExperimentConfig:
    """The smoke configuration (tests/tiny.py) with 64-px frames (2×2 last student maps), two
    teacher and three student epochs (the stored outputs are read in every one), graph GSDM."""
    return smoke_config(root, tmp, **{
        "data.frame_size": 64, "teacher.epochs": 2, "teacher.lr": 1e-3, "student.epochs": 3,
        "student.lr": 1e-2, "distill.ablation_weight": "graph", **overrides})


class TeacherCalls:
    """Counts the teachers' forward passes in the student stage (they run in eval mode)."""

    def __init__(self, monkeypatch) -> None:
        self.student_stage = 0
        forward = TeacherEnsemble.forward

        def counted(module, *args, **kwargs):
            if not module.training:
                self.student_stage += 1
            return forward(module, *args, **kwargs)

        monkeypatch.setattr(TeacherEnsemble, "forward", counted)


def student_history(result) -> list[dict]:
    return [h["metrics"] for h in result.history if h["stage"] == "student"]


@pytest.mark.parametrize("weighting, passes", [("graph", 2), ("ablation_cam", 1)])
def test_a_store_hit_reads_every_batch_and_trains_the_same_student(
    tiny_root, tmp_path, monkeypatch, weighting, passes
) -> None:
    logs: list[str] = []
    config = tiny_config(tiny_root, tmp_path, **{"distill.ablation_weight": weighting})
    plain = train(config, workdir=tmp_path / "plain", log=lambda m: None)
    store = tmp_path / "store"
    miss = train(config, workdir=tmp_path / "miss", teacher_store=store, log=logs.append)
    calls = TeacherCalls(monkeypatch)
    hit = train(config, workdir=tmp_path / "hit", teacher_store=store, log=logs.append)
    calls_hit, calls.student_stage = calls.student_stage, 0
    off = train(config.replace({"train.cache_teacher_outputs": False}),
                workdir=tmp_path / "off", teacher_store=store, log=lambda m: None)

    assert miss.teacher_cache_hit is False and hit.teacher_cache_hit is True
    counts = [re.search(r"(\d+) of (\d+) student batches", m).groups() for m in logs
              if "student batches" in m]
    (computed, batches), (read, batches_hit) = counts
    assert int(batches) == int(batches_hit) > 0 and computed == "0" and read == batches
    # without stored outputs the same run makes its teacher passes per batch: real + ablated
    # (graph), or one pass with the score's gradient (ablation_cam)
    assert calls.student_stage - calls_hit == passes * int(batches)
    for other in (miss, hit, off):
        assert student_history(other) == student_history(plain)
        assert other.metrics["student/val_acc"] == plain.metrics["student/val_acc"]
    a = torch.load(plain.student_path, weights_only=True)["state_dict"]
    b = torch.load(hit.student_path, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_batches_are_computed_not_mistaken_for_stored_ones(tiny_root, tmp_path) -> None:
    store = tmp_path / "store"
    logs: list[str] = []
    train(tiny_config(tiny_root, tmp_path), workdir=tmp_path / "a", teacher_store=store,
          log=lambda m: None)
    # batch size 6: the same teacher set, other batches (SPAMFM mixes a batch's samples)
    config = tiny_config(tiny_root, tmp_path, **{"student.batch_size": 6})
    other = train(config, workdir=tmp_path / "b", teacher_store=store, log=logs.append)
    plain = train(config, workdir=tmp_path / "c", log=lambda m: None)
    assert other.teacher_cache_hit is True
    assert any(re.search(r" 0 of [1-9]\d* student batches", m) for m in logs)
    assert student_history(other) == student_history(plain)


def test_teacher_outputs_depend_on_the_batch_through_the_spamfm_graph(tiny_root, tmp_path):
    """Why outputs are stored per batch and not per sample: in eval mode, with SPAMFM's graph,
    a sample's teacher outputs change with its batch-mates; without the graph they do not."""
    for graph, batch_dependent in ((True, True), (False, False)):
        config = tiny_config(tiny_root, tmp_path, **{"teacher.spamfm_graph": graph})
        bundle = build_data(config, log=lambda m: None)
        torch.manual_seed(0)
        teachers = build_teachers(config, bundle).eval()
        items = [bundle.data.sensors(r) for r in range(8)]
        sensors = torch.stack([torch.from_numpy(np.asarray(s, np.float32)) for s, _ in items])
        mask = torch.stack([torch.from_numpy(m.copy()) for _, m in items])
        plan = gsdm_plan(config)
        vectors = torch.as_tensor(bundle.class_vectors)
        whole = run_teachers(teachers, sensors, mask, config, vectors, plan)
        half = run_teachers(teachers, sensors[:4], mask[:4], config, vectors, plan)
        differs = not torch.allclose(whole.logits[:4], half.logits, atol=1e-5)
        assert differs == batch_dependent


def test_a_stored_batch_round_trips_exactly(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    batch = TeacherBatch(
        logits=torch.randn(5, 2, 3, generator=g), semantic=torch.randn(5, 2, 4, generator=g),
        maps=[torch.randn(5, 2, s, s, generator=g) for s in (8, 4, 2)],
    )
    outputs = TeacherStore(tmp_path / "store").outputs("teachers", salt="cpu")
    rows = np.array([4, 0, 3, 1, 2])
    key = outputs.key(rows)
    assert outputs.load(key) is None
    outputs.save(key, batch.pack(), batch.layout())
    assert outputs.key(rows[::-1]) != key  # the same samples in another order: another batch
    assert TeacherOutputs(outputs.directory, salt="cuda").key(rows) != key
    fresh = TeacherOutputs(outputs.directory, salt="cpu")  # another run reading it
    back = TeacherBatch.unpack(fresh.load(key), fresh.layout(), torch.device("cpu"))
    for name in ("logits", "semantic"):
        assert torch.equal(getattr(back, name), getattr(batch, name))
    assert len(back.maps) == 3 and all(torch.equal(x, y) for x, y in zip(back.maps, batch.maps))
    with pytest.raises(ValueError, match="teacher outputs"):
        outputs.save(key, batch.pack()[:, :-1], batch.layout())
