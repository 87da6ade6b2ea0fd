"""Driver-side pieces that keep a search exact across driver crashes and ``--resume``.

Tune saves its experiment state (trials + searcher) every ten seconds or so; the Optuna study
is written at once. A driver killed in between leaves Optuna trials that the restored Tune
never heard of ("orphans": asked, RUNNING in the study, with a child run and maybe a work
directory). Left alone they would stay RUNNING forever and a resumed search would ask
``num_samples`` trials *plus* them.

- :class:`TicketingSearcher` hands each orphan, with its already-sampled values, to the next
  new Tune trial instead of asking a new one. A trial the dead driver started *and finished*
  after Tune's last save is no orphan (the study has its outcome) but the restored Tune still
  counts it as a sample to run; the searcher therefore asks no trial beyond ``num_samples``
  (it answers ``FINISHED``), so the study ends with exactly ``num_samples`` trials. It also
  writes a *ticket* per Tune trial (its Optuna trial number) that the trainable reads: the
  trial's work directory and MLflow child run are keyed by that number, so an orphan's new
  Tune trial resumes its checkpoint and continues its child run.
- :class:`ResumingPrunerScheduler` stops at once a restored trial whose Optuna trial was
  already pruned (or failed) before the crash, instead of training it to the end.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

from optuna.trial import TrialState
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from sakdn.config import SCHEDULERS
from sakdn.errors import ConfigError
from sakdn.names import Result
from sakdn.search.scheduler import OptunaPrunerScheduler
from sakdn.search.searcher import TUNE_ID_ATTR, OptunaSpaceSearcher
from sakdn.search.trainable import write_ticket

logger = logging.getLogger(__name__)

PREVIOUS_IDS_ATTR = "previous_tune_trial_ids"


class TicketingSearcher(OptunaSpaceSearcher):
    """``OptunaSpaceSearcher`` that writes trial tickets and re-uses orphaned Optuna trials.

    Args (besides the parent's): ``search_dir``, where tickets go (``<search_dir>/tickets``);
    ``num_samples``, the search's trial count: the study never gets more trials (None: no cap).
    """

    def __init__(self, *args: Any, search_dir: str, num_samples: int | None = None,
                 **kwargs: Any) -> None:
        self._search_dir = search_dir
        self._num_samples = num_samples
        self._orphans: list[str] = []
        self._ended: dict[str, TrialState] = {}
        super().__init__(*args, **kwargs)

    # --- resume ---------------------------------------------------------------------------

    def adopt_orphans(self, known: set[str]) -> list[int]:
        """Mark every live Optuna trial whose Tune id is not in ``known`` as an orphan.

        ``known``: the Tune trial ids the (restored) Tune experiment holds. Returns the
        orphans' Optuna trial numbers.

        The sampler is reseeded: its saved random state predates the trials asked after the
        last checkpoint, and replaying it would ask the orphans' configurations again. (A
        resumed search is therefore not seed-reproducible; an uninterrupted one is.)
        """
        if self.study.trials:
            self._sampler.reseed_rng()
        self._orphans = sorted(
            (tid for tid in self._live if tid not in known), key=lambda t: self._numbers[t]
        )
        if self._orphans:
            logger.info(
                "re-using %d Optuna trial(s) the interrupted driver had started: %s",
                len(self._orphans), [self._numbers[t] for t in self._orphans],
            )
        return [self._numbers[t] for t in self._orphans]

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        known = set(saved.get("_numbers", {}))
        super().restore(checkpoint_path)
        self._ended = {
            tid: t.state
            for t in self.study.get_trials(deepcopy=False)
            if (tid := t.user_attrs.get(TUNE_ID_ATTR)) is not None and t.state.is_finished()
        }
        self.adopt_orphans(known)

    def ended_state(self, trial_id: str) -> TrialState | None:
        """The study state of a trial that had already ended when the search was restored."""
        return self._ended.get(trial_id)

    def unfinished_numbers(self) -> list[int]:
        """Optuna trials still live (asked, not told)."""
        return sorted(t.number for t in self._live.values())

    def _all_asked(self) -> bool:
        """The study already holds ``num_samples`` asked trials (running or ended)."""
        if self._num_samples is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        return sum(t.state != TrialState.WAITING for t in trials) >= self._num_samples

    # --- Tune's calls ---------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self._live and self._orphans:
            old = self._orphans.pop(0)
            ot_trial = self._live.pop(old)
            previous = list(ot_trial.user_attrs.get(PREVIOUS_IDS_ATTR, [])) + [old]
            ot_trial.set_user_attr(PREVIOUS_IDS_ATTR, previous)
            ot_trial.set_user_attr(TUNE_ID_ATTR, trial_id)
            self._live[trial_id] = ot_trial
            self._numbers[trial_id] = ot_trial.number
            logger.info("Tune trial %s continues Optuna trial %d", trial_id, ot_trial.number)
        elif trial_id not in self._live and self._all_asked():
            logger.info("the study holds its %d trials: Tune trial %s not started",
                        self._num_samples, trial_id)
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if config is not None:
            write_ticket(self._search_dir, trial_id, self._numbers[trial_id])
        return config


class ResumingPrunerScheduler(OptunaPrunerScheduler):
    """``OptunaPrunerScheduler`` that stops restored trials the study already ended."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        ended = getattr(self._source, "ended_state", lambda _: None)(trial.trial_id)
        if ended in (TrialState.PRUNED, TrialState.FAIL):
            if trial.trial_id not in self.pruned:
                self.pruned.append(trial.trial_id)
            return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)


def make_scheduler(
    name: str, searcher: TicketingSearcher, metric: str, mode: str, options: dict[str, Any],
    max_t: int, signal_floor: float | None = None,
) -> TrialScheduler:
    """The trial scheduler named by ``search.scheduler``.

    ``optuna``: the study's Optuna pruner decides (per student epoch). ``asha``: Tune's
    asynchronous successive halving on ``prune_step`` (options: ``grace_period``,
    ``reduction_factor``, ``brackets``; ``max_t`` defaults to the longest student stage).
    ``fifo``: no early stopping.
    """
    if name == "optuna":
        if options:
            raise ConfigError("search.scheduler_options", options,
                              "the optuna scheduler takes none: set search.pruner_options")
        return ResumingPrunerScheduler(searcher, metric=metric, step_key=Result.PRUNE_STEP,
                                       signal_floor=signal_floor)
    if name == "asha":
        allowed = {"grace_period", "reduction_factor", "brackets", "max_t"}
        bad = sorted(set(options) - allowed)
        if bad:
            raise ConfigError(f"search.scheduler_options.{bad[0]}", options[bad[0]],
                              "unknown ASHA option; use " + ", ".join(sorted(allowed)))
        kwargs = {"grace_period": 1, "reduction_factor": 2, "max_t": max_t, **options}
        try:
            return AsyncHyperBandScheduler(
                time_attr=Result.PRUNE_STEP, metric=metric, mode=mode, **kwargs
            )
        except (TypeError, ValueError, AssertionError) as err:
            raise ConfigError("search.scheduler_options", options, f"bad ASHA options: {err}")
    if name == "fifo":
        return FIFOScheduler()
    raise ConfigError("search.scheduler", name, "must be one of " + ", ".join(SCHEDULERS))
