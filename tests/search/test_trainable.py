"""The Tune trainable on a tiny config, with Tune's session calls replaced by recorders.

Running it without a Ray cluster keeps these tests fast; the real Tune path is covered by the
search tests (``test_search.py``).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from sakdn.config import load_config, parse_overrides
from sakdn.errors import TrialDiverged
from sakdn.search import trainable as tb
from tests.tiny import SMOKE


class FakeTune:
    """Stands in for ``ray.tune``'s session: records reports, persists checkpoints."""

    def __init__(self, root: Path, trial_id: str = "abc_00001", checkpoint=None,
                 crash_after_step: int | None = None) -> None:
        self.root, self.trial_id = root, trial_id
        self.checkpoint = checkpoint
        self.crash_after_step = crash_after_step
        self.results: list[dict] = []
        self.persisted: list[Path | None] = []

    def install(self, monkeypatch) -> None:
        from ray import tune

        fake = self

        class Context:
            def get_trial_id(self) -> str:
                return fake.trial_id

        monkeypatch.setattr(tune, "get_context", lambda: Context())
        monkeypatch.setattr(tune, "get_checkpoint", lambda: fake.checkpoint)
        monkeypatch.setattr(tune, "report", self.report)

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.results.append(dict(metrics))
        kept = None
        if checkpoint is not None:  # Tune copies the directory to its storage
            kept = self.root / f"checkpoint_{len(self.results):06d}"
            shutil.copytree(checkpoint.path, kept)
        self.persisted.append(kept)
        if self.crash_after_step is not None and metrics.get("step") == self.crash_after_step:
            raise RuntimeError("node lost")


@pytest.fixture
def base(tiny_root: Path) -> dict:
    config = load_config(SMOKE, parse_overrides([f"data.root={tiny_root}"]))
    return config.replace({"train.progress": False}).to_flat()


def _setup(base: dict, tmp_path: Path, **kw) -> tb.TrialSetup:
    return tb.TrialSetup(
        base=base, search_dir=str(tmp_path / "search"), metrics=("student/best_val_acc",),
        prune_metric="student/best_val_acc", teacher_store=str(tmp_path / "store"), **kw,
    )


def test_every_epoch_is_reported_on_one_monotone_step(base, tmp_path, monkeypatch) -> None:
    fake = FakeTune(tmp_path / "tune")
    fake.install(monkeypatch)
    setup = _setup(base, tmp_path, checkpoint_every=2)
    tb.write_ticket(setup.search_dir, fake.trial_id, 5)
    tb.run_trial({"student.lr": 0.002, "distill.lambda_sp": 0.25}, setup)

    teacher_epochs, student_epochs = base["teacher.epochs"], base["student.epochs"]
    results = fake.results
    assert len(results) == teacher_epochs + student_epochs  # the last one carries the summary
    assert [r["step"] for r in results] == list(range(1, teacher_epochs + student_epochs + 1))
    stages = ["teacher"] * teacher_epochs + ["student"] * student_epochs
    assert [r["stage"] for r in results] == stages
    # pruners see student epochs only, numbered from 1 whatever the teacher stage's length
    assert [r.get("prune_step") for r in results] == [None] * teacher_epochs + list(
        range(1, student_epochs + 1)
    )
    assert all("student/best_val_acc" not in r for r in results[:teacher_epochs])
    assert all(0.0 <= r["student/best_val_acc"] <= 1.0 for r in results[teacher_epochs:])
    final = results[-1]
    assert final["completed"] is True and "completed" not in results[-2]
    assert final["student/gflops"] > 0 and "summary/student/val_acc" in final
    # a teacher-stage key is reported by teacher epochs only: its summary value goes under
    # summary/ (logged under its own name at the last step, it would extend the curve)
    assert "summary/teacher/val_acc" in final and "teacher/val_acc" not in final
    # Tune keeps a checkpoint every checkpoint_every epochs of a stage and at its end
    ends = {teacher_epochs, teacher_epochs + student_epochs}
    for kept, result in zip(fake.persisted, results):
        if result["epoch"] % 2 == 0 or result["step"] in ends:
            assert kept is not None and (kept / "checkpoint.pt").exists(), result["step"]
        else:
            assert kept is None, result["step"]
    # the work dir is keyed by the Optuna trial number, and trained the sampled values
    from sakdn.train import load_student

    workdir = Path(setup.search_dir) / "trials" / "00005"
    _, config, _ = load_student(workdir / "models" / "student.pt")
    assert config.student.lr == 0.002 and config.distill.lambda_sp == 0.25
    assert config.student.epochs == student_epochs


