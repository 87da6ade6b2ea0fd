"""The Optuna-pruner scheduler and the space searcher, alone and inside a real Tune run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from sakdn.errors import ConfigError
from sakdn.search.scheduler import OptunaPrunerScheduler, make_pruner
from sakdn.search.searcher import (
    REFERENCE_ATTR,
    TUNE_ID_ATTR,
    OptunaSpaceSearcher,
    make_sampler,
)
from sakdn.search.space import parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
P = optuna.pruners

SPACE = parse_space(
    {
        "student.dropout": {"uniform": [0.0, 0.9]},
        "distill.lambda_st": {"choice": [0.0, 1.0]},
        "distill.temperature": {"choice": [2.0, 4.0], "when": {"distill.lambda_st": 1.0}},
    }
)
STUDY = "decisions"  # Hyperband's brackets hash the study name: both sides must share it


def _curves() -> list[list[float]]:
    """Twelve noisy learning curves of 10 steps: saturating at different levels and speeds."""
    rng = np.random.default_rng(7)
    levels = [0.9, 0.5, 0.85, 0.2, 0.95, 0.3, 0.7, 0.1, 0.8, 0.4, 0.6, 0.15]
    steps = np.arange(1, 11)
    return [
        [float(v) for v in q * (1 - (0.8 if i % 3 == 0 else 0.5) ** steps)
         + 0.02 * rng.standard_normal(10)]
        for i, q in enumerate(levels)
    ]


# name → (make_pruner arguments, the same pruner built directly with Optuna)
PRUNER_CASES: dict[str, tuple[dict, Callable[[], P.BasePruner]]] = {
    "median": (
        {"n_startup_trials": 2, "n_warmup_steps": 1},
        lambda: P.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    ),
    "percentile": (
        {"percentile": 25.0, "n_startup_trials": 2},
        lambda: P.PercentilePruner(25.0, n_startup_trials=2),
    ),
    "successive_halving": (
        {"min_resource": 1, "reduction_factor": 2},
        lambda: P.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
    ),
    "hyperband": (
        {"min_resource": 1, "max_resource": 10, "reduction_factor": 2},
        lambda: P.HyperbandPruner(min_resource=1, max_resource=10, reduction_factor=2),
    ),
    "wilcoxon": (
        {"p_threshold": 0.1, "n_startup_steps": 2},
        lambda: P.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2),
    ),
    "patient": (
        {"patience": 1, "min_delta": 0.02},
        lambda: P.PatientPruner(None, patience=1, min_delta=0.02),
    ),
    "threshold": (
        {"lower": 0.25, "n_warmup_steps": 3},
        lambda: P.ThresholdPruner(lower=0.25, n_warmup_steps=3),
    ),
}


def _reference(pruner: P.BasePruner, curves: list[list[float]]) -> tuple[list, list]:
    """Optuna's own loop: report, should_prune, tell (a trial's last epoch is reported, never
    judged: the trial is complete, there is nothing left to save)."""
    study = optuna.create_study(
        study_name=STUDY, direction="maximize", pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    decisions = []
    for curve in curves:
        trial = study.ask()
        pruned_at = None
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            if step < len(curve) and trial.should_prune():
                pruned_at = step
                break
        if pruned_at:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
        decisions.append(pruned_at)
    return decisions, [(t.state, t.value, t.intermediate_values) for t in study.trials]


def _through_scheduler(pruner: P.BasePruner, curves: list[list[float]]) -> tuple[list, list]:
    """The same curves as Tune would deliver them from the trainable: searcher.suggest, one
    result per epoch (the last one ``completed``), on_trial_complete."""
    searcher = OptunaSpaceSearcher(
        SPACE, metric="acc", mode="max", pruner=pruner, study_name=STUDY,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    scheduler = OptunaPrunerScheduler(searcher)
    assert scheduler.set_search_properties("acc", "max")
    decisions = []
    for i, curve in enumerate(curves):
        trial = Trial("curve", trial_id=f"t{i:05d}", stub=True)
        searcher.suggest(trial.trial_id)
        pruned_at, result = None, None
        for step, value in enumerate(curve, start=1):
            result = {"acc": value, "step": step, "training_iteration": step}
            if step == len(curve):
                result["completed"] = True
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                pruned_at = step
                break
        searcher.on_trial_complete(trial.trial_id, result=result)
        decisions.append(pruned_at)
    trials = searcher.study.trials
    return decisions, [(t.state, t.value, t.intermediate_values) for t in trials]


@pytest.mark.parametrize("name", list(PRUNER_CASES))
def test_decisions_match_optuna(name: str) -> None:
    kwargs, direct = PRUNER_CASES[name]
    curves = _curves()
    want_decisions, want_trials = _reference(direct(), curves)
    got_decisions, got_trials = _through_scheduler(make_pruner(name, **kwargs), curves)
    assert got_decisions == want_decisions
    assert got_trials == want_trials
    # not vacuous: this pruner both pruned and let trials finish on these curves
    assert any(d is not None for d in want_decisions) and any(d is None for d in want_decisions)


def _one_trial(pruner: P.BasePruner | None = None) -> tuple:
    searcher = OptunaSpaceSearcher(SPACE, metric="acc", mode="max", pruner=pruner)
    scheduler = OptunaPrunerScheduler(searcher)
    trial = Trial("curve", trial_id="only", stub=True)
    searcher.suggest("only")
    return searcher, scheduler, trial


def test_results_without_the_metric_are_skipped() -> None:
    searcher, scheduler, trial = _one_trial(P.ThresholdPruner(lower=0.5))
    for it in (1, 2):  # teacher-stage epochs: no student metric
        decision = scheduler.on_trial_result(None, trial, {"loss": 1.0, "training_iteration": it})
        assert decision == TrialScheduler.CONTINUE
    assert searcher.optuna_trial("only").study.trials[0].intermediate_values == {}
    scheduler.on_trial_result(None, trial, {"acc": 0.9, "training_iteration": 3})
    assert searcher.study.trials[0].intermediate_values == {3: 0.9}


def test_step_key_wins_over_training_iteration() -> None:
    searcher, scheduler, trial = _one_trial()
    scheduler.on_trial_result(None, trial, {"acc": 0.4, "step": 7, "training_iteration": 2})
    assert searcher.study.trials[0].intermediate_values == {7: 0.4}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_metric_prunes(bad: float) -> None:
    searcher, scheduler, trial = _one_trial()  # a NopPruner would never prune by itself
    scheduler.on_trial_result(None, trial, {"acc": 0.3, "training_iteration": 1})
    decision = scheduler.on_trial_result(None, trial, {"acc": bad, "training_iteration": 2})
    assert decision == TrialScheduler.STOP
    searcher.on_trial_complete("only", result={"acc": bad, "step": 2, "training_iteration": 2})
    frozen = searcher.study.trials[0]
    assert frozen.state == TrialState.PRUNED
    assert frozen.intermediate_values == {1: 0.3} and frozen.value == 0.3
    assert scheduler.pruned == ["only"]


def test_unknown_trials_continue() -> None:
    _, scheduler, _ = _one_trial(P.ThresholdPruner(lower=0.5))
    stranger = Trial("curve", trial_id="stranger", stub=True)
    result = {"acc": 0.0, "training_iteration": 5}
    assert scheduler.on_trial_result(None, stranger, result) == TrialScheduler.CONTINUE


def test_multi_objective_never_prunes() -> None:
    searcher = OptunaSpaceSearcher(
        SPACE, metric=["acc", "loss"], mode=["max", "min"], sampler=make_sampler("nsga2", seed=0)
    )
    scheduler = OptunaPrunerScheduler(searcher, metric="acc")
    trial = Trial("curve", trial_id="mo", stub=True)
    searcher.suggest("mo")
    result = {"acc": float("nan"), "loss": 1.0, "training_iteration": 1}
    assert scheduler.on_trial_result(None, trial, result) == TrialScheduler.CONTINUE
    searcher.on_trial_complete("mo", result={"acc": 0.7, "loss": 0.2, "completed": True})
    assert searcher.study.trials[0].state == TrialState.COMPLETE
    assert searcher.study.trials[0].values == [0.7, 0.2]


@pytest.mark.parametrize(
    "result, error",
    [(None, True), ({"loss": 1.0, "completed": True}, False),
     ({"acc": float("nan"), "completed": True}, False), (None, False), ({"failed": "x"}, False)],
    ids=["raised", "no-metric", "nan-at-the-end", "removed-while-pending", "bad-config"],
)
def test_outcomes_without_a_value_fail(result: dict | None, error: bool) -> None:
    searcher, _, _ = _one_trial()
    searcher.on_trial_complete("only", result=result, error=error)
    assert searcher.study.trials[0].state == TrialState.FAIL
    assert searcher.optuna_trial("only") is None


def test_scheduler_unwraps_a_concurrency_limiter() -> None:
    from ray.tune.search import ConcurrencyLimiter

    searcher = OptunaSpaceSearcher(SPACE, metric="acc", mode="max", pruner=P.ThresholdPruner(0.5))
    scheduler = OptunaPrunerScheduler(ConcurrencyLimiter(searcher, max_concurrent=2))
    trial = Trial("curve", trial_id="w", stub=True)
    searcher.suggest("w")
    result = {"acc": 0.1, "training_iteration": 1}
    assert scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP


def test_conflicting_metric_is_refused() -> None:
    searcher = OptunaSpaceSearcher(SPACE, metric="acc", mode="max")
    assert not OptunaPrunerScheduler(searcher).set_search_properties("loss", "min")


def test_searcher_restores_from_its_checkpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"

    def make() -> OptunaSpaceSearcher:
        return OptunaSpaceSearcher(
            SPACE, metric="acc", mode="max", storage=url, study_name="resume",
            pruner=P.ThresholdPruner(lower=0.5),
        )

    first = make()
    configs = {tid: first.suggest(tid) for tid in ("a", "b", "c")}
    first.on_trial_complete("a", result={"acc": 0.8, "completed": True})
    scheduler = OptunaPrunerScheduler(first)
    scheduler.on_trial_result(None, Trial("x", trial_id="b", stub=True),
                              {"acc": 0.7, "training_iteration": 1})
    first.save(str(tmp_path / "searcher.pkl"))
    first.suggest("d")  # asked after the checkpoint: found again through the study

    second = make()
    second.restore(str(tmp_path / "searcher.pkl"))
    assert {t: second.trial_number(t) for t in "abcd"} == {t: first.trial_number(t) for t in "abcd"}
    assert second.optuna_trial("a") is None  # already told
    assert second.suggest("b") == configs["b"]  # same trial, same parameters
    scheduler = OptunaPrunerScheduler(second)
    decision = scheduler.on_trial_result(None, Trial("x", trial_id="b", stub=True),
                                         {"acc": 0.2, "training_iteration": 2})
    assert decision == TrialScheduler.STOP
    second.on_trial_complete("b", result={"acc": 0.2, "step": 2})
    for tid in ("c", "d"):
        second.on_trial_complete(tid, result={"acc": 0.6, "completed": True})
    study = optuna.load_study(study_name="resume", storage=url)
    states = {t.user_attrs[TUNE_ID_ATTR]: (t.state, t.value) for t in study.trials}
    assert states == {
        "a": (TrialState.COMPLETE, 0.8),
        "b": (TrialState.PRUNED, 0.2),
        "c": (TrialState.COMPLETE, 0.6),
        "d": (TrialState.COMPLETE, 0.6),
    }
    assert study.trials[1].intermediate_values == {1: 0.7, 2: 0.2}


def test_resuming_with_a_different_direction_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    OptunaSpaceSearcher(SPACE, metric="acc", mode="max", storage=url, study_name="s")
    with pytest.raises(ConfigError, match="maximize"):
        OptunaSpaceSearcher(SPACE, metric="acc", mode="min", storage=url, study_name="s")


def test_points_to_evaluate_come_first() -> None:
    point = {"student.dropout": 0.25, "distill.lambda_st": 1.0, "distill.temperature": 2.0}
    searcher = OptunaSpaceSearcher(SPACE, metric="acc", mode="max", points_to_evaluate=[point])
    assert searcher.suggest("p") == point


def test_suggest_before_metric_and_mode_is_a_clear_error() -> None:
    searcher = OptunaSpaceSearcher(SPACE)
    with pytest.raises(RuntimeError, match="metric and mode"):
        searcher.suggest("x")
    assert searcher.set_search_properties("acc", "max", {"student.lr": 0.01})
    assert set(searcher.suggest("x")) <= set(SPACE.keys)


def test_tune_distributions_in_the_param_space_are_refused() -> None:
    from ray import tune

    searcher = OptunaSpaceSearcher(SPACE, metric="acc", mode="max")
    assert not searcher.set_search_properties("acc", "max", {"student.lr": tune.uniform(0, 1)})


@pytest.mark.parametrize(
    "name, kind",
    [
        ("median", P.MedianPruner), ("percentile", P.PercentilePruner),
        ("successive_halving", P.SuccessiveHalvingPruner), ("hyperband", P.HyperbandPruner),
        ("wilcoxon", P.WilcoxonPruner), ("patient", P.PatientPruner), ("none", P.NopPruner),
    ],
)
def test_make_pruner_names(name: str, kind: type) -> None:
    assert isinstance(make_pruner(name), kind)


def test_patient_pruner_wraps_a_named_pruner() -> None:
    pruner = make_pruner("patient", patience=0, wrapped="threshold", wrapped_kwargs={"lower": 0.5})
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.9, 1)
    trial.report(0.95, 2)  # improving, and above the threshold
    assert not trial.should_prune()
    trial.report(0.1, 3)  # no improvement and below the wrapped threshold
    assert trial.should_prune()


@pytest.mark.parametrize(
    "name, kwargs, fragment",
    [("lstm", {}, "unknown pruner"), ("threshold", {}, "lower or upper"),
     ("median", {"n_startup": 3}, "n_startup"), ("none", {"x": 1}, "no arguments")],
)
def test_make_pruner_errors(name: str, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        make_pruner(name, **kwargs)
    assert info.value.key == "search.pruner" and info.value.value == name


@pytest.mark.parametrize(
    "name, kind",
    [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
     ("gp", optuna.samplers.GPSampler), ("nsga2", optuna.samplers.NSGAIISampler)],
)
def test_make_sampler_names(name: str, kind: type) -> None:
    assert isinstance(make_sampler(name, seed=0, concurrency=4), kind)


def test_tpe_startup_grows_with_concurrency() -> None:
    """With 8 trials in flight the first max(5, 16) = 16 trials are sampled at random."""
    def first_params(sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        out = []
        for _ in range(n):
            trial = study.ask()
            out.append(trial.suggest_float("x", 0.0, 1.0))
            study.tell(trial, (out[-1] - 0.3) ** 2)
        return out

    tpe = first_params(make_sampler("tpe", seed=3, concurrency=8), 16)
    rnd = first_params(optuna.samplers.RandomSampler(seed=3), 16)
    assert tpe == rnd
    tpe = first_params(make_sampler("tpe", seed=3, concurrency=1), 6)
    rnd = first_params(optuna.samplers.RandomSampler(seed=3), 6)
    assert tpe[:5] == rnd[:5] and tpe[5] != rnd[5]


def test_make_sampler_errors() -> None:
    with pytest.raises(ConfigError, match="unknown sampler"):
        make_sampler("bohb")
    with pytest.raises(ConfigError, match="at least 1"):
        make_sampler("tpe", concurrency=0)


def test_cmaes_sampler_needs_its_package() -> None:
    import importlib.util

    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ConfigError, match="pip install cmaes"):
            make_sampler("cmaes")
    else:
        assert isinstance(make_sampler("cmaes"), optuna.samplers.CmaEsSampler)


# --- a real Tune run --------------------------------------------------------------------------


def _curve_trainable(config: dict) -> None:
    """Two metric-less 'teacher' epochs, then a score that saturates at 1 - dropout.

    ``distill.lambda_st = 1`` with dropout 0.5 stands for a diverging run: NaN at step 4.
    """
    from ray import tune

    level = 1.0 - config["student.dropout"]
    diverges = config["distill.lambda_st"] == 1.0 and config["student.dropout"] == 0.5
    for step in range(1, 9):
        metrics = {"step": step, "completed": step == 8}
        if step > 2:
            score = level * (1.0 - 0.6 ** (step - 2))
            metrics["score"] = float("nan") if diverges and step >= 4 else score
        tune.report(metrics)
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_tune_run_prunes_into_the_optuna_study(tmp_path: Path, monkeypatch) -> None:
    import ray
    from ray import tune

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # teacher epochs: no metric
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # A loopback-only test cluster: without this Ray 2.60 writes a token to ~/.ray and turns
    # token mode on in this process's environment, which outlives the test.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    points = [
        # two good curves start together; neither can be pruned (the pruner waits for two
        # completed trials), so the curves after them meet a settled median
        {"student.dropout": 0.0, "distill.lambda_st": 0.0},
        {"student.dropout": 0.05, "distill.lambda_st": 0.0},
        {"student.dropout": 0.9, "distill.lambda_st": 0.0},  # clearly bad
        {"student.dropout": 0.5, "distill.lambda_st": 1.0, "distill.temperature": 2.0},  # NaN
    ]
    searcher = OptunaSpaceSearcher(
        SPACE, metric="score", mode="max", storage=url, study_name="e2e",
        sampler=make_sampler("random", seed=0), points_to_evaluate=points,
        pruner=make_pruner("median", n_startup_trials=2),
    )
    scheduler = OptunaPrunerScheduler(searcher)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            _curve_trainable,
            tune_config=tune.TuneConfig(
                metric="score", mode="max", search_alg=searcher, scheduler=scheduler,
                num_samples=6, max_concurrent_trials=2,
            ),
            run_config=tune.RunConfig(
                name="e2e", storage_path=str(tmp_path / "ray_results"), verbose=0
            ),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()

    assert grid.num_errors == 0
    last = {r.metrics["trial_id"]: r.metrics for r in grid}
    study = optuna.load_study(study_name="e2e", storage=url)
    assert len(study.trials) == 6
    by_tune_id = {t.user_attrs[TUNE_ID_ATTR]: t for t in study.trials}
    assert set(by_tune_id) == set(last)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    assert study.trials[2].state == TrialState.PRUNED  # the bad curve
    assert study.trials[3].state == TrialState.PRUNED  # the NaN
    assert study.trials[3].intermediate_values == {3: pytest.approx(0.5 * 0.4)}
    for tune_id, frozen in by_tune_id.items():
        ran = last[tune_id]["training_iteration"]
        if frozen.state == TrialState.COMPLETE:
            assert ran == 8 and frozen.value == pytest.approx(last[tune_id]["score"])
        else:
            assert ran < 8 and max(frozen.intermediate_values) == ran
        # every reported score went to the study at its step
        assert all(step >= 3 for step in frozen.intermediate_values)
    assert study.trials[0].state == study.trials[1].state == TrialState.COMPLETE

    # a resumed search finds the same study and the same Tune ↔ Optuna map
    again = OptunaSpaceSearcher(SPACE, metric="score", mode="max", storage=url, study_name="e2e")
    again.restore_from_dir(str(tmp_path / "ray_results" / "e2e"))
    assert {tid: again.trial_number(tid) for tid in last} == {
        tid: by_tune_id[tid].number for tid in last
    }
    assert all(again.optuna_trial(tid) is None for tid in last)
    reloaded = again.study.trials
    assert [(t.number, t.state, t.value, t.params) for t in reloaded] == [
        (t.number, t.state, t.value, t.params) for t in study.trials
    ]
    assert not any(math.isnan(v) for t in reloaded for v in t.intermediate_values.values())


def _plateau_then_learning(step_out: int, trials: int = 6, epochs: int = 8) -> list[list[float]]:
    """Curves at chance (0.125 ± a few clips of 96) until ``step_out``, then apart."""
    rng = np.random.default_rng(3)
    curves = []
    for i in range(trials):
        level = 0.3 + 0.08 * i
        curves.append([float(0.125 + rng.integers(-2, 3) / 96) if s < step_out
                       else float(level * min(1.0, (s - step_out + 1) / 3))
                       for s in range(1, epochs + 1)])
    return curves


def test_no_prune_decision_while_every_trial_is_at_chance() -> None:
    from sakdn.search.scheduler import chance_floor

    floor = chance_floor(8, 96)  # 8 classes, 96 validation clips
    assert floor == pytest.approx(0.125 + 2 * math.sqrt(0.125 * 0.875 / 96))
    curves = _plateau_then_learning(step_out=4)
    assert all(max(c[:3]) < floor for c in curves)  # three epochs of noise around chance

    def decide(signal_floor):
        searcher = OptunaSpaceSearcher(
            SPACE, metric="acc", mode="max", study_name=STUDY,
            pruner=make_pruner("successive_halving", min_resource=1, reduction_factor=3),
            sampler=optuna.samplers.RandomSampler(seed=0))
        scheduler = OptunaPrunerScheduler(searcher, step_key="step", signal_floor=signal_floor)
        decisions = []
        for i, curve in enumerate(curves):
            trial = Trial("curve", trial_id=f"p{i:05d}", stub=True)
            searcher.suggest(trial.trial_id)
            pruned_at = None
            for step, value in enumerate(curve, start=1):
                result = {"acc": value, "step": step, "completed": step == len(curve)}
                if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                    pruned_at = step
                    break
            searcher.on_trial_complete(trial.trial_id, result=result)
            decisions.append(pruned_at)
        return decisions, searcher.study

    without, _ = decide(None)
    assert any(d is not None and d < 4 for d in without)  # the pruner would judge the noise
    with_floor, study = decide(floor)
    assert all(d is None or d >= 4 for d in with_floor)  # never at the chance plateau
    assert any(d is not None for d in with_floor)  # but it still prunes once trials differ
    early = [t for t in study.trials if t.intermediate_values.get(1) is not None]
    assert len(early) == len(curves)  # every value is still reported to the study


def test_the_reference_trial_is_reported_but_never_pruned() -> None:
    """``search.start_point``'s trial is what the best trial is compared with: a curve the
    pruner stops in trial 0 when trial 1 ran ahead of it (two trials at once) runs to the end
    when trial 0 is the reference, and its values still reach the study."""
    good = [0.2, 0.4, 0.6, 0.7, 0.8]
    bad = [0.1, 0.1, 0.1, 0.1, 0.1]
    reference = {"student.dropout": 0.3, "distill.lambda_st": 0.0}

    def run(ref):
        searcher = OptunaSpaceSearcher(
            SPACE, metric="acc", mode="max", study_name=STUDY, reference=ref,
            points_to_evaluate=[{"student.dropout": 0.5, "distill.lambda_st": 0.0}],
            pruner=make_pruner("successive_halving", min_resource=1, reduction_factor=2),
            sampler=optuna.samplers.RandomSampler(seed=0))
        scheduler = OptunaPrunerScheduler(searcher, step_key="step")
        trials = [Trial("curve", trial_id=f"r{i:05d}", stub=True) for i in range(2)]
        for trial in trials:  # both asked before either reports, as with concurrent trials
            searcher.suggest(trial.trial_id)
        ran = {}
        for trial, curve in ((trials[1], good), (trials[0], bad)):
            for step, value in enumerate(curve, start=1):
                ran[trial.trial_id] = step
                result = {"acc": value, "step": step, "completed": step == len(curve)}
                if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                    break
            searcher.on_trial_complete(trial.trial_id, result=result)
        return [ran[t.trial_id] for t in trials], searcher.study

    ran, study = run(ref=None)  # trial 0 is the point to evaluate: judged like any trial
    assert ran == [1, 5] and study.trials[0].state == TrialState.PRUNED
    ran, study = run(ref=reference)
    assert study.trials[0].params == reference  # the reference comes before the points
    assert study.trials[0].user_attrs[REFERENCE_ATTR] is True
    assert study.trials[1].params["student.dropout"] == 0.5
    assert REFERENCE_ATTR not in study.trials[1].user_attrs
    assert ran == [5, 5] and study.trials[0].state == TrialState.COMPLETE
    assert study.trials[0].intermediate_values == {s: 0.1 for s in range(1, 6)}


def test_each_trial_records_whether_it_was_given_drawn_at_random_or_guided() -> None:
    """Optuna's samplers leave start-up once ``n_startup_trials`` trials have finished (COMPLETE
    or PRUNED, given ones included): a trial asked while another still runs is drawn at random
    as well. The report reads the mark to say where the best trial came from."""
    from sakdn.names import Origin, StudyAttr
    from sakdn.search.searcher import startup_trials

    assert startup_trials("tpe", concurrency=2) == 5 and startup_trials("tpe", 4) == 8
    assert startup_trials("gp", 1, n_startup_trials=3) == 3 and startup_trials("random") is None
    searcher = OptunaSpaceSearcher(
        SPACE, metric="acc", mode="max", study_name=STUDY, startup_trials=3,
        reference={"student.dropout": 0.3, "distill.lambda_st": 0.0},
        points_to_evaluate=[{"student.dropout": 0.5, "distill.lambda_st": 0.0}],
        sampler=make_sampler("tpe", seed=0, n_startup_trials=3))

    def ask(i: int) -> str:
        searcher.suggest(f"o{i:05d}")
        return f"o{i:05d}"

    def finish(tid: str) -> None:
        searcher.on_trial_complete(tid, result={"acc": 0.5, "step": 1, "completed": True})

    for i in range(2):
        finish(ask(i))  # the start point, then the given point
    running = ask(2)  # 2 finished: start-up
    extra = ask(3)  # still 2 finished (trial 2 runs): start-up too
    finish(running)
    finish(extra)
    finish(ask(4))  # 4 finished: guided
    origins = [t.user_attrs[StudyAttr.ORIGIN] for t in searcher.study.trials]
    assert origins == [Origin.GIVEN, Origin.GIVEN, Origin.STARTUP, Origin.STARTUP, Origin.GUIDED]


def test_cross_validated_searches_prune_on_folds_only() -> None:
    from sakdn.config import SearchConfig

    with pytest.raises(ConfigError, match="search.folds"):
        SearchConfig(space="s.yaml", folds=3, pruner="median").check_together()
    with pytest.raises(ConfigError, match="search.folds"):
        SearchConfig(space="s.yaml", folds=3, pruner="wilcoxon",
                     scheduler="asha").check_together()
    SearchConfig(space="s.yaml", folds=5, pruner="wilcoxon").check_together()
    # 3 folds all worse give p = 2^-3 = 0.125: at Optuna's default p_threshold 0.1 the pruner
    # could never act, which is refused rather than run as a search that silently never prunes
    with pytest.raises(ConfigError, match=r"search.pruner_options.*3 folds.*never stop a trial"
                                          r".*0\.125, not below p_threshold 0\.1.*above 0\.25"):
        SearchConfig(space="s.yaml", folds=3, pruner="wilcoxon").check_together()
    SearchConfig(space="s.yaml", folds=3, pruner="wilcoxon",
                 pruner_options="{p_threshold: 0.3}").check_together()
