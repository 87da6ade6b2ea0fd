"""Live progress of a running search: a status line in the terminal, metrics on the parent run.

Tune's table says RUNNING / TERMINATED / ERROR; a search needs to know more: how many trials
completed, how many were pruned (stopped early by the pruner or ASHA, or diverged), how many
failed, and the best objective so far. :func:`live_counts` and :func:`best_so_far` read that
from Tune's trials by the one outcome rule (``sakdn.outcome``: the study and the child runs
say the same); :class:`EventPrinter` prints one line per trial event and a periodic status line, and
:class:`ProgressCallback` logs it to the MLflow parent run each time a trial ends, as
``search/running``, ``search/completed``, ``search/pruned``, ``search/failed`` and
``search/best_<metric>``, with step = the number of trials finished so far (so the parent
run's charts show the search moving while it runs).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from ray.tune import Callback

from sakdn.names import Result, State, trial_name
from sakdn.outcome import Outcome, trial_outcome
from sakdn.search.trainable import read_ticket

logger = logging.getLogger(__name__)

STATES = ("pending", "running", "completed", "pruned", "failed")
_LABEL = {State.COMPLETE: "completed", State.PRUNED: "pruned", State.FAILED: "failed"}


def trial_state(status: str, last_result: dict[str, Any] | None, metrics: Sequence[str]) -> str:
    """One of ``STATES`` for a Tune trial status and its last result; an ended trial's is
    its outcome (``sakdn.outcome``) for the objectives ``metrics``."""
    if status in ("RUNNING", "PAUSED"):
        return "running"
    if status == "PENDING":
        return "pending"
    return _LABEL[_outcome(status, last_result, metrics).state]


def _outcome(status: str, last_result: dict[str, Any] | None, metrics: Sequence[str]) -> Outcome:
    return trial_outcome(last_result, metrics, raised=status == "ERROR")


def _status(trial: Any, ended: Any = None) -> str:
    # Tune calls ``on_trial_complete`` before it marks the trial TERMINATED
    return "TERMINATED" if trial is ended and trial.status == "RUNNING" else trial.status


def live_counts(
    trials: Sequence[Any], metrics: Sequence[str], ended: Any = None
) -> dict[str, int]:
    """``{state: count}`` over Tune trials (every state of ``STATES`` present); ``ended``:
    a trial that has just ended although Tune still says RUNNING."""
    counts = dict.fromkeys(STATES, 0)
    for t in trials:
        counts[trial_state(_status(t, ended), t.last_result, metrics)] += 1
    return counts


def best_so_far(
    trials: Sequence[Any], metrics: Sequence[str], modes: Sequence[str], ended: Any = None,
) -> dict[str, tuple[float, Any]]:
    """Per objective, the best finite value among completed trials and the trial holding it."""
    best: dict[str, tuple[float, Any]] = {}
    for t in trials:
        status = _status(t, ended)
        if status in ("RUNNING", "PAUSED", "PENDING"):
            continue
        outcome = _outcome(status, t.last_result, metrics)
        for metric, mode, value in zip(metrics, modes, outcome.values):  # COMPLETE only
            held = best.get(metric)
            if held is None or (value > held[0] if mode == "max" else value < held[0]):
                best[metric] = (value, t)
    return best


def status_line(
    trials: Sequence[Any], metrics: Sequence[str], modes: Sequence[str],
    search_dir: str | None = None,
) -> str:
    """The terminal's status line, e.g.
    ``trials: 2 running, 0 pending, 3 completed, 1 pruned, 0 failed | best m = 0.71 (trial 4)``.
    """
    c = live_counts(trials, metrics)
    text = "trials: " + ", ".join(
        f"{c[s]} {s}" for s in ("running", "pending", "completed", "pruned", "failed")
    )
    for metric, (value, trial) in best_so_far(trials, metrics, modes).items():
        number = read_ticket(search_dir, trial.trial_id) if search_dir else None
        label = trial_name(number) if number is not None else trial.trial_id
        text += f" | best {metric} = {value:.4g} ({label})"
    return text


class EventPrinter(Callback):
    """The terminal of a search: one line per event a user cares about.

    ``trial 3 started: lr=0.0012, lambda_sp=0.8`` · ``trial 3 pruned at student epoch 3 by
    successive_halving (min_resource=3): student/val_acc = 0.25`` · ``trial 3 completed:
    student/best_val_acc = 0.573 (15 student epochs, 52 s)`` · ``trial 7 failed: <error>
    (log: …/trials/00007/trial.log)``, and at most every ``every_s`` seconds a status line with
    each running trial's stage and epoch, the counts and the best so far. Trials are named by
    their Optuna number, as their MLflow runs and the report name them (``names.trial_name``).
    Tune's own tables and trial ids never reach the terminal.
    """

    def __init__(self, metrics: Sequence[str], modes: Sequence[str], prune_metric: str,
                 rule: str, search_dir: str, every_s: float = 30.0) -> None:
        self.metrics, self.modes = tuple(metrics), tuple(modes)
        self.prune_metric, self.rule, self.search_dir = prune_metric, rule, search_dir
        self.every_s = every_s
        self._last_status = 0.0
        self._started: dict[str, float] = {}

    def name(self, trial: Any) -> str:
        number = read_ticket(self.search_dir, trial.trial_id)
        return trial_name(number) if number is not None else f"trial {trial.trial_id}"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started[trial.trial_id] = time.time()
        sampled = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.config.items())
        print(f"{self.name(trial)} started" + (f": {sampled}" if sampled else ""), flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if time.time() - self._last_status >= self.every_s:
            self._last_status = time.time()
            print(self.status(trials), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(self.ending(trial, raised=False), flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(self.ending(trial, raised=True), flush=True)

    def ending(self, trial: Any, raised: bool) -> str:
        """The line for a trial that ended: completed, pruned (rule and value) or failed."""
        last = trial.last_result or {}
        error = _first_line(_error(trial)) if raised else None
        outcome = trial_outcome(last, self.metrics, raised=raised, error=error)
        seconds = time.time() - self._started.get(trial.trial_id, time.time())
        where = _position(last)
        if outcome.state == State.COMPLETE:
            values = ", ".join(f"{m} = {v:.4g}" for m, v in zip(self.metrics, outcome.values))
            return (f"{self.name(trial)} completed: {values} "
                    f"({last.get(Result.EPOCH, '?')} student epochs, {seconds:.0f} s)")
        if outcome.state == State.PRUNED:
            if last.get(Result.DIVERGED):
                return f"{self.name(trial)} pruned{where}: {outcome.reason}"
            value = last.get(self.prune_metric)
            shown = f"{self.prune_metric} = {value:.4g}" if isinstance(value, float) else ""
            return f"{self.name(trial)} pruned{where} by {self.rule}: {shown}".rstrip(": ")
        log = f" (log: {self.search_dir}/trials/*/trial.log)"
        number = read_ticket(self.search_dir, trial.trial_id)
        if number is not None:
            log = f" (log: {self.search_dir}/trials/{number:05d}/trial.log)"
        return f"{self.name(trial)} failed{where}: {outcome.reason}{log}"

    def status(self, trials: Sequence[Any]) -> str:
        running = [t for t in trials if t.status in ("RUNNING", "PAUSED")]
        parts = []
        for t in running:
            last = t.last_result or {}
            if Result.STAGE in last:
                parts.append(f"{self.name(t)} {last[Result.STAGE]} epoch {last[Result.EPOCH]}")
        line = status_line(trials, self.metrics, self.modes, self.search_dir)
        return time.strftime("[%H:%M:%S] ") + line + (f" | {'; '.join(parts)}" if parts else "")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _error(trial: Any) -> str:
    try:
        return str(trial.get_error() or "")
    except Exception:  # the error file may be gone with a lost node
        return ""


def _first_line(text: str) -> str:
    """The last line of a traceback that says what went wrong (its exception line)."""
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else "trial raised (no error file)"


class ProgressCallback(Callback):
    """Logs the live counts and best values to the parent run whenever a trial ends.

    Holds only plain data (Tune pickles callbacks). A tracking outage costs these points
    only: the next trial's end logs fresh counts, and the final summary comes from
    ``run._close`` anyway.
    """

    def __init__(self, tracking: Any, metrics: Sequence[str], modes: Sequence[str]) -> None:
        self.tracking = tracking
        self.metrics, self.modes = tuple(metrics), tuple(modes)
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log(trials, ended=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log(trials, ended=trial)

    def log(self, trials: Sequence[Any], ended: Any = None) -> None:
        if self.tracking is None:
            return
        from mlflow.entities import Metric

        from sakdn import tracking as tr

        values = progress_metrics(trials, self.metrics, self.modes, ended)
        step = int(values["search/finished"])
        now = int(time.time() * 1000)
        try:
            if self._client is None:
                self._client = tr.client(self.tracking.tracking_uri)
            tr.log_batch(self._client, self.tracking.parent_run_id,
                         metrics=[Metric(k, v, now, step) for k, v in values.items()])
        except Exception as err:  # progress points are best effort; the search goes on
            logger.warning("search progress not logged to MLflow: %s", str(err)[:200])


def progress_metrics(
    trials: Sequence[Any], metrics: Sequence[str], modes: Sequence[str], ended: Any = None,
) -> dict[str, float]:
    """The parent run's live metrics: counts per state, trials finished, best values."""
    c = live_counts(trials, metrics, ended)
    values = {f"search/{s}": float(c[s]) for s in ("running", "completed", "pruned", "failed")}
    values["search/finished"] = float(c["completed"] + c["pruned"] + c["failed"])
    for metric, (value, _) in best_so_far(trials, metrics, modes, ended).items():
        values[f"search/best_{metric}"] = value
    return values


def _position(last: dict) -> str:
    """Where a trial stood at its last result: `` at student epoch 3``, `` at fold 1, student
    epoch 3``, or nothing when no epoch had been reported (a retried trial's first)."""
    if Result.STAGE not in last:
        return ""
    at = f"{last[Result.STAGE]} epoch {last.get(Result.EPOCH, '?')}"
    if Result.FOLD in last:
        at = f"fold {last[Result.FOLD]}, {at}"
    return f" at {at}"