def test_a_retried_trial_resumes_from_tunes_checkpoint(base, tmp_path, monkeypatch) -> None:
    from ray.tune import Checkpoint

    setup = _setup(base, tmp_path, checkpoint_every=2)
    first = FakeTune(tmp_path / "tune1", crash_after_step=2)
    first.install(monkeypatch)
    with pytest.raises(RuntimeError, match="node lost"):
        tb.run_trial({"student.lr": 0.002}, setup)
    assert [r["step"] for r in first.results] == [1, 2]
    # the teacher stage's end (step 1) kept a Tune checkpoint, student epoch 1 (step 2) did
    # not (every 2 epochs of a stage)
    assert first.persisted[0] is not None and first.persisted[1] is None
    # the retry lands on a node without the work dir: only Tune's copy (step 1) is left
    shutil.rmtree(Path(setup.search_dir) / "trials")
    second = FakeTune(tmp_path / "tune2", checkpoint=Checkpoint.from_directory(
        str(first.persisted[-2])))
    second.install(monkeypatch)
    tb.run_trial({"student.lr": 0.002}, setup)
    total = base["teacher.epochs"] + base["student.epochs"]
    assert [r["step"] for r in second.results] == list(range(2, total + 1))
    assert second.results[-1]["completed"] is True


def test_a_bad_sampled_value_fails_the_trial_with_its_message(base, tmp_path, monkeypatch) -> None:
    fake = FakeTune(tmp_path / "tune")
    fake.install(monkeypatch)
    tb.run_trial({"student.lr": -1.0}, _setup(base, tmp_path))
    assert len(fake.results) == 1
    assert "student.lr" in fake.results[0]["failed"] and "-1.0" in fake.results[0]["failed"]


def test_a_diverging_trial_reports_nan_and_its_reason(base, tmp_path, monkeypatch) -> None:
    import sakdn.train

    fake = FakeTune(tmp_path / "tune")
    fake.install(monkeypatch)

    def diverging_train(config, callback, **kwargs):
        from sakdn.train import EpochReport

        callback(EpochReport("teacher", 1, 1, {"teacher/loss": 2.0}, None))
        raise TrialDiverged("student", 1, "gsdm", float("inf"))

    monkeypatch.setattr(sakdn.train, "train", diverging_train)
    tb.run_trial({"student.lr": 0.002}, _setup(base, tmp_path))
    assert len(fake.results) == 2
    last = fake.results[-1]
    assert math.isnan(last["student/best_val_acc"])
    assert "gsdm" in last["diverged"] and last["step"] == 1


def test_tickets_and_work_dirs(tmp_path: Path) -> None:
    assert tb.read_ticket(tmp_path, "t1") is None
    tb.write_ticket(tmp_path, "t1", 12)
    assert tb.read_ticket(tmp_path, "t1") == 12
    assert tb.trial_workdir(tmp_path, 12, "t1") == tmp_path / "trials" / "00012"
    assert tb.trial_workdir(tmp_path, None, "t1") == tmp_path / "trials" / "t1"


def test_trial_config_applies_and_validates_the_sampled_values(base) -> None:
    config = tb.trial_config(base, {"distill.lambda_gsdm": 3.0, "student.segments": 3})
    assert config.distill.lambda_gsdm == 3.0 and config.student.segments == 3
    assert config.teacher.epochs == base["teacher.epochs"]
    from sakdn.errors import ConfigError

    with pytest.raises(ConfigError, match="student.dropout"):
        tb.trial_config(base, {"student.dropout": 2.0})


def _prepare_in_child(flat: dict, search_dir: str) -> None:
    import torch

    torch.set_num_threads(1)
    from sakdn.config import from_flat

    tb._prepare_data(from_flat(flat), Path(search_dir), log=lambda m: None)


