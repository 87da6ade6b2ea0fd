"""The driver's side of trial tracking: final states of child runs, and the closing sweep.

The trainable logs params, metrics and models; only the driver knows how a trial *ended*
(Tune stops a pruned trial's process without warning). A Tune callback therefore sets each
child run's final state when Tune reports the trial complete or errored, by the one rule of
``sakdn.outcome`` (the searcher tells the Optuna study by the same rule, so both agree):
``COMPLETE`` (run FINISHED), ``PRUNED`` (run FINISHED, named "trial N (pruned)": stopped
early by the pruner or ASHA, or diverged, with the reason in ``sakdn.error``), ``FAILED`` (run
FAILED, with the error).

States go through a retry queue, so a tracking outage delays them (``on_step_end`` retries
with backoff) without stopping the search. :func:`close_children` runs when the search ends:
it sends what trials left in their spools and closes every child run still RUNNING from the
study's record, so no run stays RUNNING (``STOPPED`` for trials the study never ended).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ray.tune import Callback

from sakdn import tracking as tr
from sakdn.names import State, Tag
from sakdn.outcome import from_study, trial_outcome
from sakdn.search.trainable import SPOOL, read_ticket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialEnd:
    """How one trial ended, as recorded on its child run."""

    tune_trial_id: str
    optuna_trial: int | None
    state: str
    error: str | None = None


def trial_end(
    tune_trial_id: str, optuna_trial: int | None, last_result: dict[str, Any] | None,
    objectives: Sequence[str], errored: bool = False, error_text: str | None = None,
) -> TrialEnd:
    """A trial's final state from Tune's verdict and its last result (``sakdn.outcome``)."""
    outcome = trial_outcome(last_result, objectives, raised=errored, error=error_text)
    return TrialEnd(tune_trial_id, optuna_trial, outcome.state, outcome.reason)


class TrackingCallback(Callback):
    """Sets each child run's final state; holds only plain data (Tune pickles callbacks).

    Args:
        tracking: where the runs live.
        search_dir: the search's folder (tickets, trial work dirs).
        objectives: the search's metrics (a completed trial without them failed).
    """

    def __init__(
        self, tracking: tr.SearchTracking, search_dir: str, objectives: Sequence[str]
    ) -> None:
        self.tracking = tracking
        self.search_dir = search_dir
        self.objectives = tuple(objectives)
        self._pending: dict[str, TrialEnd] = {}
        self._backoff = tr._Backoff()
        self._client = None
        self.ended: dict[str, TrialEnd] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    # --- Tune hooks -----------------------------------------------------------------------

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, errored=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._pending and time.monotonic() >= self._backoff.next_try:
            self.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush(wait_s=30.0)

    # --- recording ------------------------------------------------------------------------

    def _record(self, trial: Any, errored: bool) -> None:
        number = read_ticket(self.search_dir, trial.trial_id)
        error = _error_text(trial) if errored else None
        end = trial_end(trial.trial_id, number, trial.last_result, self.objectives, errored, error)
        self.ended[trial.trial_id] = end
        self._pending[trial.trial_id] = end
        self.flush()

    def flush(self, wait_s: float = 0.0) -> bool:
        """Send pending final states; True when none is left."""
        deadline = time.monotonic() + wait_s
        while self._pending:
            now = time.monotonic()
            if now < self._backoff.next_try:
                if self._backoff.next_try > deadline:
                    return False
                time.sleep(self._backoff.next_try - now)
            try:
                for tid in list(self._pending):
                    finish_trial_run(self._mlflow(), self.tracking, self._pending[tid])
                    del self._pending[tid]
            except Exception as err:  # the store is down: keep the states, retry later
                delay = self._backoff.failed(time.monotonic())
                logger.warning("cannot record trial states in MLflow (%s); retrying in %.0f s",
                               str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
                               delay)
                if self._backoff.next_try > deadline:
                    return False
            else:
                self._backoff.succeeded()
        return True

    def _mlflow(self):
        if self._client is None:
            self._client = tr.client(self.tracking.tracking_uri)
        return self._client


def _error_text(trial: Any) -> str:
    try:
        text = trial.get_error()
    except Exception:  # the error file may be gone with a lost node
        text = None
    text = str(text or "trial raised (no error file)").strip()
    return text[-3000:]


def finish_trial_run(mlflow: Any, tracking: tr.SearchTracking, end: TrialEnd) -> str:
    """Set the final state of a trial's child run (creating it if the trial never could)."""
    run = tr.find_child(
        mlflow, tracking.experiment_id, tracking.parent_run_id, end.optuna_trial, end.tune_trial_id
    )
    run_id = run.info.run_id if run else tr.trial_resolver(
        tracking, end.tune_trial_id, end.optuna_trial
    )(mlflow)
    tr.finish_run(mlflow, run_id, end.state, end.error, end.optuna_trial)
    return run_id


def flush_spools(
    mlflow: Any, tracking: tr.SearchTracking, search_dir: str | Path, wait_s: float
) -> list[Path]:
    """Send what trials left in their MLflow spools; returns the spools still pending."""
    left = []
    for spool in sorted(Path(search_dir).glob(f"trials/*/{SPOOL}")):
        if not tr.spool_pending(spool):
            continue
        run_id = tr.spool_run_id(spool)
        resolve = None
        if run_id is None:  # the trial never reached MLflow: find its run by Optuna number
            if not spool.parent.name.isdigit():
                left.append(spool)
                continue
            resolve = tr.trial_resolver(tracking, "", int(spool.parent.name))
        if not tr.RunBuffer(mlflow, run_id=run_id, resolve=resolve, spool=spool).flush(wait_s):
            left.append(spool)
    return left


def close_children(
    mlflow: Any, tracking: tr.SearchTracking, study: Any, search_dir: str | Path,
    wait_s: float = 30.0,
) -> dict[str, int]:
    """End every child run still RUNNING, from the study's record; returns state counts.

    Run when the search ends (normally or not): trials that Tune never finished (time
    budget, interruption) end STOPPED, the others as the study recorded them.
    """
    left = flush_spools(mlflow, tracking, search_dir, wait_s)
    if left:
        logger.warning("MLflow records still pending in %s; `sakdn search --resume` "
                       "sends them later", ", ".join(map(str, left)))
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)} if study else {}
    parent = mlflow.get_run(tracking.parent_run_id)
    counts: dict[str, int] = {}
    for run in tr.children(mlflow, parent):
        state = run.data.tags.get(Tag.STATE, State.RUNNING)
        if run.info.status == "RUNNING" or state == State.RUNNING:
            number = run.data.tags.get(Tag.OPTUNA_TRIAL)
            recorded = states.get(int(number)) if number is not None else None
            state = from_study(recorded or "", search_ended=True)
            tr.finish_run(mlflow, run.info.run_id, state,
                          None if state != State.STOPPED else "unfinished when the search ended",
                          int(number) if number is not None else None)
        counts[state] = counts.get(state, 0) + 1
    return counts
