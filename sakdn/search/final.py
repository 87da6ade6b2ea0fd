"""After a search: the best configuration (``sakdn best``) and the final model
(``sakdn train --from-best``), both read from MLflow.

The best trial is the COMPLETE child run with the best value of the search's (first)
objective, as tagged on the parent run (``sakdn.metric`` / ``sakdn.mode``). Its params are
the trial's full flat config; they are parsed back to typed values with the config's own
key types, so ``ExperimentConfig.from_flat(best["config"])`` rebuilds the trial's config.

The final model trains on train + validation (``train(..., final=True)``), is evaluated once
on test, logged as a run tagged with the search (``models/student.pt``, for
``sakdn.train.load_student``), and its student registered in the MLflow model registry in the
pytorch flavour's ``pt2`` format: a ``torch.export`` program of frames → logits
(``sakdn.models.export``), which loads with torch alone and unpickles no code. Reload it with::

    model = mlflow.pytorch.load_model(f"models:/{name}/{version}")   # frames → logits
    mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(frames_array)

The class names and the frames' normalisation are the model's metadata (``model_metadata``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sakdn.config import (
    DEFAULT_METRIC,
    ExperimentConfig,
    all_keys,
    from_flat,
    parse_overrides,
    parse_value,
)
from sakdn.errors import ConfigError
from sakdn.names import Role, State, Tag


def _tracking():
    from sakdn import tracking as tr

    tr.configure_http()
    return tr


def best_of(search: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The best completed trial of a search (by name or parent run id).

    Returns ``{search, parent_run_id, experiment_id, run_id, trial, metric, mode, value,
    config}`` where ``config`` is the trial's typed flat config.
    """
    tr = _tracking()
    uri = tracking_uri or tr.default_tracking_uri()
    mlflow = tr.client(uri)
    parent = tr.find_parent(mlflow, search)
    if parent is None:
        raise ConfigError("search", search, f"no search of this name or parent run id in {uri}")
    metric = parent.data.tags.get(Tag.METRIC, DEFAULT_METRIC).split(",")[0]
    mode = parent.data.tags.get(Tag.MODE, "max").split(",")[0]
    runs = tr.search_runs(
        mlflow, [parent.info.experiment_id],
        {Tag.PARENT_RUN: parent.info.run_id, Tag.ROLE: Role.TRIAL, Tag.STATE: State.COMPLETE},
    )
    scored = [r for r in runs if metric in r.data.metrics]
    if not scored:
        raise ConfigError("search", search, f"no completed trial reported {metric} yet")
    sign = 1 if mode == "max" else -1
    # ties go to the lowest Optuna trial number, as in Optuna's own best_trial
    best = max(scored, key=lambda r: (sign * r.data.metrics[metric], -_number(r)))
    number = best.data.tags.get(Tag.OPTUNA_TRIAL)
    return {
        "search": parent.data.tags.get(Tag.SEARCH, search),
        "parent_run_id": parent.info.run_id,
        "experiment_id": parent.info.experiment_id,
        "run_id": best.info.run_id,
        "trial": int(number) if number is not None else None,
        "metric": metric,
        "mode": mode,
        "value": best.data.metrics[metric],
        "config": config_from_params(best.data.params),
    }


def _number(run) -> int:
    try:
        return int(run.data.tags.get(Tag.OPTUNA_TRIAL, ""))
    except ValueError:
        return 1 << 30


def config_from_params(params: dict[str, str]) -> dict[str, Any]:
    """MLflow params (text) → typed flat config values, by each key's declared type."""
    known = set(all_keys())
    flat = {k: parse_value(k, v) for k, v in params.items() if k in known}
    from_flat(flat, file="MLflow params")  # validates
    return flat


@dataclass
class FinalResult:
    """The final training of a search's best configuration."""

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    config: ExperimentConfig
    workdir: Path
    source: dict[str, Any] = field(default_factory=dict)


