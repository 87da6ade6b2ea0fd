"""Every observer of a trial applies the one outcome rule: the searcher telling the Optuna
study, the callback closing the MLflow child run, the live counts, and the report reading the
study back."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from sakdn.names import State
from sakdn.outcome import from_study
from sakdn.search.callbacks import trial_end
from sakdn.search.progress import live_counts, trial_state
from sakdn.search.searcher import OptunaSpaceSearcher, make_sampler
from sakdn.search.space import parse_space
from tests.test_outcome import ENDS, M

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = parse_space({"student.lr": {"loguniform": [1.0e-4, 1.0e-2]}})
LABEL = {State.COMPLETE: "completed", State.PRUNED: "pruned", State.FAILED: "failed"}


def _study_state(metrics: list[str], last: dict | None, raised: bool) -> str:
    """What the searcher tells the study when Tune ends the trial this way."""
    many = len(metrics) > 1
    searcher = OptunaSpaceSearcher(
        SPACE, metric=metrics if many else metrics[0],
        mode=["max", "min"] if many else "max",
        sampler=make_sampler("nsga2" if many else "random", seed=0),
    )
    searcher.suggest("t")
    # Tune hands the searcher no result when a trial raised or never ran
    searcher.on_trial_complete("t", result=None if raised else last, error=raised)
    return searcher.study.trials[0].state.name


@pytest.mark.parametrize("kind", list(ENDS))
def test_study_run_counts_and_report_agree(kind: str) -> None:
    last, raised, expected = ENDS[kind]
    study = _study_state([M], last, raised)
    run = trial_end("t", 0, last, [M], errored=raised, error_text="Traceback: boom" if raised
                    else None)
    shown = trial_state("ERROR" if raised else "TERMINATED", last, [M])
    assert from_study(study, search_ended=True) == expected.state  # the report's reading
    assert run.state == expected.state and run.error == expected.reason
    assert shown == LABEL[expected.state]


def test_several_objectives_agree_too() -> None:
    """Optuna takes PRUNED for a multi-objective study (its pruners cannot decide there, but a
    diverged or ASHA-stopped trial still ends PRUNED)."""
    cases = {
        "complete": ({M: 0.8, "student/gflops": 0.02, "completed": True}, State.COMPLETE),
        "diverged": ({M: float("nan"), "step": 4, "diverged": "nan"}, State.PRUNED),
        "no second objective": ({M: 0.8, "completed": True}, State.FAILED),
    }
    metrics = [M, "student/gflops"]
    for last, state in cases.values():
        assert from_study(_study_state(metrics, last, False), search_ended=True) == state
        assert trial_end("t", 0, last, metrics).state == state


def test_the_live_counts_add_up_the_same_states() -> None:
    trials = [SimpleNamespace(trial_id=kind, last_result=last,
                              status="ERROR" if raised else "TERMINATED")
              for kind, (last, raised, _) in ENDS.items()]
    expected = {label: 0 for label in ("pending", "running", "completed", "pruned", "failed")}
    for _, _, outcome in ENDS.values():
        expected[LABEL[outcome.state]] += 1
    assert live_counts(trials, [M]) == expected
