"""The Tune function trainable: sampled values → experiment config → ``train`` → reports.

A thin adapter around :func:`sakdn.train.train` (which knows nothing of Ray or MLflow):

- the sampled keys override the experiment's flat config, validated like any other input; a
  config error ends the trial FAILED with that message (no retry: it would fail again);
- every epoch of both stages is reported with ``tune.report`` on one monotone ``step``, with
  the checkpoint ``train`` just wrote; student epochs also carry ``prune_step`` (the student
  epoch), so pruners compare trials at equal student epochs whatever their teacher stage;
- the last epoch's report waits until ``train`` returns and carries the run's summary
  metrics (e.g. ``student/gflops`` for a multi-objective search) and ``completed: True``;
- a retried or resumed trial restores Tune's checkpoint (or the newer one already in its
  work directory) and ``train`` continues from it;
- teachers come from the content-keyed store on the shared storage path, preprocessed data
  from the cache the driver built before Tune started (trials never decode video);
- ``TrialDiverged`` ends the trial with the objective(s) reported as NaN and ``diverged`` set
  to the reason: the Optuna scheduler stops it, and it ends PRUNED with the reason under any
  scheduler (``sakdn.outcome``);
- the result keys (``completed``, ``diverged``, ``failed``, ``step``, ``prune_step``) and tag
  names are ``sakdn.names``' ``Result`` and ``Tag``: the outcome rule reads them back;
- MLflow logging goes through a :class:`~sakdn.tracking.RunBuffer` spooled in the trial's
  work directory, so a tracking outage delays the records but never stops the trial; it sends
  every ``TrialSetup.send_every_s`` seconds, not every epoch (a store round trip per epoch
  was ~20 ms of a trial's epoch), and before the trial ends or is stopped;
- a completed trial's figures are drawn after it ends, by a low-priority task the driver
  starts (``sakdn.search.trial_figures``), not on the trial's clock;
- every attempt tags the child run with its Tune trial id and node (``sakdn.node_ip``: the
  latest attempt's, ``sakdn.node_ips``: all of them, so a trial moved off a failed node
  shows both).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sakdn.config import ExperimentConfig, Scalar, SearchConfig, from_flat
from sakdn.errors import ConfigError, SakdnError, TrialDiverged
from sakdn.names import Result, Tag

SPOOL = "mlflow_spool.json"
NODES = "nodes.txt"  # one line per attempt: the address of the node it ran on
TRIAL_LOG = "trial.log"  # what a trial has to say, in its work dir and its run's logs/
_STAGE_RANK = {"teacher": 0, "student": 1}
_SEARCH_DEFAULTS = SearchConfig()


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides its sampled values (sent once through Ray)."""

    base: dict[str, Scalar]  # the experiment's flat config, paths absolute
    search_dir: str
    metrics: tuple[str, ...]  # the objectives: NaN when a trial diverges
    prune_metric: str
    tracking: Any = None  # sakdn.tracking.SearchTracking, or None for no MLflow
    teacher_store: str | None = None
    log_models: bool = _SEARCH_DEFAULTS.log_models
    flush_timeout_s: float = _SEARCH_DEFAULTS.flush_timeout_s
    send_every_s: float = 5.0  # how long MLflow records may wait to be sent with later ones
    checkpoint_every: int = _SEARCH_DEFAULTS.checkpoint_every
    folds: int = _SEARCH_DEFAULTS.folds


def trial_config(base: Mapping[str, Scalar], sampled: Mapping[str, Any]) -> ExperimentConfig:
    """The experiment config with the sampled keys applied (ConfigError if invalid)."""
    flat = dict(base)
    flat.update(sampled)
    return from_flat(flat, file="sampled configuration")


def ticket_path(search_dir: str | Path, tune_trial_id: str) -> Path:
    """Where the driver notes a Tune trial's Optuna trial number before the trial starts."""
    return Path(search_dir) / "tickets" / f"{tune_trial_id}.json"


