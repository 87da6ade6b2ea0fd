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
from sakdn.train.loop import Callback, EpochReport, RunContext, resolve_device
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
    callback = callback or _noop
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
    history: list[dict[str, Any]] = list(resume["history"]) if resume else []

    teachers, hit = _teacher_stage(config, bundle, ctx, callback, workdir, teacher_store, resume, history)
    outputs = None  # the store's outputs of this teacher set (reused by every trial that hits it)
    if teacher_store and hit is not None and config.train.cache_teacher_outputs:
        key = teacher_key(config, bundle.data.manifest["key"])
        outputs = TeacherStore(teacher_store).outputs(key, outputs_salt(ctx, config, plan))
    student_stage = _student_stage(config, bundle, ctx, callback, workdir, teachers, resume, history,
                                   plan, outputs)

    metrics = _summary(config, bundle, ctx, teachers, student_stage, history, final)
    metrics["time/seconds"] = time.time() - started
    models = workdir / "models"
    meta = {"final": final, "class_names": list(bundle.index.class_names),
            "sensor_names": list(bundle.index.sensor_names), "semantic_dim": bundle.semantic_dim}
    teacher_path = ckpt.save_model(models / ckpt.TEACHERS_NAME, teachers, config, meta)
    student_path = ckpt.save_model(models / ckpt.STUDENT_NAME, student_stage.model, config, meta)
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return TrainResult(metrics, history, teacher_path, student_path, hit, workdir,
                       plan.effective())


def _load_resume(workdir: Path, config: ExperimentConfig, log) -> dict[str, Any] | None:
    path = workdir / "checkpoint" / ckpt.CHECKPOINT_NAME
    if not path.exists():
        return None
    state = ckpt.load(path)
    if state.get("config") != config.to_flat():
        log(f"{path} belongs to a different configuration; starting afresh")
        return None
    log(f"resuming from {path} ({state['stage']} epoch {state['epoch']})")
    return state


def _save(workdir: Path, payload: dict[str, Any]) -> Path:
    directory = workdir / "checkpoint"
    ckpt.save(directory / ckpt.CHECKPOINT_NAME, payload)
    return directory


def _teacher_stage(config, bundle: DataBundle, ctx, callback, workdir, store_dir, resume, history):
    """Train (or reuse) the teachers; returns the frozen best-validation teacher set."""
    stage = TeacherStage(config, bundle, ctx)
    if resume and resume["stage"] == "student":
        stage.model.load_state_dict(resume["teachers"])
        return stage.model, resume.get("teacher_cache_hit")
    store = TeacherStore(store_dir) if store_dir else None
    key = teacher_key(config, bundle.data.manifest["key"])
    if store is None:
        _train_teachers(stage, config, callback, workdir, resume, history)
        return stage.model, None
    with store.locked(key):
        if store.has(key) and not (resume and resume["stage"] == "teacher"):
            state, _, _ = ckpt.load_model_file(store.entry(key) / ckpt.TEACHERS_NAME)
            stage.model.load_state_dict(state)
            for record in store.read_history(key):  # replay, so every trial shows its curves
                history.append(record)
                callback(EpochReport("teacher", record["epoch"], record["step"], record["metrics"]))
            store.record(key, hit=True, run=str(workdir))
            ctx.log(f"teacher cache hit {key}")
            hit = True
        else:
            _train_teachers(stage, config, callback, workdir, resume, history)
            ckpt.save_model(store.entry(key) / ckpt.TEACHERS_NAME, stage.model, config, {})
            store.write_history(key, [h for h in history if h["stage"] == "teacher"])
            store.record(key, hit=False, run=str(workdir))
            hit = False
    _save(workdir, _payload(config, "student", 0, history, stage.model.state_dict(), None, hit))
    return stage.model, hit


def _train_teachers(stage: TeacherStage, config, callback, workdir, resume, history) -> None:
    start = 0
    if resume and resume["stage"] == "teacher":
        stage.load_state(resume["teacher_stage"])
        start = resume["epoch"]
    for epoch in range(start + 1, config.teacher.epochs + 1):
        metrics = stage.run_epoch(epoch)
        metrics["teacher/best_val_acc"] = max(stage.best_acc, 0.0)
        record = {"stage": "teacher", "epoch": epoch, "step": epoch, "metrics": metrics}
        history.append(record)
        payload = _payload(config, "teacher", epoch, history, None, None, None)
        payload["teacher_stage"] = stage.state()
        directory = _save(workdir, payload)
        callback(EpochReport("teacher", epoch, epoch, metrics, directory))
    stage.finish()
    if resume is None or resume["stage"] == "teacher":
        _save(workdir, _payload(config, "student", 0, history, stage.model.state_dict(), None, None))


def _student_stage(config, bundle, ctx, callback, workdir, teachers, resume, history,
                   plan, outputs=None) -> StudentStage:
    # The student's initial weights must not depend on how the teachers came about (trained
    # here, reused from the store, or resumed): seed its construction on its own.
    torch.manual_seed(derive_seed(config.train.seed, "student", "init"))
    stage = StudentStage(config, bundle, ctx, teachers, plan, outputs)
    start = 0
    if resume and resume["stage"] == "student" and resume["epoch"] > 0:
        stage.load_state(resume["student_stage"])
        start = resume["epoch"]
    offset = config.teacher.epochs
    teacher_state = teachers.state_dict()
    for epoch in range(start + 1, config.student.epochs + 1):
        metrics = stage.run_epoch(epoch)
        metrics["student/best_val_acc"] = max(stage.best_acc, 0.0)
        step = offset + epoch
        record = {"stage": "student", "epoch": epoch, "step": step, "metrics": metrics}
        history.append(record)
        payload = _payload(config, "student", epoch, history, teacher_state, stage.state(), None)
        directory = _save(workdir, payload)
        done = epoch == config.student.epochs
        callback(EpochReport("student", epoch, step, metrics, directory, done=done))
    stage.finish()
    return stage


def _payload(config, stage, epoch, history, teachers, student_stage, hit) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "config": config.to_flat(),
        "stage": stage,
        "epoch": epoch,
        "history": history,
        "teacher_cache_hit": hit,
    }
    if teachers is not None:
        payload["teachers"] = teachers
    if student_stage is not None:
        payload["student_stage"] = student_stage
    return payload


def _summary(config, bundle, ctx, teachers, stage: StudentStage, history, final) -> dict[str, float]:
    """Best validation metrics (search) or one evaluation on test (final training)."""
    metrics: dict[str, float] = {}

    split = bundle.test if final else bundle.val
    name = "test" if final else "val"
    if len(split):
        recordings = RecordingDataset(bundle.data, split)
        names = bundle.index.sensor_names
        metrics.update(evaluate_teachers(teachers, recordings, config, ctx, names, name,
                                         bundle.class_vectors))
        metrics.update(
            stage.evaluate(clip_dataset(config, bundle, split), name)
        )
    metrics["student/gflops"] = student_gflops(
        stage.model, config.student.segments, config.data.frame_size
    )
    return metrics


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