@pytest.mark.timeout(300)
def test_trials_that_must_build_the_cache_take_turns(base, tmp_path) -> None:
    """Two trials needing the same missing cache entry: one builds, the other waits and reads
    it; the entry equals one built alone (concurrent builders would corrupt it)."""
    import multiprocessing

    import numpy as np

    from sakdn.config import from_flat
    from sakdn.train.data import build_data

    shared = dict(base, **{"data.cache_dir": str(tmp_path / "shared")})
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_prepare_in_child, args=(shared, str(tmp_path / "search")))
                for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(240)
        assert child.exitcode == 0
    alone = build_data(from_flat(dict(base, **{"data.cache_dir": str(tmp_path / "alone")})))
    built = build_data(from_flat(shared))
    assert built.data.path.name == alone.data.path.name  # the same content key
    for name in ("gaf", "frames", "sensor_mask", "frame_offsets"):
        assert np.array_equal(getattr(built.data, name), getattr(alone.data, name)), name


def test_a_trial_stopped_by_tune_sends_its_waiting_records(tmp_path, monkeypatch) -> None:
    """MLflow records wait for a later send (``send_every_s``); Tune stopping the trial in
    ``tune.report`` (``SystemExit``) must not leave them for the end of the search."""
    from ray import tune

    class Tracker:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def log_metrics(self, metrics, step) -> None:
            self.calls.append(f"log {step}")

        def flush(self, wait_s: float = 0.0) -> bool:
            self.calls.append("flush")
            return True

    def stop(metrics, checkpoint=None) -> None:
        raise SystemExit(0)

    monkeypatch.setattr(tune, "report", stop)
    tracker = Tracker()
    reporter = tb._Reporter(tracker, _setup({}, tmp_path))

    from sakdn.train import EpochReport

    with pytest.raises(SystemExit):
        reporter(EpochReport("student", 2, 7, {"a": 1.0}))
    assert tracker.calls == ["log 2", "flush"]  # MLflow steps count the stage's epochs
    # an epoch told again by a resumed run goes to MLflow only: Tune is not called
    reporter(EpochReport("student", 1, 6, {"a": 0.5}, replayed=True))
    assert tracker.calls == ["log 2", "flush", "log 1"]


def test_an_attempt_killed_between_checkpoint_and_record_loses_no_epoch(
    base, tmp_path, monkeypatch
) -> None:
    """``train`` writes an epoch's checkpoint, then calls back: an attempt that dies between the
    two leaves a checkpoint newer than its MLflow records. The retry resumes past that epoch
    and must still log it, once, and must not take the teacher's steps for student ones."""
    from mlflow import MlflowClient

    from sakdn import tracking as tr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = tr.ensure_experiment(client, "killed", str(tmp_path / "artifacts"))
    parent, _ = tr.open_parent(client, exp, "s", {}, {})
    flat = {**base, "teacher.epochs": 3, "student.epochs": 4}
    setup = _setup(flat, tmp_path, tracking=tr.SearchTracking(uri, exp, parent, "s"),
                   send_every_s=0.0)
    tb.write_ticket(setup.search_dir, "abc_00001", 0)
    logged = tb._Reporter.__call__

    def dies_at_student_epoch_2(self, report):
        if (report.stage, report.epoch) == ("student", 2):
            raise RuntimeError("killed")  # its checkpoint is written, its record is not
        logged(self, report)

    FakeTune(tmp_path / "tune1").install(monkeypatch)
    monkeypatch.setattr(tb._Reporter, "__call__", dies_at_student_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        tb.run_trial({"student.lr": 0.002}, setup)
    monkeypatch.setattr(tb._Reporter, "__call__", logged)
    retry = FakeTune(tmp_path / "tune2")
    retry.install(monkeypatch)
    tb.run_trial({"student.lr": 0.002}, setup)
    # Tune hears of the epochs trained now: student epochs 3 and 4 (the work dir's checkpoint
    # of epoch 2 is newer than any Tune kept)
    assert [(r["stage"], r["epoch"]) for r in retry.results] == [("student", 3), ("student", 4)]
    (run,) = client.search_runs([exp], "tags.`sakdn.optuna_trial` = '0'")
    steps = {k: sorted(m.step for m in client.get_metric_history(run.info.run_id, k))
             for k in ("teacher/loss", "student/loss", "student/val_acc")}
    assert steps == {"teacher/loss": [1, 2, 3], "student/loss": [1, 2, 3, 4],
                     "student/val_acc": [1, 2, 3, 4]}
