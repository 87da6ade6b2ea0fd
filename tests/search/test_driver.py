"""Driver-side resume logic: orphaned Optuna trials, restored pruned trials, final states."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from sakdn.errors import ConfigError
from sakdn.names import State
from sakdn.search.callbacks import trial_end
from sakdn.search.driver import ResumingPrunerScheduler, TicketingSearcher, make_scheduler
from sakdn.search.searcher import make_sampler
from sakdn.search.space import parse_space
from sakdn.search.trainable import read_ticket

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPACE = parse_space({
    "student.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "distill.lambda_sp": {"uniform": [0.0, 2.0]},
})


def _searcher(tmp_path: Path, seed: int = 1, num_samples: int | None = None
              ) -> TicketingSearcher:
    return TicketingSearcher(
        SPACE, metric="acc", mode="max", sampler=make_sampler("random", seed=seed),
        storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s", search_dir=str(tmp_path),
        num_samples=num_samples,
    )


def test_an_orphaned_optuna_trial_goes_to_the_next_new_tune_trial(tmp_path: Path) -> None:
    first = _searcher(tmp_path)
    c1, c2 = first.suggest("t1"), first.suggest("t2")
    first.on_trial_complete("t1", {"acc": 0.5, "completed": True})
    checkpoint = tmp_path / "searcher.pkl"
    first.save(str(checkpoint))  # Tune's last experiment checkpoint knows t1 and t2
    c3 = first.suggest("t3")  # asked after it; then the driver is killed
    assert [read_ticket(tmp_path, t) for t in ("t1", "t2", "t3")] == [0, 1, 2]

    again = _searcher(tmp_path)
    again.restore(str(checkpoint))
    assert again.unfinished_numbers() == [1, 2]
    # the restored Tune resumes t2; its first new trial continues Optuna trial 2
    assert again.suggest("t4") == c3
    assert read_ticket(tmp_path, "t4") == 2
    c5 = again.suggest("t5")  # a genuinely new trial, not a replay of the sampler
    assert c5 not in (c1, c2, c3)
    assert read_ticket(tmp_path, "t5") == 3
    for tid, acc in (("t2", 0.7), ("t4", 0.6), ("t5", 0.4)):
        again.on_trial_complete(tid, {"acc": acc, "completed": True})
    trials = again.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.value for t in trials] == [0.5, 0.7, 0.6, 0.4]
    assert trials[2].user_attrs["tune_trial_id"] == "t4"
    assert trials[2].user_attrs["previous_tune_trial_ids"] == ["t3"]


def test_a_trial_finished_after_tune_s_last_save_is_not_run_again_as_a_new_one(
    tmp_path: Path,
) -> None:
    """The dead driver asked t3 and t4 after Tune's last save and t3 finished: the restored
    Tune still has 4 - 2 samples to run; t4 is an orphan, and no fifth trial is asked."""
    first = _searcher(tmp_path, num_samples=4)
    for tid in ("t1", "t2"):
        first.suggest(tid)
    checkpoint = tmp_path / "searcher.pkl"
    first.save(str(checkpoint))
    first.suggest("t3")
    c4 = first.suggest("t4")
    first.on_trial_complete("t3", {"acc": 0.5, "completed": True})

    again = _searcher(tmp_path, num_samples=4)
    again.restore(str(checkpoint))
    assert again.unfinished_numbers() == [0, 1, 3]
    assert again.suggest("u1") == c4  # the orphan
    assert again.suggest("u2") == Searcher.FINISHED  # t3's sample is spent
    assert len(again.study.trials) == 4
    assert (read_ticket(tmp_path, "u1"), read_ticket(tmp_path, "u2")) == (3, None)


def test_a_fresh_tune_run_re_uses_every_running_study_trial(tmp_path: Path) -> None:
    first = _searcher(tmp_path)
    c1 = first.suggest("t1")
    again = _searcher(tmp_path)  # no Tune state was ever saved
    assert again.adopt_orphans(known=set()) == [0]
    assert again.suggest("u1") == c1 and len(again.study.trials) == 1


def test_a_trial_pruned_before_the_crash_is_stopped_when_restored(tmp_path: Path) -> None:
    first = _searcher(tmp_path)
    first.suggest("t1")
    first.suggest("t2")
    checkpoint = tmp_path / "searcher.pkl"
    first.save(str(checkpoint))
    first.on_trial_complete("t1", {"acc": 0.1, "step": 1})  # pruned after Tune's checkpoint

    again = _searcher(tmp_path)
    again.restore(str(checkpoint))
    scheduler = ResumingPrunerScheduler(again, metric="acc", step_key="prune_step")
    result = {"acc": 0.9, "prune_step": 3}
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="t1"), result) == (
        TrialScheduler.STOP
    )
    assert scheduler.pruned == ["t1"]
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="t2"), result) == (
        TrialScheduler.CONTINUE
    )


def test_make_scheduler(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    assert isinstance(make_scheduler("optuna", searcher, "acc", "max", {}, 10),
                      ResumingPrunerScheduler)
    asha = make_scheduler("asha", searcher, "acc", "max", {"grace_period": 2}, 10)
    assert isinstance(asha, AsyncHyperBandScheduler) and asha._time_attr == "prune_step"
    assert type(make_scheduler("fifo", searcher, "acc", "max", {}, 10)) is FIFOScheduler
    with pytest.raises(ConfigError, match="search.scheduler_options.grace"):
        make_scheduler("asha", searcher, "acc", "max", {"grace": 2}, 10)
    with pytest.raises(ConfigError, match="pruner_options"):
        make_scheduler("optuna", searcher, "acc", "max", {"grace_period": 2}, 10)


@pytest.mark.parametrize(
    "last, errored, state, error",
    [
        ({"acc": 0.5, "completed": True}, False, State.COMPLETE, None),
        ({"step": 4}, False, State.PRUNED, None),  # the Optuna pruner or ASHA
        ({"step": 4, "diverged": "nan loss"}, False, State.PRUNED, "nan loss"),  # any scheduler
        ({"failed": "student.lr = -1"}, False, State.FAILED, "student.lr = -1"),
        ({"step": 4}, True, State.FAILED, "Traceback"),
    ],
)
def test_final_states(last, errored, state, error) -> None:
    end = trial_end("t", 3, last, ["acc"], errored, "Traceback" if errored else None)
    assert (end.tune_trial_id, end.optuna_trial, end.state, end.error) == ("t", 3, state, error)
