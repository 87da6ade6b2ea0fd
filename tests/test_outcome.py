"""The one trial-outcome rule, on each kind of trial end."""

from __future__ import annotations

import math

import pytest

from sakdn.names import State
from sakdn.outcome import TO_STUDY, Outcome, from_study, trial_outcome

M, G = "student/best_val_acc", "student/gflops"
DIVERGED = "student stage diverged at epoch 2: loss term 'st' = nan"

# kind of end → (last result, raised, the outcome)
ENDS = {
    "trained all its epochs": (
        {M: 0.8, "step": 6, "completed": True}, False, Outcome(State.COMPLETE, values=(0.8,))),
    "completed without its objective": (
        {"step": 6, "completed": True}, False,
        Outcome(State.FAILED, f"completed without a finite objective: {M} = None")),
    "completed with a NaN objective": (
        {M: math.nan, "step": 6, "completed": True}, False,
        Outcome(State.FAILED, f"completed without a finite objective: {M} = nan")),
    "stopped by the pruner or ASHA": ({M: 0.3, "step": 3}, False, Outcome(State.PRUNED)),
    "stopped in its teacher stage": ({"step": 1}, False, Outcome(State.PRUNED)),
    "diverged": ({M: math.nan, "step": 4, "diverged": DIVERGED}, False,
                 Outcome(State.PRUNED, DIVERGED)),
    "a sampled configuration that does not validate": (
        {"failed": "student.lr = -1.0: must be > 0.0"}, False,
        Outcome(State.FAILED, "student.lr = -1.0: must be > 0.0")),
    "raised": ({M: 0.5, "step": 3}, True, Outcome(State.FAILED, "Traceback: boom")),
    "removed before it ran": (None, False, Outcome(State.FAILED, "ended before its first report")),
    "removed before it ran (Tune's placeholder result)": (
        {"trial_id": "abc", "hostname": "h"}, False,
        Outcome(State.FAILED, "ended before its first report")),
}


@pytest.mark.parametrize("kind", list(ENDS))
def test_each_kind_of_trial_end(kind: str) -> None:
    last, raised, expected = ENDS[kind]
    error = "Traceback: boom" if raised else None
    assert trial_outcome(last, [M], raised=raised, error=error) == expected


def test_raising_wins_over_what_the_trial_reported() -> None:
    last = {M: 0.8, "step": 6, "completed": True}
    assert trial_outcome(last, [M], raised=True).state == State.FAILED
    assert trial_outcome(last, [M], raised=True).reason == "trial raised"


def test_several_objectives_complete_only_when_all_are_finite() -> None:
    both = {M: 0.8, G: 0.02, "step": 6, "completed": True}
    assert trial_outcome(both, [M, G]) == Outcome(State.COMPLETE, values=(0.8, 0.02))
    one = {M: 0.8, "step": 6, "completed": True}
    assert trial_outcome(one, [M, G]).state == State.FAILED
    assert G in trial_outcome(one, [M, G]).reason


def test_the_study_states_map_both_ways() -> None:
    for state, study in TO_STUDY.items():
        assert from_study(study, search_ended=False) == state
        assert from_study(study, search_ended=True) == state
    for unfinished in ("RUNNING", "WAITING", ""):
        assert from_study(unfinished, search_ended=False) == State.RUNNING
        assert from_study(unfinished, search_ended=True) == State.STOPPED