def write_ticket(search_dir: str | Path, tune_trial_id: str, optuna_trial: int) -> None:
    path = ticket_path(search_dir, tune_trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tune_trial_id": tune_trial_id, "optuna_trial": optuna_trial}))
    os.replace(tmp, path)


def read_ticket(search_dir: str | Path, tune_trial_id: str) -> int | None:
    try:
        return int(json.loads(ticket_path(search_dir, tune_trial_id).read_text())["optuna_trial"])
    except (OSError, ValueError, KeyError):
        return None


def trial_workdir(search_dir: str | Path, optuna_trial: int | None, tune_trial_id: str) -> Path:
    """A trial's work directory, keyed by its Optuna trial number (stable across resume)."""
    name = f"{optuna_trial:05d}" if optuna_trial is not None else tune_trial_id
    return Path(search_dir) / "trials" / name


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune trainable (wrap with ``tune.with_parameters(run_trial, setup=...)``)."""
    from ray import tune

    tune_id = tune.get_context().get_trial_id()
    number = read_ticket(setup.search_dir, tune_id)
    workdir = trial_workdir(setup.search_dir, number, tune_id)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / TRIAL_LOG).touch()
    tracker = _open_tracker(setup, tune_id, number, workdir)
    prefix = f"[trial {number if number is not None else tune_id}]"

    def log(msg: str) -> None:
        """The trial's own lines: its work dir's trial.log (also on its MLflow run) and the
        Ray worker's log; the driver's terminal has one line per trial event instead."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {prefix} {msg}"
        with open(workdir / TRIAL_LOG, "a") as handle:
            handle.write(line + "\n")
        print(line, flush=True)

    def fail(err: Exception, **position: Any) -> None:
        """A config or dataset problem: retrying cannot help, so end the trial FAILED."""
        log(str(err))
        tracker.set_tags({Tag.ERROR: str(err)})
        tracker.log_artifact(workdir / TRIAL_LOG, "logs")
        tracker.flush(setup.flush_timeout_s)
        tune.report({Result.FAILED: str(err), **position})

    try:
        experiment = trial_config(setup.base, config)
    except ConfigError as err:
        return fail(err)
    tracker.log_params(experiment.to_flat())
    from sakdn.train.attention import gsdm_plan

    try:
        plan = gsdm_plan(experiment)  # keys that cannot apply as set, recorded with the trial
    except ConfigError as err:
        return fail(err)
    tracker.log_params({f"effective.{k}": v for k, v in plan.effective().items()})
    _restore_checkpoint(tune.get_checkpoint(), workdir, log)
    try:
        _prepare_data(experiment, Path(setup.search_dir), log)
    except SakdnError as err:
        return fail(err)

    reporter = _Reporter(tracker, setup)
    from sakdn.train import train

    _reset_process_state()
    try:
        if setup.folds > 1:
            return _run_folds(experiment, setup, workdir, tracker, reporter, log)
        result = train(
            experiment, callback=reporter, workdir=workdir, teacher_store=setup.teacher_store,
            log=log,
        )
    except TrialDiverged as err:
        log(str(err))
        tracker.set_tags({Tag.ERROR: str(err), Tag.DIVERGED: "true"})
        tracker.log_artifact(workdir / TRIAL_LOG, "logs")
        tracker.flush(setup.flush_timeout_s)
        reporter.diverged(str(err))
        return
    except SakdnError as err:
        return fail(err, **reporter.last_position())

    final = reporter.final_result(result)
    tracker.log_metrics(reporter.summary_metrics(result), step=final.get(Result.EPOCH, 0))
    if result.teacher_cache_hit is not None:
        tracker.set_tags({Tag.TEACHER_CACHE_HIT: str(result.teacher_cache_hit).lower()})
    if setup.log_models:
        for path in (result.student_path, result.teacher_path):
            if path is not None:
                tracker.log_artifact(path, "models")
        tracker.log_artifact(workdir / "config.yaml", "config")
    tracker.log_artifact(workdir / TRIAL_LOG, "logs")  # figures: the driver's FigureCallback
    if not tracker.flush(setup.flush_timeout_s):
        log(f"MLflow unreachable: {tracker.pending} record(s) kept in {workdir / SPOOL} "
            "for the driver to send")
    reporter.report_final(final)


FOLD_RESULT = "fold.json"  # a finished fold's objective values, in its fold directory


def fold_dir(workdir: Path, fold: int) -> Path:
    return workdir / f"fold{fold}"


def _run_folds(experiment: ExperimentConfig, setup: TrialSetup, workdir: Path, tracker,
               reporter: _Reporter, log) -> None:
    """A cross-validated trial: one training per fold of the training subjects.

    Each fold trains in its own directory (teachers per fold from the store), its epochs go to
    MLflow as ``fold<f>/<key>`` and to Tune on one monotone step; when it ends, its objective
    values are reported as ``fold/<metric>`` with ``prune_step`` = the fold, so a Wilcoxon
    pruner compares trials fold by fold. A fold finished before a restart is read back, not
    trained again. The trial's objective is the mean over folds.
    """
    from sakdn.train import train

    keys = tuple(dict.fromkeys((*setup.metrics, setup.prune_metric)))
    per_fold: list[dict[str, float]] = []
    for fold in range(setup.folds):
        directory = fold_dir(workdir, fold)
        done = directory / FOLD_RESULT
        if done.exists():
            values = json.loads(done.read_text())
            log(f"fold {fold} finished before: {values}")
        else:
            config = experiment.replace({"data.folds": setup.folds, "data.fold": fold})
            reporter.start_fold(fold, config)
            result = train(config, callback=reporter, workdir=directory,
                           teacher_store=setup.teacher_store, log=log)
            values = {k: objective_value(result, k) for k in keys}
            directory.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(values))
        per_fold.append(values)
        reporter.report_fold(fold, values)
    means = {k: sum(v[k] for v in per_fold) / len(per_fold) for k in keys}
    tracker.log_metrics({**means, **{f"fold{f}/{Result.SUMMARY_PREFIX}{k}": v[k]
                                     for f, v in enumerate(per_fold) for k in keys}},
                        step=reporter.last.get(Result.EPOCH, 0))
    tracker.log_artifact(workdir / TRIAL_LOG, "logs")
    tracker.flush(setup.flush_timeout_s)
    reporter.report_final({**reporter.last, **means, Result.COMPLETED: True})


