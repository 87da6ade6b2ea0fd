"""A Tune scheduler that lets a real Optuna pruner decide which trials stop early.

Tune's own ``OptunaSearch`` runs its study with a ``NopPruner``: it samples but never prunes. Here
every reported metric value goes to the trial's Optuna twin (``optuna_trial.report(value, step)``)
and the study's pruner is asked (``should_prune()``); when it says so the Tune trial is stopped
and recorded PRUNED in the study, so pruned trials keep their intermediate values and the
sampler learns from them as Optuna intends.

The scheduler does not own the study. It asks a *trial source* (the searcher that created the
Optuna trials, ``OptunaSpaceSearcher``) for the Optuna trial of a Tune trial id; a trial it
stops ends without ``completed`` in its last result, which ``sakdn.outcome`` calls PRUNED, so
the searcher tells the study PRUNED and the driver records the child run PRUNED.

Rules for reported results:

- a result without the metric (a teacher-stage epoch reports no student accuracy) is skipped;
- the step is the result's ``step`` key when present, else Tune's ``training_iteration``;
- a NaN or infinite metric value prunes the trial at once (a diverged run stops, the search goes
  on, and the trial is recorded PRUNED with the finite values reported before it);
- a ``completed`` result (the trial's last, after its final epoch) is reported but not judged:
  there is nothing left to save, and the trial ends COMPLETE;
- the reference trial (``search.start_point``, marked by the searcher) is reported but never
  judged: it is what the best trial is compared with, so it must finish;
- multi-objective studies cannot prune (Optuna's ``report`` is single-objective): every trial
  continues.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PatientPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
    WilcoxonPruner,
)
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sakdn.config import PRUNERS
from sakdn.errors import ConfigError
from sakdn.names import Result
from sakdn.search.searcher import REFERENCE_ATTR

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

STEP_KEY = Result.STEP


class OptunaTrialSource(Protocol):
    """What the scheduler needs from the searcher: Tune trial id → live Optuna trial."""

    def optuna_trial(self, trial_id: str) -> optuna.trial.Trial | None:
        """The running Optuna trial of a Tune trial (None: unknown or already finished)."""


class OptunaPrunerScheduler(FIFOScheduler):
    """Runs trials first-in first-out and stops those the study's Optuna pruner prunes.

    Args:
        source: the searcher that asked the Optuna trials (or anything with
            ``optuna_trial``); a ``ConcurrencyLimiter`` around it is unwrapped.
        metric: the reported key to prune on; by default the searcher's metric or the one
            given to ``TuneConfig``. The direction is the study's.
        step_key: the result key holding the step (the training contract's monotone epoch
            counter); results without it use ``training_iteration``.
        signal_floor: pruning waits for signal — the pruner is asked at a step only once some
            trial has reported a value above this floor at that step (a maximised metric;
            None: no wait). Every value is still reported to the study. At chance level every
            trial looks alike, and a decision there is a decision on noise (:func:`chance_floor`).
    """

    def __init__(
        self, source: OptunaTrialSource, metric: str | None = None, step_key: str = STEP_KEY,
        signal_floor: float | None = None,
    ) -> None:
        super().__init__()
        while not hasattr(source, "optuna_trial") and hasattr(source, "searcher"):
            source = source.searcher  # ConcurrencyLimiter / Repeater wrappers
        self._source = source
        self._step_key = step_key
        self._supports_buffered_results = False  # decide on every result, not on batches
        own = metric or getattr(source, "metric", None)
        self._metric = own if isinstance(own, str) else None
        self._warned_multi = False
        self._floor = signal_floor
        self.pruned: list[str] = []  # Tune trial ids, in the order they were pruned

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if self._metric and metric and metric != self._metric:
            return False
        if metric:
            self._metric = metric
        return True

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        ot_trial = self._source.optuna_trial(trial.trial_id)
        if ot_trial is None or self._metric is None or self._metric not in result:
            return TrialScheduler.CONTINUE
        if len(ot_trial.study.directions) > 1:
            if not self._warned_multi:
                logger.warning("multi-objective study: Optuna pruners cannot decide; no pruning")
                self._warned_multi = True
            return TrialScheduler.CONTINUE
        value = _as_float(result[self._metric])
        if value is None:
            logger.warning(
                "trial %s: metric %s = %r is not a number; not reported",
                trial.trial_id, self._metric, result[self._metric],
            )
            return TrialScheduler.CONTINUE
        if not math.isfinite(value):
            logger.warning("trial %s: %s = %s; pruned", trial.trial_id, self._metric, value)
            return self._prune(trial.trial_id)
        step = int(result.get(self._step_key, result.get(TRAINING_ITERATION, 0)))
        ot_trial.report(value, step)
        if (result.get(Result.COMPLETED) or ot_trial.user_attrs.get(REFERENCE_ATTR)
                or not self._signal(ot_trial.study, step)):
            return TrialScheduler.CONTINUE
        if ot_trial.should_prune():
            return self._prune(trial.trial_id)
        return TrialScheduler.CONTINUE

    def _signal(self, study: optuna.Study, step: int) -> bool:
        """Whether some trial left the noise at ``step`` (always, without a floor or for a
        minimised metric). Read from the study, so a restored search knows it too."""
        if self._floor is None or study.direction != optuna.study.StudyDirection.MAXIMIZE:
            return True
        values = (t.intermediate_values.get(step) for t in study.get_trials(deepcopy=False))
        return any(v is not None and math.isfinite(v) and v > self._floor for v in values)

    def _prune(self, trial_id: str) -> str:
        self.pruned.append(trial_id)
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"Optuna pruner scheduler: {len(self.pruned)} trials pruned on {self._metric}."

    def save(self, checkpoint_path: str) -> None:
        """The study and the trial map live in the searcher; only the pruned list is kept."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"pruned": self.pruned, "metric": self._metric}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.pruned, self._metric = list(state["pruned"]), state["metric"]