def train_from_best(
    search: str,
    tracking_uri: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    workdir: str | Path | None = None,
    model_name: str | None = None,
) -> FinalResult:
    """Train the best configuration on train + validation, test once, log and register."""
    import mlflow as fluent

    from sakdn.models.weights import prepare_weights
    from sakdn.train import load_student, train

    tr = _tracking()
    uri = tracking_uri or tr.default_tracking_uri()
    best = best_of(search, uri)
    config = from_flat(best["config"], file="best configuration")
    if overrides:
        config = config.replace(parse_overrides(list(overrides)), file="--set")
    prepare_weights(config, download=True)  # as `sakdn train`: before the run is created
    name = best["search"]
    workdir = Path(workdir or Path(config.train.output_dir) / f"final-{name}")
    model_name = model_name or f"sakdn-{name}"

    mlflow = tr.client(uri)
    run = mlflow.create_run(
        best["experiment_id"], run_name=f"{name}-final",
        tags={Tag.ROLE: Role.FINAL, Tag.SEARCH: name, Tag.SEARCH_RUN: best["parent_run_id"],
              Tag.SOURCE_RUN: best["run_id"], Tag.SOURCE_TRIAL: str(best["trial"]),
              **tr.environment_tags()},
    )
    run_id = run.info.run_id
    tr.log_batch(mlflow, run_id, params=config.to_flat())
    status = "FAILED"
    try:
        def log_epoch(report) -> None:
            tr.log_batch(mlflow, run_id, metrics=_metrics(report.metrics, report.step))
            print(f"[final {report.stage} {report.epoch:3d}] "
                  + "  ".join(f"{k.split('/')[-1]}={v:.4f}" for k, v in report.metrics.items()
                              if k.endswith(("loss", "train_acc"))), flush=True)

        result = train(config, callback=log_epoch, workdir=workdir, final=True)
        last = max((h["step"] for h in result.history), default=0)
        tr.log_batch(mlflow, run_id, metrics=_metrics(result.metrics, last))
        for path in (result.student_path, result.teacher_path):
            mlflow.log_artifact(run_id, str(path), "models")
        student, _, meta = load_student(result.student_path)
        _check_exportable(student, config, run_id)  # before anything is registered
        fluent.set_tracking_uri(uri)
        with fluent.start_run(run_id=run_id):
            version = _register_student(fluent, student, config, meta, model_name)
        mlflow.set_tag(run_id, Tag.REGISTERED_MODEL, f"{model_name}/{version}")
        status = "FINISHED"
    finally:
        mlflow.set_terminated(run_id, status=status)
    test = {k: v for k, v in result.metrics.items() if "test" in k}
    print(f"final model of {name}: {test}  registered as models:/{model_name}/{version} "
          f"(run {run_id})", flush=True)
    return FinalResult(run_id, model_name, version, dict(result.metrics), config, workdir, best)


def _check_exportable(student, config: ExperimentConfig, run_id: str) -> None:
    """``ExportError`` (torch's reason) when the student has no ``torch.export`` program: it is
    then not registered at all, rather than registered in MLflow's pickle format."""
    from sakdn.models.export import ExportError, export_student

    try:
        export_student(student, config.student.segments, config.data.frame_size)
    except ExportError as err:
        raise ExportError(
            f"{err}. Not registered (MLflow's pickle format would unpickle code on load); the "
            f"trained student is models/student.pt of run {run_id} (sakdn.train.load_student)"
        ) from err


def _register_student(fluent, student, config: ExperimentConfig, meta: dict[str, Any],
                      model_name: str) -> str:
    """Log the student's logits in MLflow's ``pt2`` format (``torch.export``, no pickle) to the
    active run and register it; returns the model version."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from sakdn.models.export import StudentLogits, example_frames

    segments, size = config.student.segments, config.data.frame_size
    classes = len(meta["class_names"])
    # unnamed tensor specs: pyfunc's predict then takes and returns plain arrays; -1 is the
    # batch dimension, which MLflow exports as dynamic
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, segments, 3, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]),
    )
    info = fluent.pytorch.log_model(
        StudentLogits(student).eval(), name="student", registered_model_name=model_name,
        serialization_format="pt2", input_example=example_frames(segments, size).numpy(),
        signature=signature, metadata=model_metadata(config, meta),
        pip_requirements=_requirements(),
    )
    return str(info.registered_model_version)


def model_metadata(config: ExperimentConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """What a user of the registered model needs besides torch: the input it takes (frames
    normalised as ``clip_dataset`` does) and the class of each logit."""
    from sakdn.data.video import IMAGENET_MEAN, IMAGENET_STD
    from sakdn.models.weights import input_normalization

    sc = config.student
    mean, std = input_normalization(sc.backbone, sc.weights) or (IMAGENET_MEAN, IMAGENET_STD)
    return {
        "class_names": list(meta["class_names"]),
        "input": f"frames (B, {sc.segments}, 3, {config.data.frame_size}, "
                 f"{config.data.frame_size}) float32: {sc.segments} frames per clip (the TSN "
                 "segment centres), RGB on [0, 1], then (x - mean) / std per channel",
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
        "output": "logits (B, K); column k is class_names[k]",
    }


def _metrics(values: dict[str, Any], step: int):
    from mlflow.entities import Metric

    from sakdn.tracking import numeric_metrics

    now = int(time.time() * 1000)
    return [Metric(k, v, now, int(step)) for k, v in numeric_metrics(values).items()]


def _requirements() -> list[str]:
    """torch as it runs here (no inference): an exported program needs neither sakdn nor
    torchvision. The public version only: a ``+cu…`` build is not on PyPI and not needed."""
    from importlib import metadata

    return [f"torch=={metadata.version('torch').split('+')[0]}"]
