"""Search-space files: every rejection names file, key and reason; sampling honours conditions."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sakdn.config import ExperimentConfig
from sakdn.errors import SearchSpaceError
from sakdn.search.space import load_space, parse_space
from tests.tiny import REPO

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _rejects(tmp_path: Path, text: str, key: str, *fragments: str) -> SearchSpaceError:
    """Load ``text`` as a space file; it must fail naming this file, ``key`` and the reason."""
    path = _write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    for fragment in fragments:
        assert fragment in err.reason
    assert str(path) in str(err) and key in str(err) and err.reason in str(err)
    return err


def _study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


# --- rejections, one per kind -----------------------------------------------------------------


def test_unknown_config_key(tmp_path: Path) -> None:
    err = _rejects(tmp_path, "teacher.lrr: {loguniform: [1.0e-4, 1.0e-3]}\n", "teacher.lrr",
                   "unknown config key")
    assert "lr" in err.reason  # the hint lists the section's real keys


def test_unknown_section(tmp_path: Path) -> None:
    _rejects(tmp_path, "optim.lr: {uniform: [0.1, 0.2]}\n", "optim.lr", "unknown config key",
             "sections")


def test_unknown_distribution(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.dropout: {normal: [0.5, 0.1]}\n", "student.dropout",
             "unknown distribution 'normal'")


def test_missing_distribution(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.dropout: {step: 0.1}\n", "student.dropout", "no distribution")


@pytest.mark.parametrize(
    "spec", ["{uniform: [0.8, 0.5]}", "{uniform: [0.5, 0.5]}"], ids=["reversed", "equal"]
)
def test_low_not_below_high(tmp_path: Path, spec: str) -> None:
    _rejects(tmp_path, f"student.dropout: {spec}\n", "student.dropout", "must be below high")


def test_int_low_not_below_high(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.segments: {int: [8, 3]}\n", "student.segments",
             "must be below high")


@pytest.mark.parametrize(
    "key, spec",
    [
        ("distill.lambda_st", "{loguniform: [0.0, 1.0]}"),
        ("student.segments", "{int: [0, 8], log: true}"),
    ],
)
def test_log_with_non_positive_bound(tmp_path: Path, key: str, spec: str) -> None:
    _rejects(tmp_path, f"{key}: {spec}\n", key, "log scale needs positive bounds")


def test_empty_choice(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.consensus: {choice: []}\n", "student.consensus", "empty choice")


@pytest.mark.parametrize(
    "key, spec, fragment",
    [
        ("student.consensus", "{choice: [avg, 3]}", "3 is not a str"),
        ("teacher.epochs", "{fixed: ten}", "'ten' is not a int"),
        ("student.partial_bn", "{choice: [true, 1]}", "1 is not a bool"),
        ("student.lr", "{fixed: 1e-3}", "1.0e-3"),  # YAML 1.1 reads 1e-3 as text
    ],
)
def test_value_of_wrong_type(tmp_path: Path, key: str, spec: str, fragment: str) -> None:
    _rejects(tmp_path, f"{key}: {spec}\n", key, fragment)


def test_value_outside_the_config_rules(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.dropout: {uniform: [0.5, 1.5]}\n", "student.dropout",
             "1.5", "not allowed")
    _rejects(tmp_path, "student.consensus: {choice: [avg, lstm]}\n", "student.consensus",
             "'lstm'", "must be one of")


def test_distribution_for_the_wrong_key_type(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.segments: {uniform: [3.0, 8.0]}\n", "student.segments",
             "needs a float key")
    _rejects(tmp_path, "distill.temperature: {int: [1, 8]}\n", "distill.temperature",
             "needs an integer key")


def test_int_bounds_not_integers(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.segments: {int: [2.5, 8]}\n", "student.segments",
             "int bounds must be integers", "2.5")


@pytest.mark.parametrize("step", ["0", "-5"])
def test_step_not_positive(tmp_path: Path, step: str) -> None:
    _rejects(tmp_path, f"teacher.epochs: {{int: [10, 40], step: {step}}}\n", "teacher.epochs",
             "step must be positive")


def test_step_not_dividing_the_range(tmp_path: Path) -> None:
    _rejects(tmp_path, "teacher.epochs: {int: [10, 42], step: 5}\n", "teacher.epochs",
             "not a multiple of step")


@pytest.mark.parametrize(
    "key, spec",
    [
        ("teacher.epochs", "{int: [10, 40], step: 5, log: true}"),
        ("teacher.lr", "{loguniform: [1.0e-4, 1.0e-3], step: 1.0e-4}"),
    ],
)
def test_step_with_log(tmp_path: Path, key: str, spec: str) -> None:
    _rejects(tmp_path, f"{key}: {spec}\n", key, "step cannot be combined")


def test_condition_on_unknown_key(tmp_path: Path) -> None:
    text = "student.trn_relations: {int: [2, 6], when: {student.consensu: trn}}\n"
    _rejects(tmp_path, text, "student.trn_relations", "unknown config key 'student.consensu'")


def test_condition_value_of_wrong_type(tmp_path: Path) -> None:
    text = "student.trn_relations: {int: [2, 6], when: {student.segments: eight}}\n"
    _rejects(tmp_path, text, "student.trn_relations", "when: student.segments 'eight'",
             "not a int")


def test_condition_that_can_never_hold(tmp_path: Path) -> None:
    text = (
        "student.consensus: {choice: [avg, trn]}\n"
        "student.trn_relations: {int: [2, 6], when: {student.consensus: lstm}}\n"
    )
    _rejects(tmp_path, text, "student.trn_relations", "can never hold")
    text = (
        "student.consensus: {fixed: avg}\n"
        "student.trn_relations: {int: [2, 6], when: {student.consensus: trn}}\n"
    )
    _rejects(tmp_path, text, "student.trn_relations", "can never hold", "fixed 'avg'")


def test_condition_cycle(tmp_path: Path) -> None:
    text = (
        "distill.lambda_st: {choice: [0.0, 1.0], when: {distill.temperature: 4.0}}\n"
        "distill.temperature: {choice: [2.0, 4.0], when: {distill.lambda_st: 1.0}}\n"
    )
    err = _rejects(tmp_path, text, "distill.lambda_st", "condition cycle")
    assert "distill.lambda_st -> distill.temperature -> distill.lambda_st" in err.reason


def test_self_condition_is_a_cycle(tmp_path: Path) -> None:
    text = "student.consensus: {choice: [avg, trn], when: {student.consensus: trn}}\n"
    _rejects(tmp_path, text, "student.consensus", "condition cycle")


def test_two_distributions_in_one_key(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.dropout: {uniform: [0.5, 0.9], choice: [0.5]}\n",
             "student.dropout", "more than one distribution")


def test_same_key_listed_twice(tmp_path: Path) -> None:
    text = "student.dropout: {uniform: [0.5, 0.9]}\nstudent.dropout: {choice: [0.5, 0.8]}\n"
    _rejects(tmp_path, text, "student.dropout", "listed twice", "line 2")


def test_option_on_the_wrong_distribution(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.segments: {choice: [3, 5], step: 2}\n", "student.segments",
             "step only applies")
    _rejects(tmp_path, "student.dropout: {uniform: [0.5, 0.9], log: true}\n", "student.dropout",
             "use loguniform")


def test_spec_that_is_not_a_mapping(tmp_path: Path) -> None:
    _rejects(tmp_path, "student.dropout: 0.5\n", "student.dropout", "expected a mapping")


@pytest.mark.parametrize(
    "text, fragment",
    [("", "names no keys"), ("- a\n- b\n", "must map config keys"), ("a: [\n", "invalid YAML")],
)
def test_bad_files(tmp_path: Path, text: str, fragment: str) -> None:
    _rejects(tmp_path, text, "<file>", fragment)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="cannot read") as info:
        load_space(tmp_path / "nope.yaml")
    assert info.value.file == str(tmp_path / "nope.yaml")


def test_parse_space_without_file_names_the_key() -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_space({"student.dropout": {"uniform": [0.9, 0.5]}})
    assert info.value.file is None and info.value.key == "student.dropout"


# --- accepted spaces --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sakdn", "distill_only", "smoke"])
def test_shipped_spaces_load_and_yield_valid_configs(name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    assert len(space) >= 3
    study = _study(seed=1)
    base = ExperimentConfig().to_flat()
    for _ in range(40):
        chosen = space.suggest(study.ask(), base)
        assert set(chosen) <= set(space.keys)
        ExperimentConfig().replace(chosen)  # every sampled configuration is a valid experiment


def test_distill_only_space_leaves_the_teachers_alone() -> None:
    space = load_space(SPACES / "distill_only.yaml")
    assert {k.split(".")[0] for k in space.keys} == {"student", "distill"}


def test_conditional_keys_follow_their_conditions() -> None:
    space = parse_space(
        {
            "student.consensus": {"choice": ["avg", "trn"]},
            "student.trn_relations": {"int": [2, 6], "when": {"student.consensus": "trn"}},
            "teacher.lr": {"loguniform": [3.0e-5, 1.0e-3]},
            "teacher.epochs": {"int": [10, 40], "step": 5},
            "gaf.method": {"fixed": "gadf"},
        }
    )
    study = _study()
    seen = set()
    for _ in range(30):
        trial = study.ask()
        chosen = space.suggest(trial, ExperimentConfig().to_flat())
        seen.add(chosen["student.consensus"])
        if chosen["student.consensus"] == "trn":
            assert type(chosen["student.trn_relations"]) is int
            assert 2 <= chosen["student.trn_relations"] <= 6
        else:
            assert "student.trn_relations" not in chosen
            assert "student.trn_relations" not in trial.params  # never asked for
        assert type(chosen["teacher.lr"]) is float and 3.0e-5 <= chosen["teacher.lr"] <= 1.0e-3
        assert chosen["teacher.epochs"] in {10, 15, 20, 25, 30, 35, 40}
        assert chosen["gaf.method"] == "gadf"  # fixed: returned, not sampled
        assert "gaf.method" not in trial.params
        study.tell(trial, 0.0)
    assert seen == {"avg", "trn"}


def test_condition_outside_the_space_reads_the_experiment() -> None:
    space = parse_space(
        {"student.trn_relations": {"int": [2, 6], "when": {"student.consensus": "trn"}}}
    )
    study = _study()
    base = ExperimentConfig().to_flat()
    assert space.suggest(study.ask(), {**base, "student.consensus": "avg"}) == {}
    chosen = space.suggest(study.ask(), {**base, "student.consensus": "trn"})
    assert set(chosen) == {"student.trn_relations"}
    # missing from base: the code default (trn) applies
    assert set(space.suggest(study.ask(), {})) == {"student.trn_relations"}


def test_inactive_condition_key_falls_back_to_the_experiment_value() -> None:
    space = parse_space(
        {
            "distill.lambda_gsdm": {"choice": [0.0, 1.0]},
            "distill.ablation_weight": {
                "choice": ["plain", "graph"],
                "when": {"distill.lambda_gsdm": 1.0},
            },
            "distill.graph_sigma2": {
                "loguniform": [0.1, 10.0],
                "when": {"distill.ablation_weight": "graph"},
            },
        }
    )
    study = _study(seed=3)
    for base_weight in ("graph", "plain"):
        base = {**ExperimentConfig().to_flat(), "distill.ablation_weight": base_weight}
        for _ in range(20):
            chosen = space.suggest(study.ask(), base)
            weight = chosen.get("distill.ablation_weight", base_weight)
            assert ("distill.graph_sigma2" in chosen) == (weight == "graph")


def test_every_condition_must_hold() -> None:
    space = parse_space(
        {
            "distill.lambda_st": {"choice": [0.0, 0.5]},
            "student.consensus": {"choice": ["avg", "trn"]},
            "distill.temperature": {
                "choice": [2.0, 4.0],
                "when": {"distill.lambda_st": [0.5], "student.consensus": "trn"},
            },
        }
    )
    study = _study(seed=4)
    combos = set()
    for _ in range(40):
        chosen = space.suggest(study.ask(), {})
        on = chosen["distill.lambda_st"] == 0.5 and chosen["student.consensus"] == "trn"
        assert ("distill.temperature" in chosen) == on
        combos.add((chosen["distill.lambda_st"], chosen["student.consensus"]))
    assert len(combos) == 4


def test_conditions_are_sampled_first_whatever_the_file_order() -> None:
    space = parse_space(
        {
            "student.trn_relations": {"int": [2, 6], "when": {"student.consensus": "trn"}},
            "student.consensus": {"choice": ["avg", "trn"]},
        }
    )
    assert space.keys == ("student.consensus", "student.trn_relations")
    study = _study(seed=5)
    for _ in range(20):  # the base says avg: only the sampled consensus may decide
        chosen = space.suggest(study.ask(), {"student.consensus": "avg"})
        assert ("student.trn_relations" in chosen) == (chosen["student.consensus"] == "trn")


def test_ints_in_a_float_choice_become_floats() -> None:
    space = parse_space({"distill.temperature": {"choice": [1, 2.0, 4]}})
    assert space["distill.temperature"].choices == (1.0, 2.0, 4.0)
    assert all(type(c) is float for c in space["distill.temperature"].choices)


def test_optuna_distributions_match_the_file() -> None:
    space = parse_space(
        {
            "teacher.lr": {"loguniform": [3.0e-5, 1.0e-3]},
            "student.dropout": {"uniform": [0.5, 0.9], "step": 0.1},
            "teacher.epochs": {"int": [10, 40], "step": 5},
            "student.segments": {"int": [2, 16], "log": True},
            "student.consensus": {"choice": ["avg", "trn"]},
            "gaf.method": {"fixed": "gasf"},
        }
    )
    expected = {
        "teacher.lr": FloatDistribution(3.0e-5, 1.0e-3, log=True),
        "student.dropout": FloatDistribution(0.5, 0.9, step=0.1),
        "teacher.epochs": IntDistribution(10, 40, step=5),
        "student.segments": IntDistribution(2, 16, log=True),
        "student.consensus": CategoricalDistribution(("avg", "trn")),
    }
    assert space.to_optuna_distributions() == expected
    study = _study()
    trial = study.ask()
    space.suggest(trial, {})
    study.tell(trial, 1.0)
    assert study.trials[0].distributions == expected  # what Optuna recorded
    tenths = study.trials[0].params["student.dropout"] * 10
    assert math.isclose(tenths, round(tenths))  # on the step grid


def test_the_start_point_is_the_experiments_own_values_under_the_conditions() -> None:
    space = parse_space({
        "student.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "distill.lambda_st": {"choice": [0.0, 0.01, 0.5]},
        "distill.temperature": {"choice": [2.0, 4.0], "when": {"distill.lambda_st": [0.01, 0.5]}},
        "student.epochs": {"fixed": 3},
    }, file="space.yaml")
    base = {**ExperimentConfig().to_flat(), "student.lr": 1.0e-3, "distill.lambda_st": 0.01,
            "distill.temperature": 4.0}
    # fixed keys are not sampled: the point holds what a trial would sample
    assert space.start_point(base) == {"student.lr": 1.0e-3, "distill.lambda_st": 0.01,
                                       "distill.temperature": 4.0}
    # with soft targets off, their temperature is not sampled either
    assert space.start_point({**base, "distill.lambda_st": 0.0}) == {
        "student.lr": 1.0e-3, "distill.lambda_st": 0.0}
    with pytest.raises(SearchSpaceError, match=r"space.yaml: distill.lambda_st: search.start_"
                       r"point: the experiment's value 0.1 is outside the space \(choice "):
        space.start_point({**base, "distill.lambda_st": 0.1})


def test_the_main_jobs_start_point_is_its_experiment_file() -> None:
    """The main job's trial 0 trains experiments/synthetic_search.yaml as it is."""
    from sakdn.search.run import _reference, prepare

    p = prepare(REPO / "experiments" / "synthetic_search.yaml", [])
    first = _reference(p)
    flat = p.config.to_flat()
    assert set(first) == set(p.space.keys) and all(flat[k] == v for k, v in first.items())
