"""A Tune searcher that samples a ``SearchSpace`` with an Optuna study it owns.

Tune's ``OptunaSearch`` creates its study with a ``NopPruner`` and hides the trials; this
searcher creates the study itself, with the sampler, the *real* pruner and a storage URL
(``load_if_exists=True``, so a resumed search continues the same study), and keeps the map
Tune trial id → Optuna trial that ``OptunaPrunerScheduler`` needs to report intermediate values
and ask the pruner.

Outcomes are told to the study in ``on_trial_complete`` by the one rule of ``sakdn.outcome``
(the MLflow child run and the live counts follow the same rule): COMPLETE with the objective
values when the last result says ``completed`` with every objective finite; PRUNED when the
trial diverged or stopped early (the Optuna pruner, ASHA); FAIL when it raised, reported
``failed``, completed without a finite objective or never reported.

The storage is the source of truth: each Optuna trial carries its Tune trial id as the user
attribute ``tune_trial_id``, so ``restore`` rebuilds the map from the study even for trials
asked after the last searcher checkpoint.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
import time
import warnings
from typing import Any, Mapping, Sequence

import optuna
from optuna.pruners import BasePruner, NopPruner
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.variant_generator import parse_spec_vars

from sakdn.config import SAMPLERS, Scalar
from sakdn.errors import ConfigError, SearchSpaceError
from sakdn.names import Origin, State, StudyAttr
from sakdn.outcome import TO_STUDY, trial_outcome
from sakdn.search.space import SearchSpace

logger = logging.getLogger(__name__)

TUNE_ID_ATTR = "tune_trial_id"
REFERENCE_ATTR = StudyAttr.REFERENCE


class OptunaSpaceSearcher(Searcher):
    """Suggests configurations from ``space`` with ``study.ask()`` and tells the outcomes.

    Args:
        space: the validated search space.
        base: the experiment's flat config; conditions on keys outside the space read it.
        metric, mode: what the study optimises (lists of both for several objectives); may
            instead come from ``TuneConfig`` when the param space is not empty.
        sampler: an Optuna sampler (``make_sampler``); default TPE.
        pruner: the Optuna pruner the scheduler consults; default ``NopPruner``.
        storage: an Optuna storage URL (``sqlite:///path/study.db``); None keeps the study in
            memory (it then travels inside the searcher checkpoint).
        study_name: the study to create or continue.
        points_to_evaluate: configurations (space keys → values) to try first.
        reference: the configuration the search is judged against (``search.start_point``),
            tried before ``points_to_evaluate``. Its trial carries ``REFERENCE_ATTR`` and the
            scheduler never prunes it: a reference stopped early would leave nothing to
            compare the best trial with.
        startup_trials: the sampler's start-up count (``startup_trials``): each asked trial is
            marked ``StudyAttr.ORIGIN`` given / start-up / guided, so the report can say whether
            the best trial came from the search's guidance. None: not marked.
    """

    def __init__(
        self,
        space: SearchSpace,
        base: Mapping[str, Scalar] | None = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        *,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
        storage: str | None = None,
        study_name: str = "sakdn",
        points_to_evaluate: Sequence[Mapping[str, Scalar]] | None = None,
        reference: Mapping[str, Scalar] | None = None,
        startup_trials: int | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self._space = space
        self._base = dict(base or {})
        self._sampler = sampler or make_sampler("tpe")
        self._pruner = pruner or NopPruner()
        self._storage_url = storage
        self._study_name = study_name
        self._reference = dict(reference) if reference is not None else None
        self._reference_number: int | None = None
        self._startup = startup_trials
        self._points = [dict(p) for p in points_to_evaluate or ()]
        for point in self._points + ([self._reference] if self._reference else []):
            for key in point:
                if key not in space:
                    raise SearchSpaceError(
                        space.file, key, "points_to_evaluate names a key outside the space"
                    )
        self._memory = InMemoryStorage() if storage is None else None
        self._study: optuna.Study | None = None
        self._storage: BaseStorage | None = None
        self._numbers: dict[str, int] = {}  # Tune trial id → Optuna trial number
        self._live: dict[str, optuna.trial.Trial] = {}  # asked, not yet told
        self._finished: set[str] = set()
        if metric and mode:
            self._setup_study()

    # --- the study ------------------------------------------------------------------------

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError(
                "OptunaSpaceSearcher has no study yet: give metric and mode to the searcher "
                "or to TuneConfig"
            )
        return self._study

    @property
    def space(self) -> SearchSpace:
        return self._space

    def _setup_study(self) -> None:
        modes = self._mode if isinstance(self._mode, list) else [self._mode]
        directions = ["maximize" if m == "max" else "minimize" for m in modes]
        memory = self._memory
        self._storage = memory if memory is not None else open_storage(self._storage_url)
        one = not isinstance(self._mode, list)
        self._study = optuna.create_study(
            storage=self._storage,
            sampler=self._sampler,
            pruner=self._pruner,
            study_name=self._study_name,
            load_if_exists=True,
            **({"direction": directions[0]} if one else {"directions": directions}),
        )
        existing = [d.name.lower() for d in self._study.directions]
        if existing != directions:
            raise ConfigError(
                "search.mode",
                self._mode,
                f"study {self._study_name!r} in {self._storage_url} was created to "
                f"{', '.join(existing)}; use another study name",
            )
        if self._reference is not None:
            self._study.enqueue_trial(self._reference, skip_if_exists=True)
            self._reference_number = next((
                t.number for t in self._study.get_trials(deepcopy=False)
                if t.system_attrs.get("fixed_params") == self._reference
            ), None)  # None: an earlier trial drew exactly these values, so none was queued
        for point in self._points:
            self._study.enqueue_trial(point, skip_if_exists=True)
        self._adopt_study_trials()

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take metric and mode from ``TuneConfig`` unless given already.

        Returns False when the param space holds Tune distributions: the space file, not the
        param space, says what varies, and Tune then reports the conflict.
        """
        _, domains, grids = parse_spec_vars(config or {})
        if domains or grids:
            return False
        if (metric and self._metric and metric != self._metric) or (
            mode and self._mode and mode != self._mode
        ):
            logger.warning(
                "TuneConfig metric/mode %s/%s ignored: the searcher optimises %s/%s",
                metric, mode, self._metric, self._mode,
            )
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        if self._study is None and self._metric and self._mode:
            self._setup_study()
        return True

    # --- Tune's calls ---------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Scalar] | None:
        study = self.study
        ot_trial = self._live.get(trial_id)
        if ot_trial is None:
            ot_trial = study.ask()
            ot_trial.set_user_attr(TUNE_ID_ATTR, trial_id)
            if ot_trial.number == self._reference_number:
                ot_trial.set_user_attr(REFERENCE_ATTR, True)
            if self._startup is not None:
                ot_trial.set_user_attr(StudyAttr.ORIGIN, self._origin(ot_trial.number))
            self._numbers[trial_id] = ot_trial.number
            self._live[trial_id] = ot_trial
        return self._space.suggest(ot_trial, self._base)

    def _origin(self, number: int) -> str:
        """How the sampler fills trial ``number``, asked now: an enqueued trial is given; else
        start-up while fewer than ``startup_trials`` trials have finished (Optuna's samplers
        count COMPLETE and PRUNED ones), guided after."""
        trials = self.study.get_trials(deepcopy=False)
        if any(t.number == number and "fixed_params" in t.system_attrs for t in trials):
            return Origin.GIVEN
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return Origin.STARTUP if finished < (self._startup or 0) else Origin.GUIDED

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            if trial_id not in self._finished:
                logger.warning("trial %s completed but this searcher never suggested it", trial_id)
            return
        state, values = self._outcome(trial_id, result, error)
        try:
            self.study.tell(ot_trial, values, state=state)
        except Exception as exc:  # a failed tell must not end the search
            logger.warning("trial %s: Optuna refused the outcome %s: %s", trial_id, state.name, exc)
        self._finished.add(trial_id)

    def _outcome(
        self, trial_id: str, result: dict | None, error: bool
    ) -> tuple[TrialState, float | list[float] | None]:
        """The study's state and values of a trial that ended (``sakdn.outcome``)."""
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        outcome = trial_outcome(result, metrics, raised=error)
        if outcome.state == State.FAILED and not error:
            logger.warning("trial %s: %s: marked FAIL", trial_id, outcome.reason)
        values: float | list[float] | None = None
        if outcome.state == State.COMPLETE:
            many = isinstance(self._metric, list)
            values = list(outcome.values) if many else outcome.values[0]
        return TrialState[TO_STUDY[outcome.state]], values

    # --- the scheduler's view (OptunaTrialSource) -----------------------------------------

    def optuna_trial(self, trial_id: str) -> optuna.trial.Trial | None:
        """The running Optuna trial of a Tune trial; None when unknown or already told."""
        return self._live.get(trial_id)

    def trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Tune trial (for reports and MLflow tags)."""
        return self._numbers.get(trial_id)

    # --- resume ---------------------------------------------------------------------------

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.__setstate__(state)

    def __getstate__(self) -> dict[str, Any]:
        """Plain data only: the study and live trials are reconnected from the storage."""
        state = self.__dict__.copy()
        for live in ("_study", "_storage", "_live"):
            state.pop(live, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._study, self._storage, self._live = None, None, {}
        if self._metric and self._mode:
            self._setup_study()

    def _adopt_study_trials(self) -> None:
        """Rebuild id maps from the study: finished trials are done, running ones go live."""
        study, storage = self.study, self._storage
        study_id = storage.get_study_id_from_name(self._study_name)
        for frozen in study.get_trials(deepcopy=False):
            tune_id = frozen.user_attrs.get(TUNE_ID_ATTR)
            if tune_id is None:
                continue
            self._numbers[tune_id] = frozen.number
            if frozen.state.is_finished():
                self._finished.add(tune_id)
                self._live.pop(tune_id, None)
            elif tune_id not in self._live and tune_id not in self._finished:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
                self._live[tune_id] = optuna.trial.Trial(study, trial_id)


def startup_trials(
    name: str, concurrency: int = 1, n_startup_trials: int | None = None
) -> int | None:
    """How many finished trials ``make_sampler``'s sampler waits for before it stops drawing
    at random: ``n_startup_trials``, by default ``max(5, 2·concurrency)``. None for samplers
    without a start-up phase (``random``, ``nsga2``)."""
    if name in ("random", "nsga2"):
        return None
    return _startup(concurrency, n_startup_trials)


def _startup(concurrency: int, n_startup_trials: int | None) -> int:
    return n_startup_trials if n_startup_trials is not None else max(5, 2 * concurrency)


def make_sampler(
    name: str, seed: int | None = None, concurrency: int = 1, n_startup_trials: int | None = None
) -> BaseSampler:
    """An Optuna sampler by name, set up for ``concurrency`` trials running at once.

    ``tpe``: multivariate, grouped (conditional spaces), ``constant_liar`` so concurrent trials
    are steered apart; random start-up of ``max(5, 2·concurrency)`` trials by default.
    ``gp`` and ``cmaes`` (needs the ``cmaes`` package) use the same start-up count; ``nsga2``
    (several objectives) uses it as its population size; ``random`` ignores it.
    """
    if concurrency < 1:
        raise ConfigError("search.concurrency", concurrency, "must be at least 1")
    startup = _startup(concurrency, n_startup_trials)
    if startup < 0:
        raise ConfigError("search.n_startup_trials", startup, "must be >= 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=startup,
                multivariate=True,
                group=True,
                constant_liar=True,
            )
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        if name == "cmaes":
            if importlib.util.find_spec("cmaes") is None:
                raise ConfigError(
                    "search.sampler", name, "needs the cmaes package: pip install cmaes"
                )
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, startup))
    raise ConfigError("search.sampler", name, "unknown sampler; choose from " + ", ".join(SAMPLERS))


def open_storage(url: str, attempts: int = 5) -> RDBStorage:
    """Optuna's RDB storage at ``url``. Creating the schema of a new database is not safe
    against a second process doing the same at once (a dashboard, a script or another search
    opening the study as the search starts): the loser fails with "table ... already exists"
    or on alembic's version row, both of which exist by then, so it opens the database again."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts - 1):
        try:
            return RDBStorage(url)
        except (IntegrityError, OperationalError) as error:
            if "already exists" not in str(error) and "UNIQUE constraint" not in str(error):
                raise
            time.sleep(0.2 * (attempt + 1))
    return RDBStorage(url)
