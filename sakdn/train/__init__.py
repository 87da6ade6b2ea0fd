"""Two-stage SAKDN training as a plain function: no Ray, no MLflow.

``train(config, callback)`` runs the teacher stage (stage 1) and the student stage (stage 2)
and calls ``callback`` after every epoch of both; the search layer hooks Tune and MLflow into
that callback, ``sakdn train`` prints. A run resumes from the checkpoint in its work directory.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from sakdn.config import ExperimentConfig, dump_yaml
from sakdn.seeding import derive_seed, seed_everything
from sakdn.train import checkpoint as ckpt
from sakdn.train.attention import gsdm_plan
from sakdn.train.data import DataBundle, build_data, clip_dataset
from sakdn.train.checkpoint import StageProgress
from sakdn.train.loop import Callback, EpochReport, RunContext, StageState, resolve_device
from sakdn.train.metrics import LATE_EPOCHS, late_mean
from sakdn.data.dataset import RecordingDataset
from sakdn.train.student_stage import StudentStage, outputs_salt, student_gflops
from sakdn.train.teacher_stage import TeacherStage, evaluate_teachers
from sakdn.train.teacher_store import TeacherStore, teacher_key

__all__ = ["train", "TrainResult", "EpochReport", "Callback"]


@dataclass
class TrainResult:
    """The outcome of one run: summary metrics, per-epoch history and the saved models."""

    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    teacher_path: Path | None = None
    student_path: Path | None = None
    teacher_cache_hit: bool | None = None
    workdir: Path | None = None
    effective: dict[str, str] = field(default_factory=dict)  # keys that could not apply as set


def _noop(_: EpochReport) -> None:
    return None


def train(
    config: ExperimentConfig,
    callback: Callback | None = None,
    workdir: str | Path | None = None,
    teacher_store: str | Path | None = None,
    final: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train teachers (with SPAMFM) then the distilled student.

    Args:
        config: the validated experiment configuration.
        callback: called after every epoch with an :class:`EpochReport`.
        workdir: where checkpoints and models go (default ``train.output_dir``); a checkpoint
            already there from the same config is resumed.
        teacher_store: a directory shared by runs; identical teacher stages train once.
        final: train on train + validation, keep the last epoch, evaluate once on test.
    """
    workdir = Path(workdir or config.train.output_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(dump_yaml(config))
    seed_everything(config.train.seed, config.train.deterministic)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    ctx = RunContext(
        device=resolve_device(config.train.device),
        amp=config.train.amp,
        channels_last=config.train.channels_last,
        seed=config.train.seed,
        progress=config.train.progress,
        log=log,
    )
    started = time.time()
    plan = gsdm_plan(config)  # a GSDM that cannot act fails here, before any training
    for note in plan.notes():
        log(note)
    bundle = build_data(config, final=final, log=log)
    resume = _load_resume(workdir, config, log)
    run = _Run(config, bundle, ctx, workdir, callback or _noop,
               list(resume.history) if resume else [],
               TeacherStore(teacher_store) if teacher_store else None)
    for record in run.history:  # resumed: what the checkpoint holds, for a callback that lost it
        run.callback(EpochReport(record["stage"], record["epoch"], record["step"],
                                 record["metrics"], replayed=True))

    teachers = _teacher_stage(run, resume)
    outputs = None  # the store's outputs of this teacher set (reused by every trial that hits it)
    if run.store and config.train.cache_teacher_outputs:
        key = teacher_key(config, bundle.data.manifest["key"])
        outputs = run.store.outputs(key, outputs_salt(ctx, config, plan))
    student_stage = _student_stage(run, teachers, plan, resume, outputs)

    metrics = _summary(config, bundle, ctx, teachers, student_stage, final)
    metrics.update(_late_validation(run.history))
    metrics["time/seconds"] = time.time() - started
    models = workdir / "models"
    meta = {"final": final, "class_names": list(bundle.index.class_names),
            "sensor_names": list(bundle.index.sensor_names), "semantic_dim": bundle.semantic_dim}
    teacher_path = ckpt.save_model(models / ckpt.TEACHERS_NAME, teachers, config, meta)
    student_path = ckpt.save_model(models / ckpt.STUDENT_NAME, student_stage.model, config, meta)
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return TrainResult(metrics, run.history, teacher_path, student_path, run.teacher_cache_hit,
                       workdir, plan.effective())


@dataclass
class _Run:
    """One training run in progress: what both stages read, and the history they append to."""

    config: ExperimentConfig
    bundle: DataBundle
    ctx: RunContext
    workdir: Path
    callback: Callback
    history: list[dict[str, Any]]
    store: TeacherStore | None
    teacher_cache_hit: bool | None = None

    def checkpoint(self, stage: str, epoch: int, teachers: dict | None = None,
                   progress: StageProgress | None = None) -> Path:
        """Write where the run stands; returns the checkpoint's directory."""
        path = self.workdir / "checkpoint" / ckpt.CHECKPOINT_NAME
        ckpt.RunCheckpoint(self.config.to_flat(), stage, epoch, self.history, teachers, progress,
                           self.teacher_cache_hit).save(path)
        return path.parent

    def fit(self, stage: StageState, start: int, epochs: int, step_offset: int,
            teachers: dict | None = None) -> None:
        """A stage's epochs after ``start``: train, record, checkpoint, report; then keep its
        best-validation weights. ``step`` runs on across both stages (teacher epochs first)."""
        for epoch in range(start + 1, epochs + 1):
            metrics = stage.run_epoch(epoch)
            metrics[f"{stage.name}/best_val_acc"] = max(stage.best_acc, 0.0)
            step = step_offset + epoch
            self.history.append({"stage": stage.name, "epoch": epoch, "step": step,
                                 "metrics": metrics})
            directory = self.checkpoint(stage.name, epoch, teachers, stage.state())
            done = stage.name == ckpt.STAGES[-1] and epoch == epochs
            self.callback(EpochReport(stage.name, epoch, step, metrics, directory, done=done,
                                      stage_end=epoch == epochs))
        stage.finish()


def _load_resume(workdir: Path, config: ExperimentConfig, log) -> ckpt.RunCheckpoint | None:
    path = workdir / "checkpoint" / ckpt.CHECKPOINT_NAME
    if not path.exists():
        return None
    state = ckpt.RunCheckpoint.load(path)
    if state.config != config.to_flat():
        log(f"{path} belongs to a different configuration; starting afresh")
        return None
    log(f"resuming from {path} ({state.stage} epoch {state.epoch})")
    return state


def _teacher_stage(run: _Run, resume: ckpt.RunCheckpoint | None) -> torch.nn.Module:
    """Train (or reuse) the teachers; returns the frozen best-validation teacher set."""
    stage = TeacherStage(run.config, run.bundle, run.ctx)
    if resume and resume.stage == "student":
        stage.model.load_state_dict(resume.teachers)
        run.teacher_cache_hit = resume.teacher_cache_hit
        return stage.model
    resuming = resume if resume and resume.stage == "teacher" else None
    if run.store is None:
        _train_teachers(run, stage, resuming)
    else:
        key = teacher_key(run.config, run.bundle.data.manifest["key"])
        with run.store.locked(key):
            run.teacher_cache_hit = run.store.has(key) and resuming is None
            if run.teacher_cache_hit:
                state, _, _ = ckpt.load_model_file(run.store.entry(key) / ckpt.TEACHERS_NAME)
                stage.model.load_state_dict(state)
                for record in run.store.read_history(key):  # replay: every trial shows curves
                    run.history.append(record)
                    run.callback(EpochReport("teacher", record["epoch"], record["step"],
                                             record["metrics"]))
                run.ctx.log(f"teacher cache hit {key}")
            else:
                _train_teachers(run, stage, resuming)
                ckpt.save_model(run.store.entry(key) / ckpt.TEACHERS_NAME, stage.model,
                                run.config, {})
                run.store.write_history(key, [h for h in run.history if h["stage"] == "teacher"])
            run.store.record(key, hit=run.teacher_cache_hit, run=str(run.workdir))
    run.checkpoint("student", 0, stage.model.state_dict())
    return stage.model


def _train_teachers(run: _Run, stage: TeacherStage, resume: ckpt.RunCheckpoint | None) -> None:
    start = 0
    if resume is not None:
        stage.load_state(resume.progress)
        start = resume.epoch
    run.fit(stage, start, run.config.teacher.epochs, step_offset=0)


def _student_stage(run: _Run, teachers, plan, resume: ckpt.RunCheckpoint | None,
                   outputs=None) -> StudentStage:
    # The student's initial weights must not depend on how the teachers came about (trained
    # here, reused from the store, or resumed): seed its construction on its own.
    torch.manual_seed(derive_seed(run.config.train.seed, "student", "init"))
    stage = StudentStage(run.config, run.bundle, run.ctx, teachers, plan, outputs)
    start = 0
    if resume and resume.stage == "student" and resume.epoch > 0:
        stage.load_state(resume.progress)
        start = resume.epoch
    run.fit(stage, start, run.config.student.epochs, step_offset=run.config.teacher.epochs,
            teachers=teachers.state_dict())
    return stage


def _summary(config, bundle, ctx, teachers, stage: StudentStage, final) -> dict[str, float]:
    """The kept models on validation (search), on test once (final training), or on both
    (``train.evaluate_test``: the validation-chosen model also tested, for ablations)."""
    metrics: dict[str, float] = {}
    splits = [("test", bundle.test)] if final else [("val", bundle.val)]
    if not final and config.train.evaluate_test:
        splits.append(("test", bundle.test))
    for name, split in splits:
        if not len(split):
            continue
        recordings = RecordingDataset(bundle.data, split)
        names = bundle.index.sensor_names
        metrics.update(evaluate_teachers(teachers, recordings, config, ctx, names, name,
                                         bundle.class_vectors))
        metrics.update(stage.evaluate(clip_dataset(config, bundle, split), name))
    metrics["student/gflops"] = student_gflops(
        stage.model, config.student.segments, config.data.frame_size
    )
    return metrics


def _late_validation(history: list[dict[str, Any]]) -> dict[str, float]:
    """The mean validation accuracy of the student's last ``LATE_EPOCHS`` epochs (``late_mean``)."""
    values = [h["metrics"]["student/val_acc"] for h in history
              if h["stage"] == "student" and "student/val_acc" in h["metrics"]]
    if not values:
        return {}
    return {f"student/val_acc_last{LATE_EPOCHS}": late_mean(values)}


def load_student(path: str | Path) -> tuple[torch.nn.Module, ExperimentConfig, dict]:
    """Rebuild a saved student from its model file (one documented call)."""
    from sakdn.models.student import Student

    state, config, meta = ckpt.load_model_file(path)
    model = Student(
        _without_initial_weights(config.student),
        num_classes=len(meta["class_names"]),
        semantic_dim=meta["semantic_dim"],
        frame_size=config.data.frame_size,
    )
    model.load_state_dict(state)
    return model.eval(), config, meta


def load_teachers(path: str | Path) -> tuple[torch.nn.Module, ExperimentConfig, dict]:
    """Rebuild a saved teacher set from its model file."""
    from sakdn.models.teacher import TeacherEnsemble

    state, config, meta = ckpt.load_model_file(path)
    model = TeacherEnsemble(
        _without_initial_weights(config.teacher),
        num_sensors=len(meta["sensor_names"]),
        num_classes=len(meta["class_names"]),
        semantic_dim=meta["semantic_dim"],
        image_size=config.gaf.image_size,
    )
    model.load_state_dict(state)
    return model.eval(), config, meta



def _without_initial_weights(section):
    """The section with no initial weights: a saved model's state dict replaces them anyway,
    so reloading it needs no ImageNet file on this machine."""
    return dataclasses.replace(section, weights="")
