"""Live progress of a running search: a status line in the terminal, metrics on the parent run.

Tune's table says RUNNING / TERMINATED / ERROR; a search needs to know more: how many trials
completed, how many were pruned (stopped early by the pruner or ASHA, or diverged), how many
failed, and the best objective so far. :func:`live_counts` and :func:`best_so_far` read that
from Tune's trials by the one outcome rule (``sakdn.outcome``: the study and the child runs
say the same); :class:`SearchReporter` puts it above Tune's table and
:class:`ProgressCallback` logs it to the MLflow parent run each time a trial ends, as
``search/running``, ``search/completed``, ``search/pruned``, ``search/failed`` and
``search/best_<metric>``, with step = the number of trials finished so far (so the parent
run's charts show the search moving while it runs).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from ray.tune import Callback, CLIReporter

from sakdn.names import State
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
        label = f"trial {number}" if number is not None else trial.trial_id
        text += f" | best {metric} = {value:.4g} ({label})"
    return text


class SearchReporter(CLIReporter):
    """Tune's ``CLIReporter`` with the search's status line above its table.

    Args (besides ``CLIReporter``'s): ``objectives``, the search's (metrics, modes);
    ``search_dir``, to name trials by their Optuna number.
    """

    def __init__(
        self, *args: Any, objectives: tuple[Sequence[str], Sequence[str]],
        search_dir: str | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._objectives = (tuple(objectives[0]), tuple(objectives[1]))
        self._search_dir = search_dir

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        line = status_line(trials, *self._objectives, search_dir=self._search_dir)
        super().report(trials, done, *sys_info, line)


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
