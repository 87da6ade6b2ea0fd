"""Two-stage training: gradients of GSDM, determinism, checkpoints, resume, divergence, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sakdn.config import ExperimentConfig
from tests.tiny import tiny_config as smoke_config
from sakdn.errors import TrialDiverged
from sakdn.train import EpochReport, load_student, load_teachers, train
from sakdn.train.attention import gsdm_plan
from sakdn.train.data import build_data
from sakdn.train.loop import RunContext
from sakdn.train.student_stage import StudentStage
from sakdn.train.teacher_stage import build_teachers


def tiny_config(root: Path, tmp: Path, **overrides) -> ExperimentConfig:
    """The smoke configuration (tests/tiny.py) with two teacher epochs at lr 1e-3."""
    return smoke_config(root, tmp, **{"teacher.epochs": 2, "teacher.lr": 1e-3, **overrides})


def quiet(_: str) -> None:
    return None


def test_gsdm_alone_trains_the_student_path_and_never_the_teachers(tiny_root, tmp_path) -> None:
    # 64-px frames and GAF images: the last stage maps are 2×2 (1×1 pairs are left out).
    config = tiny_config(
        tiny_root, tmp_path, **{"distill.lambda_st": 0.0, "distill.lambda_sp": 0.0,
                                "distill.ablation_weight": "none", "data.frame_size": 64,
                                "gaf.image_size": 64}
    )
    bundle = build_data(config, log=quiet)
    ctx = RunContext(torch.device("cpu"), False, False, 0, False)
    teachers = build_teachers(config, bundle)
    stage = StudentStage(config, bundle, ctx, teachers, gsdm_plan(config))
    stage.model.train()
    batch = torch.utils.data.default_collate([stage.train_set[i] for i in range(4)])
    terms, _ = stage.step(batch)
    assert terms["gsdm"] > 0
    terms["gsdm"].backward()
    for name, p in stage.model.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no GSDM gradient for {name}"
    for name, p in teachers.named_parameters():
        assert p.grad is None, f"teacher parameter {name} received a gradient"
        assert not p.requires_grad


def test_ablated_pass_leaves_student_batchnorm_statistics_alone(tiny_root, tmp_path) -> None:
    import copy

    config = tiny_config(tiny_root, tmp_path, **{"distill.ablation_weight": "prob_drop"})
    bundle = build_data(config, log=quiet)
    ctx = RunContext(torch.device("cpu"), False, False, 0, False)
    stage = StudentStage(config, bundle, ctx, build_teachers(config, bundle), gsdm_plan(config))
    stage.model.train()
    batch = torch.utils.data.default_collate([stage.train_set[i] for i in range(4)])
    initial = copy.deepcopy(stage.model.state_dict())
    stage.step(batch)  # real pass + ablated (zero-input) passes
    after_step = {k: v.clone() for k, v in stage.model.state_dict().items() if "running" in k}
    stage.model.load_state_dict(initial)
    with torch.no_grad():
        stage.model(batch["frames"])  # the real pass alone
    for key, value in stage.model.state_dict().items():
        if "running" in key:
            assert torch.equal(value, after_step[key]), key
    assert stage.model.training  # the step put the student back in train mode


def test_same_seed_same_metrics_and_checkpoints_round_trip(tiny_root, tmp_path) -> None:
    a = train(tiny_config(tiny_root, tmp_path / "a"), workdir=tmp_path / "a", log=quiet)
    b = train(tiny_config(tiny_root, tmp_path / "b"), workdir=tmp_path / "b", log=quiet)
    drop = {"time/seconds"}
    assert {k: v for k, v in a.metrics.items() if k not in drop} == {
        k: v for k, v in b.metrics.items() if k not in drop
    }
    assert [h["metrics"] for h in a.history] == [h["metrics"] for h in b.history]

    student, config, meta = load_student(a.student_path)
    teachers, _, _ = load_teachers(a.teacher_path)
    assert config == tiny_config(tiny_root, tmp_path / "a")
    frames = torch.zeros(2, config.student.segments, 3, 32, 32)
    state = torch.load(a.student_path, weights_only=True)["state_dict"]
    for key, value in student.state_dict().items():
        assert torch.equal(value, state[key])
    assert student(frames).logits.shape == (2, len(meta["class_names"]))
    sensors = torch.zeros(2, len(meta["sensor_names"]), 3, 16, 16)
    assert teachers(sensors).logits.shape == (2, 2, 3)


def test_reports_every_epoch_on_one_monotone_step(tiny_root, tmp_path) -> None:
    reports: list[EpochReport] = []
    train(tiny_config(tiny_root, tmp_path), callback=reports.append, log=quiet)
    assert [(r.stage, r.epoch) for r in reports] == [
        ("teacher", 1), ("teacher", 2), ("student", 1), ("student", 2)
    ]
    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert reports[-1].done and not any(r.done for r in reports[:-1])
    assert all((r.checkpoint_dir / "checkpoint.pt").exists() for r in reports)
    assert "student/val_acc" in reports[-1].metrics and "teacher/val_acc" in reports[0].metrics
    student = reports[-1].metrics  # the continuous validation signals beside the accuracy
    assert student["student/val_loss"] > 0 and 0 < student["student/val_p_true"] < 1


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_at", [("teacher", 1), ("student", 1)])
def test_resume_after_interruption_gives_the_uninterrupted_result(
    tiny_root, tmp_path, stop_at
) -> None:
    whole = train(tiny_config(tiny_root, tmp_path / "whole"), workdir=tmp_path / "whole", log=quiet)

    def stop(report: EpochReport) -> None:
        if (report.stage, report.epoch) == stop_at:
            raise Interrupt

    config = tiny_config(tiny_root, tmp_path / "cut")
    with pytest.raises(Interrupt):
        train(config, callback=stop, workdir=tmp_path / "cut", log=quiet)
    seen: list[EpochReport] = []
    resumed = train(config, callback=seen.append, workdir=tmp_path / "cut", log=quiet)
    trained = [(r.stage, r.epoch) for r in seen if not r.replayed]
    assert stop_at not in trained  # the finished epoch was not trained again
    assert resumed.metrics["student/val_acc"] == whole.metrics["student/val_acc"]
    assert [h["metrics"] for h in resumed.history] == [h["metrics"] for h in whole.history]
    # the interrupted epoch's callback never finished: the resumed run tells it again, first,
    # with everything else its checkpoint holds, so a callback that keeps records lacks nothing
    replayed = [r for r in seen if r.replayed]
    assert seen[:len(replayed)] == replayed and (replayed[-1].stage, replayed[-1].epoch) == stop_at
    assert [r.metrics for r in replayed] == [h["metrics"] for h in whole.history[:len(replayed)]]
    assert all(r.checkpoint_dir is None for r in replayed)


def test_nan_loss_stops_with_trial_diverged(tiny_root, tmp_path, monkeypatch) -> None:
    from sakdn import losses

    monkeypatch.setattr(losses, "_mse_per_sample", lambda s, t: s.sum(dim=1) * float("nan"))
    with pytest.raises(TrialDiverged) as info:
        train(tiny_config(tiny_root, tmp_path), log=quiet)
    assert info.value.stage == "student" and info.value.epoch == 1 and info.value.term == "sp"
    assert "epoch 1" in str(info.value) and "'sp'" in str(info.value)


def test_teacher_store_reuses_an_identical_teacher_stage(tiny_root, tmp_path) -> None:
    store = tmp_path / "store"
    first = train(tiny_config(tiny_root, tmp_path / "1"), workdir=tmp_path / "1",
                  teacher_store=store, log=quiet)
    reports: list[EpochReport] = []
    second = train(
        tiny_config(tiny_root, tmp_path / "2", **{"distill.lambda_gsdm": 0.5}),
        callback=reports.append, workdir=tmp_path / "2", teacher_store=store, log=quiet,
    )
    assert first.teacher_cache_hit is False and second.teacher_cache_hit is True
    a = torch.load(first.teacher_path, weights_only=True)["state_dict"]
    b = torch.load(second.teacher_path, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.stage for r in reports][:2] == ["teacher", "teacher"]  # replayed curves
    events = [json.loads(x) for x in (store / "events.jsonl").read_text().splitlines()]
    assert [e["hit"] for e in events] == [False, True]

    third = train(tiny_config(tiny_root, tmp_path / "3", **{"teacher.lr": 2e-3}),
                  workdir=tmp_path / "3", teacher_store=store, log=quiet)
    assert third.teacher_cache_hit is False  # a teacher setting changed: trained anew


def test_evaluate_test_reports_the_validation_chosen_model_on_test(tiny_root, tmp_path) -> None:
    from sakdn.train.data import clip_dataset
    from sakdn.train.student_stage import predict_student

    config = tiny_config(tiny_root, tmp_path, **{"train.evaluate_test": True,
                                                 "student.epochs": 3})
    result = train(config, workdir=tmp_path / "run", log=quiet)
    val = [h["metrics"]["student/val_acc"] for h in result.history if h["stage"] == "student"]
    assert result.metrics["student/val_acc_last5"] == pytest.approx(sum(val) / 3)
    assert result.metrics["student/val_acc"] == max(val)  # the kept model: best validation
    student, _, _ = load_student(result.student_path)
    bundle = build_data(config, log=quiet)
    logits, labels = predict_student(student, clip_dataset(config, bundle, bundle.test), config,
                                     RunContext(torch.device("cpu"), False, False, 0, False))
    expected = float((logits.argmax(1) == labels).float().mean())
    assert result.metrics["student/test_acc"] == pytest.approx(expected)
    assert "teacher/test_acc" in result.metrics
    plain = train(tiny_config(tiny_root, tmp_path / "p"), workdir=tmp_path / "p", log=quiet)
    assert "student/test_acc" not in plain.metrics  # a search's trial never touches test


def test_a_model_file_of_an_older_version_still_loads(tmp_path) -> None:
    from sakdn.models.student import Student
    from sakdn.train import checkpoint as ckpt

    config = ExperimentConfig().replace({"student.width": 4, "student.segments": 2,
                                         "data.frame_size": 32})
    model = Student(config.student, num_classes=3, semantic_dim=5, frame_size=32)
    path = ckpt.save_model(tmp_path / "student.pt", model, config,
                           {"class_names": ["a", "b", "c"], "semantic_dim": 5})
    payload = torch.load(path, weights_only=True)
    payload["config"]["train.eval_every"] = 1  # a key an earlier version had
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="train.eval_every"):
        loaded, saved, _ = load_student(path)
    assert saved == config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values()))


def test_a_data_starved_student_trains_on_every_kth_clip_with_the_same_teachers(
    tiny_root, tmp_path
) -> None:
    from sakdn.train.data import student_training
    from sakdn.train.teacher_store import teacher_key

    full = tiny_config(tiny_root, tmp_path)
    starved = full.replace({"data.student_subset": 2})
    bundle = build_data(starved, log=quiet)
    clips = student_training(starved, bundle)
    assert [s.key for s in clips.samples] == [s.key for s in bundle.train.samples[1::2]]
    assert student_training(full, bundle).samples == bundle.train.samples
    key = bundle.data.manifest["key"]
    assert teacher_key(full, key) == teacher_key(starved, key)  # one teacher set for both
    ctx = RunContext(torch.device("cpu"), False, False, 0, False)
    stage = StudentStage(starved, bundle, ctx, build_teachers(starved, bundle),
                         gsdm_plan(starved))
    assert len(stage.train_set) == len(clips) < len(bundle.train)