def objective_value(result, key: str) -> float:
    """A finished run's value of an objective: its summary metric, else the key's value at
    the last epoch that reported it (``student/best_val_acc``, a running best)."""
    if key in result.metrics:
        return float(result.metrics[key])
    for record in reversed(result.history):
        if key in record["metrics"]:
            return float(record["metrics"][key])
    return math.nan


_PROCESS_STATE: tuple | None = None  # torch's process-wide settings before any trial ran


def _reset_process_state() -> None:
    """Give this trial the process-wide torch settings the process's first trial found.

    Tune runs trial after trial in one process (``reuse_actors``). ``train`` seeds every RNG
    itself, but leaves two settings as an earlier trial left them: the thread count when
    ``train.num_threads`` is 0, and deterministic kernels when ``train.deterministic`` is false.
    """
    global _PROCESS_STATE
    import torch

    cudnn = torch.backends.cudnn
    if _PROCESS_STATE is None:
        _PROCESS_STATE = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled(),
                          cudnn.benchmark, cudnn.deterministic)
        return
    threads, deterministic, warn_only, cudnn.benchmark, cudnn.deterministic = _PROCESS_STATE
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


class _Reporter:
    """The ``train`` callback: one Tune report and one MLflow step per epoch.

    Tune gets the run's monotone ``step`` (teacher epochs first); MLflow gets each stage's
    own epoch as the step, so a trial's ``student/*`` curves start at student epoch 1 however
    long its teacher stage was (the keys are stage-prefixed, so the two never mix)."""

    def __init__(self, tracker, setup: TrialSetup) -> None:
        self.tracker = tracker
        self.setup = setup
        self.last: dict[str, Any] = {}
        self.last_metrics: dict[str, Any] = {}
        self.last_checkpoint: Path | None = None
        self._deferred = False
        self.fold: int | None = None  # the fold training now (cross-validated trials)
        self._step_offset = 0  # Tune's step before this fold: one monotone step over folds
        self._fold_epochs = 0

    def start_fold(self, fold: int, config: ExperimentConfig) -> None:
        self._step_offset += self._fold_epochs
        self.fold = fold
        self._fold_epochs = config.teacher.epochs + config.student.epochs

    def __call__(self, report) -> None:
        result: dict[str, Any] = dict(report.metrics)
        result.update({Result.STAGE: report.stage, Result.EPOCH: report.epoch,
                       Result.STEP: self._step_offset + report.step})
        prefix = ""
        if self.fold is not None:  # folds prune on their ends, not on epochs
            result[Result.FOLD] = self.fold
            prefix = f"fold{self.fold}/"
        elif report.stage == "student":
            result[Result.PRUNE_STEP] = report.epoch
        self.tracker.log_metrics({prefix + k: v for k, v in report.metrics.items()},
                                 step=report.epoch)
        if report.replayed:  # MLflow takes what the spool lacks; Tune had it or restores past it
            return
        self.last, self.last_metrics = result, dict(report.metrics)
        if report.checkpoint_dir is not None:
            self.last_checkpoint = Path(report.checkpoint_dir)
        if report.done and self.fold is None:  # reported with the summary after train()
            self._deferred = True
            return
        keep = report.stage_end or report.epoch % self.setup.checkpoint_every == 0
        self._report(result, report.checkpoint_dir if keep else None)

    def report_fold(self, fold: int, values: dict[str, float]) -> None:
        """A fold's end: its objective values as ``fold/<metric>`` at ``prune_step`` = fold."""
        result = {**self.last_position(), Result.FOLD: fold, Result.PRUNE_STEP: fold}
        result.update({Result.FOLD_PREFIX + k: v for k, v in values.items()})
        self._report(result, None)

    def _report(self, result: dict[str, Any], checkpoint_dir: Path | None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        try:
            tune.report(result, checkpoint=checkpoint)
        except SystemExit:  # Tune stops the trial (pruned): send what waits for a later send
            self.tracker.flush()
            raise

    def last_position(self) -> dict[str, Any]:
        position = (Result.STAGE, Result.EPOCH, Result.STEP)
        return {k: self.last[k] for k in position if k in self.last}

    def summary_metrics(self, result) -> dict[str, Any]:
        """The run's summary as ``summary/<key>``, plus ``<key>`` where no epoch of either
        stage reported that name (``student/gflops``): the names the final report and MLflow
        use. A per-epoch key (``teacher/val_acc``) keeps its epochs only; its summary value
        logged under the same name would add a point at the last step to its curve."""
        epoch_keys = set(self.last_metrics).union(
            *(record["metrics"] for record in result.history))
        out: dict[str, Any] = {}
        for key, value in result.metrics.items():
            out[Result.SUMMARY_PREFIX + key] = value
            if key not in epoch_keys:
                out[key] = value
        return out

    def final_result(self, result) -> dict[str, Any]:
        """The last epoch's result plus the run's summary and ``completed``."""
        if not self.last and result.history:  # resumed after the last epoch: nothing reran
            record = result.history[-1]
            self.last_metrics = dict(record["metrics"])
            self.last = {**record["metrics"], Result.STAGE: record["stage"],
                         Result.EPOCH: record["epoch"], Result.STEP: record["step"]}
            if record["stage"] == "student":
                self.last[Result.PRUNE_STEP] = record["epoch"]
        final = dict(self.last)
        final.update(self.summary_metrics(result))
        if result.teacher_cache_hit is not None:
            final[Result.TEACHER_CACHE_HIT] = bool(result.teacher_cache_hit)
        final[Result.COMPLETED] = True
        return final

    def report_final(self, final: dict[str, Any]) -> None:
        self._report(final, self.last_checkpoint if self._deferred else None)

    def diverged(self, reason: str) -> None:
        """Report the objective(s) as NaN: the Optuna scheduler prunes, the study learns."""
        result = self.last_position()
        for metric in (*self.setup.metrics, self.setup.prune_metric):
            result[metric] = math.nan
        result[Result.DIVERGED] = reason
        self._report(result, None)


def _prepare_data(experiment: ExperimentConfig, search_dir: Path, log) -> None:
    """Make sure the trial's preprocessing cache exists, building it under the search's lock.

    The driver builds every variant it can enumerate before Tune starts, so this is normally
    a cache hit. It is not when the space samples a preprocessing key from a range, or when
    the dataset changed under a running search: then one trial builds while the others wait,
    because two processes building the same cache entry at once corrupt it.
    """
    import fcntl

    from sakdn.train.data import build_data

    search_dir.mkdir(parents=True, exist_ok=True)
    with open(search_dir / "data.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            build_data(experiment, log=log)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_tracker(setup: TrialSetup, tune_id: str, number: int | None, workdir: Path):
    if setup.tracking is None:
        return _NoTracking()
    from sakdn import tracking as tr

    tr.configure_http()
    here = _node_tags()
    resolve = tr.trial_resolver(setup.tracking, tune_id, number, tags=here)
    buffer = tr.RunBuffer(
        tr.client(setup.tracking.tracking_uri), resolve=resolve, spool=workdir / SPOOL,
        send_every_s=setup.send_every_s,
    )
    # A retried or resumed attempt continues the run (its id is in the spool, so the
    # resolver's tags are not sent again): tag this attempt's node and Tune trial (a resumed
    # search hands an interrupted Optuna trial to a new one).
    buffer.set_tags({**here, Tag.TUNE_TRIAL: tune_id,
                     **_attempt_nodes(workdir, here.get(Tag.NODE_IP))})
    return buffer


def _node_tags() -> dict[str, str]:
    """Where a trial runs: the Ray node's address and the host name."""
    import ray

    tags = {Tag.HOSTNAME: socket.gethostname()}
    try:
        if ray.is_initialized():
            tags[Tag.NODE_IP] = ray.util.get_node_ip_address()
    except Exception:  # Ray without a node address
        pass
    return tags


def _attempt_nodes(workdir: Path, node_ip: str | None) -> dict[str, str]:
    """``sakdn.node_ips``: the node of every attempt so far, in order (a trial resumed on
    another node after a node failure lists both); kept in the work directory."""
    if not node_ip:
        return {}
    path = workdir / NODES
    with open(path, "a") as handle:
        handle.write(node_ip + "\n")
    return {Tag.NODE_IPS: ",".join(path.read_text().split())}


class _NoTracking:
    """Stands in for a RunBuffer when the search runs without MLflow."""

    pending = 0

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: True


def _restore_checkpoint(checkpoint, workdir: Path, log) -> None:
    """Put Tune's checkpoint where ``train`` resumes from, unless the work dir's is newer
    (a cross-validated trial's checkpoint goes to the directory of the fold it belongs to)."""
    if checkpoint is None:
        return
    from sakdn.train import checkpoint as ckpt

    with checkpoint.as_directory() as directory:
        source = Path(directory) / ckpt.CHECKPOINT_NAME
        if not source.exists():
            return
        config = ckpt.load(source).get("config", {})
        home = (fold_dir(workdir, int(config["data.fold"])) if config.get("data.folds", 1) > 1
                else workdir)
        target = home / "checkpoint" / ckpt.CHECKPOINT_NAME
        if target.exists() and _position(target) >= _position(source):
            log(f"resuming from {target} (newer than Tune's checkpoint)")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".restore")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        log(f"restored Tune's checkpoint into {target}")


def _position(path: Path) -> tuple[int, int]:
    """(stage, epoch) of a training checkpoint, for "which one is newer"."""
    from sakdn.train import checkpoint as ckpt

    try:
        state = ckpt.load(path)
    except ConfigError:
        return (-1, -1)
    return _STAGE_RANK.get(state.get("stage"), -1), int(state.get("epoch", -1))