def chance_floor(num_classes: int, num_items: int, z: float = 2.0) -> float:
    """The accuracy a guessing model exceeds only by chance: c + z·√(c(1 − c)/n) with
    c = 1/K (K classes) and n validation items, z standard errors of a binomial proportion
    above chance (z = 2: about 2.5 % of pure guessers exceed it)."""
    c = 1.0 / max(num_classes, 1)
    return c + z * math.sqrt(c * (1.0 - c) / max(num_items, 1))


def make_pruner(name: str, **kwargs: Any) -> BasePruner:
    """An Optuna pruner by name, with Optuna's own arguments.

    ``percentile`` defaults to ``percentile=25.0``. ``patient`` takes ``patience`` (default 3),
    ``min_delta`` and ``wrapped`` (a pruner name, a pruner, or None for patience alone) with
    ``wrapped_kwargs``. ``threshold`` needs ``lower`` and/or ``upper``. ``none`` never prunes.
    """
    try:
        with warnings.catch_warnings():  # Wilcoxon and Patient are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _build_pruner(name, dict(kwargs))
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError("search.pruner", name, f"bad pruner arguments {kwargs}: {err}") from None


def _build_pruner(name: str, kwargs: dict[str, Any]) -> BasePruner:
    if name == "median":
        return MedianPruner(**kwargs)
    if name == "percentile":
        return PercentilePruner(**{"percentile": 25.0, **kwargs})
    if name == "successive_halving":
        return SuccessiveHalvingPruner(**kwargs)
    if name == "hyperband":
        return HyperbandPruner(**kwargs)
    if name == "wilcoxon":
        return WilcoxonPruner(**kwargs)
    if name == "patient":
        wrapped = kwargs.pop("wrapped", None)
        wrapped_kwargs = kwargs.pop("wrapped_kwargs", {})
        if isinstance(wrapped, str):
            wrapped = None if wrapped == "none" else make_pruner(wrapped, **wrapped_kwargs)
        return PatientPruner(wrapped, **{"patience": 3, **kwargs})
    if name == "threshold":
        return ThresholdPruner(**kwargs)
    if name == "none":
        if kwargs:
            raise TypeError(f"takes no arguments, got {sorted(kwargs)}")
        return NopPruner()
    raise ConfigError("search.pruner", name, "unknown pruner; choose from " + ", ".join(PRUNERS))


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
