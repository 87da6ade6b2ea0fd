"""How a trial ended: one rule for the Optuna study, the MLflow run, the live counts and the
report.

The rule reads only what every observer of a trial sees — whether Tune saw it raise, and the
last result it reported (keys in ``sakdn.names.Result``) — so that the searcher telling the
study, the callback closing the child run and the terminal's counts cannot disagree:

1. **FAILED** — it raised (after Tune's retries), or reported ``failed`` (its sampled
   configuration or its data could not be used);
2. **PRUNED** — it reported ``diverged`` (a loss became NaN or infinite), whatever the
   scheduler: a diverging configuration is a bad one, and a PRUNED trial tells the sampler so
   (with the values it reported before), where a FAILED one would be ignored;
3. **COMPLETE** — it reported ``completed`` with every objective finite (**FAILED** when an
   objective is missing or not finite: nothing can rank it);
4. **PRUNED** — it reported epochs (``step``) but stopped before ``completed``: the Optuna
   pruner, ASHA, or a resumed search stopping a trial the study had already ended;
5. **FAILED** — it ended before its first epoch's report.

A trial that trained all its epochs is COMPLETE even if a pruner would have stopped it at
that last epoch (the Optuna scheduler does not ask on a ``completed`` result): pruning
saves epochs, and there are none left. **STOPPED** is not decided here: a trial still without
an outcome when the search ends (time budget, interruption) is closed STOPPED by the search's
closing sweep (``from_study(..., search_ended=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sakdn.names import Result, State

# Optuna's names for the ends above (optuna.trial.TrialState), and back.
TO_STUDY = {State.COMPLETE: "COMPLETE", State.PRUNED: "PRUNED", State.FAILED: "FAIL"}
_FROM_STUDY = {study: state for state, study in TO_STUDY.items()}


@dataclass(frozen=True)
class Outcome:
    """A trial's end: its state, why (for ``sakdn.error``), and its objective values."""

    state: str  # State.COMPLETE, PRUNED or FAILED
    reason: str | None = None
    values: tuple[float, ...] = ()  # one per objective, for a COMPLETE trial


def trial_outcome(
    last_result: Mapping[str, Any] | None, objectives: Sequence[str], raised: bool = False,
    error: str | None = None,
) -> Outcome:
    """The end of a trial from its last result (the rule in this module's docstring).

    Args:
        last_result: the last result the trial reported (None or empty when none).
        objectives: the search's metrics; a COMPLETE trial has every one finite.
        raised: Tune saw the trial raise (after its retries).
        error: the error text of a trial that raised.
    """
    last = last_result or {}
    if raised:
        return Outcome(State.FAILED, error or "trial raised")
    if last.get(Result.FAILED):
        return Outcome(State.FAILED, str(last[Result.FAILED]))
    if last.get(Result.DIVERGED):
        return Outcome(State.PRUNED, str(last[Result.DIVERGED]))
    if last.get(Result.COMPLETED):
        values = [_finite(last.get(m)) for m in objectives]
        missing = [m for m, v in zip(objectives, values) if v is None]
        if missing:
            shown = ", ".join(f"{m} = {last.get(m)!r}" for m in missing)
            return Outcome(State.FAILED, f"completed without a finite objective: {shown}")
        return Outcome(State.COMPLETE, values=tuple(values))
    if Result.STEP in last:
        return Outcome(State.PRUNED)
    return Outcome(State.FAILED, "ended before its first report")


def from_study(study_state: str, search_ended: bool) -> str:
    """The State of a trial as its Optuna study recorded it (``TrialState.name``).

    A trial the study holds unfinished (RUNNING, WAITING) is RUNNING while the search runs and
    STOPPED once it has ended.
    """
    state = _FROM_STUDY.get(study_state)
    if state is not None:
        return state
    return State.STOPPED if search_ended else State.RUNNING


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
