"""Configuration: round trips, YAML, overrides and every kind of ConfigError; the search section
on the same machinery, and ``sakdn config``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sakdn.config import (
    TEACHER_STAGES,
    ExperimentConfig,
    SearchConfig,
    all_keys,
    dump_yaml,
    from_flat,
    key_type,
    load_config,
    load_experiment,
    parse_overrides,
    parse_subset,
    parse_value,
    section_from_flat,
)
from sakdn.errors import ConfigError


def test_flat_round_trip_default() -> None:
    config = ExperimentConfig()
    assert from_flat(config.to_flat()) == config


def test_flat_round_trip_changed_values() -> None:
    config = ExperimentConfig().replace(
        {"distill.lambda_gsdm": 0.25, "teacher.spamfm_stages": "conv3,fc2", "gaf.method": "gadf"}
    )
    flat = config.to_flat()
    assert flat["distill.lambda_gsdm"] == 0.25
    assert flat["teacher.spamfm_stages"] == "conv3,fc2"
    assert from_flat(flat) == config


def test_flat_values_are_scalars_and_keys_dotted() -> None:
    flat = ExperimentConfig().to_flat()
    assert set(flat) == set(all_keys())
    for key, value in flat.items():
        assert key.count(".") == 1
        assert isinstance(value, (bool, int, float, str))


def test_config_is_frozen() -> None:
    config = ExperimentConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.distill.lambda_st = 3.0  # type: ignore[misc]


def test_yaml_round_trip(tmp_path) -> None:
    config = ExperimentConfig().replace({"student.segments": 3, "train.seed": 7})
    path = tmp_path / "exp.yaml"
    path.write_text(dump_yaml(config))
    assert load_config(path) == config


def test_yaml_nested_and_dotted_keys(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("distill:\n  lambda_sp: 2\nteacher.epochs: 5\nsearch:\n  num_samples: 3\n")
    config = load_config(path)
    assert config.distill.lambda_sp == 2.0 and isinstance(config.distill.lambda_sp, float)
    assert config.teacher.epochs == 5


def test_precedence_defaults_yaml_overrides(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("student:\n  lr: 0.01\n  epochs: 4\n")
    config = load_config(path, overrides=parse_overrides(["student.lr=0.05"]))
    assert config.student.lr == 0.05  # command line beats YAML
    assert config.student.epochs == 4  # YAML beats default
    assert config.student.segments == ExperimentConfig().student.segments


def test_parse_overrides_types() -> None:
    parsed = parse_overrides(
        ["distill.lambda_gsdm=1", "train.amp=false", "student.segments=3", "data.root=/x/1"]
    )
    assert parsed == {
        "distill.lambda_gsdm": 1.0,
        "train.amp": False,
        "student.segments": 3,
        "data.root": "/x/1",
    }
    assert isinstance(parsed["distill.lambda_gsdm"], float)


def test_key_type() -> None:
    assert key_type("distill.lambda_gsdm") == "float"
    assert key_type("student.segments") == "int"
    assert key_type("train.amp") == "bool"
    assert key_type("gaf.method") == "str"


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("distill.lambda_gsdm", -1.0, ">= 0"),
        ("distill.temperature", 0.0, "> 0"),
        ("student.segments", 0, ">= 1"),
        ("gaf.method", "gasff", "one of"),
        ("student.segments", 2.5, "integer"),
        ("train.amp", "yes", "true or false"),
        ("distill.lambda_st", "big", "number"),
        ("data.root", 3, "string"),
        ("teacher.spamfm_stages", "conv9", "unknown 'conv9'"),
        ("teacher.spamfm_gates", "none", "at least one"),
        ("student.lr_decay_at", 1.0, "< 1.0"),
        ("distill.lambda_sp", float("nan"), "finite"),
    ],
)
def test_bad_values_name_key_and_value(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentConfig().replace({key: value})
    message = str(info.value)
    assert key in message and repr(value) in message and fragment in message
    assert info.value.key == key


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="distill.lambda_gdsm.*unknown key"):
        from_flat({"distill.lambda_gdsm": 1.0})
    with pytest.raises(ConfigError, match="unknown section"):
        from_flat({"distil.lambda_gsdm": 1.0})


def test_errors_from_a_file_name_the_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("student:\n  segments: -2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "student.segments" in str(info.value)

    path.write_text("studnet:\n  segments: 2\n")
    with pytest.raises(ConfigError, match="bad.yaml.*unknown section"):
        load_config(path)

    path.write_text("student: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml.*mapping"):
        load_config(path)

    path.write_text("student: {segments: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*invalid YAML"):
        load_config(path)

    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("train:\n  seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_override_errors_name_the_command_line() -> None:
    with pytest.raises(ConfigError, match="--set.*expected key=value"):
        parse_overrides(["distill.lambda_gsdm"])
    with pytest.raises(ConfigError, match="--set.*nope.key"):
        parse_overrides(["nope.key=1"])
    with pytest.raises(ConfigError, match="--set.*student.segments"):
        load_config(None, overrides=parse_overrides(["student.segments=-1"]))


def test_parse_subset() -> None:
    assert parse_subset("all", TEACHER_STAGES) == TEACHER_STAGES
    assert parse_subset("none", TEACHER_STAGES) == ()
    assert parse_subset("fc2, conv3", TEACHER_STAGES) == ("conv3", "fc2")


# --- the search: section ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SEARCH_FILE = REPO / "experiments" / "synthetic_search.yaml"
TRAINING_FILE = REPO / "experiments" / "synthetic.yaml"


def test_search_keys_are_flat_scalars_and_round_trip() -> None:
    flat = SearchConfig().to_flat()
    assert all(k.startswith("search.") for k in flat)
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert {"search.resources.cpu", "search.resources.gpu"} <= set(flat)
    assert section_from_flat(SearchConfig, flat) == SearchConfig()
    assert key_type("search.num_samples") == "int"
    assert key_type("search.resources.gpu") == "float"
    assert key_type("search.pruner_options") == "str"


def test_lists_and_mappings_have_one_flat_form(tmp_path) -> None:
    """YAML's lists and mappings, --set text, ``sakdn config``'s lines and MLflow params (text)
    all come back to the same section."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"search": {
        "space": "space.yaml",
        "metric": ["student/best_val_acc", "student/gflops"],
        "mode": ["max", "min"],
        "sampler": "nsga2",
        "resources": {"cpu": 2, "gpu": 0.5},
        "pruner_options": {"min_resource": 3, "reduction_factor": 3},
        "points_to_evaluate": [{"student.lr": 0.001, "distill.lambda_st": 1.0}],
    }}, sort_keys=False))
    _, from_file = load_experiment(path)
    flat = from_file.to_flat()
    assert flat["search.metric"] == "student/best_val_acc,student/gflops"
    assert flat["search.mode"] == "max,min"
    assert (flat["search.resources.cpu"], flat["search.resources.gpu"]) == (2.0, 0.5)
    assert flat["search.pruner_options"] == "{min_resource: 3, reduction_factor: 3}"
    assert flat["search.points_to_evaluate"] == "[{student.lr: 0.001, distill.lambda_st: 1.0}]"
    # the values as Optuna and Tune take them
    assert from_file.metrics == ("student/best_val_acc", "student/gflops")
    assert from_file.modes == ("max", "min")
    assert from_file.pruner_kwargs == {"min_resource": 3, "reduction_factor": 3}
    assert from_file.points == [{"student.lr": 0.001, "distill.lambda_st": 1.0}]
    assert from_file.resources.as_tune() == {"cpu": 2.0, "gpu": 0.5}
    # printed as `sakdn config` prints them, given back with --set
    lines = [f"{k}={v}" for k, v in flat.items()]
    assert load_experiment(None, parse_overrides(lines))[1] == from_file
    # stored as MLflow stores params (text), parsed back by each key's type
    params = {k: str(v) for k, v in flat.items()}
    typed = {k: parse_value(k, v) for k, v in params.items()}
    assert section_from_flat(SearchConfig, typed) == from_file
    # --set accepts the YAML forms too
    _, from_set = load_experiment(None, parse_overrides([
        "search.metric=[student/best_val_acc, student/gflops]", "search.mode=max,min"]))
    assert from_set.metric == flat["search.metric"] and from_set.mode == flat["search.mode"]


def test_a_nested_section_is_set_by_its_keys_or_whole() -> None:
    one = parse_overrides(["search.resources.gpu=0.5"])
    whole = parse_overrides(["search.resources={cpu: 2, gpu: 0.5}"])
    assert one == {"search.resources.gpu": 0.5}
    assert whole == {"search.resources.cpu": 2, "search.resources.gpu": 0.5}
    assert load_experiment(None, whole)[1].resources.as_tune() == {"cpu": 2.0, "gpu": 0.5}
    with pytest.raises(ConfigError, match="--set: search.resources = '3': .*mapping"):
        parse_overrides(["search.resources=3"])


def test_one_mode_applies_to_every_metric() -> None:
    search = SearchConfig().replace({"search.metric": "a,b"})
    assert search.mode == "max" and search.modes == ("max", "max")
    assert search.objective() == (["a", "b"], ["max", "max"])


def test_empty_option_values_are_the_empty_mapping() -> None:
    for value in ("", "{}", None, {}):
        assert SearchConfig().replace({"search.pruner_options": value}).pruner_kwargs == {}


def test_a_training_file_has_no_search_section_unless_a_search_key_is_set() -> None:
    config, search = load_experiment(TRAINING_FILE)
    assert search is None and config == load_config(TRAINING_FILE)
    _, search = load_experiment(TRAINING_FILE, {"search.num_samples": 4})
    assert search == SearchConfig(num_samples=4)


def test_training_reads_no_search_key() -> None:
    config = load_config(SEARCH_FILE)  # the file's search: section is not read
    assert config == load_experiment(SEARCH_FILE)[0]
    with pytest.raises(ConfigError, match="--set.*search.num_samples.*a search key"):
        load_config(SEARCH_FILE, {"search.num_samples": 4})


def test_search_errors_name_the_file_or_the_command_line(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("search:\n  num_samples: 0\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert (info.value.key, info.value.file) == ("search.num_samples", str(path))
    path.write_text("search:\n  num_samples: 3\n  resources: {cpu: 1, tpu: 1}\n")
    with pytest.raises(ConfigError, match="unknown key; search has") as info:
        load_experiment(path)
    assert (info.value.key, info.value.file) == ("search.resources.tpu", str(path))
    path.write_text("search:\n  num_samples: 3\n")
    for item, key in (("search.num_samples=0", "search.num_samples"),
                      ("search.resources.cpu=-1", "search.resources.cpu"),
                      ("search.metric=[a, a]", "search.metric")):
        with pytest.raises(ConfigError) as info:
            load_experiment(path, parse_overrides([item]))
        assert (info.value.key, info.value.file) == (key, "--set")
        assert str(path) not in str(info.value)


def _config_command(capsys, *args: str) -> tuple[int, dict[str, str], str]:
    from sakdn.cli import main

    code = main(["config", *args])
    out, err = capsys.readouterr()
    lines = dict(line.split("=", 1) for line in out.splitlines())
    return code, lines, err


def test_sakdn_config_prints_the_search_keys(capsys) -> None:
    code, lines, _ = _config_command(capsys, "--config", str(SEARCH_FILE))
    assert code == 0
    search = [k for k in lines if k.startswith("search.")]
    assert search == list(SearchConfig().to_flat())  # every key, in declaration order
    assert set(lines) == set(all_keys()) | set(search)
    assert lines["search.num_samples"] == "20"
    assert lines["search.pruner_options"] == "{min_resource: 5, reduction_factor: 2}"
    assert lines["search.resources.cpu"] == "1.0"
    code, lines, _ = _config_command(capsys, "--config", str(SEARCH_FILE),
                                     "--set", "search.num_samples=4", "--set", "student.lr=0.01")
    assert code == 0 and lines["search.num_samples"] == "4" and lines["student.lr"] == "0.01"


def test_sakdn_config_of_a_training_file_prints_no_search_keys(capsys) -> None:
    code, lines, _ = _config_command(capsys, "--config", str(TRAINING_FILE))
    assert code == 0 and set(lines) == set(all_keys())
    code, lines, _ = _config_command(capsys, "--config", str(TRAINING_FILE),
                                     "--set", "search.num_samples=4")
    assert lines["search.num_samples"] == "4" and lines["search.pruner"] == "median"


def test_sakdn_config_names_the_command_line_for_a_bad_search_value(capsys) -> None:
    code, _, err = _config_command(capsys, "--config", str(SEARCH_FILE),
                                   "--set", "search.num_samples=abc")
    assert code == 2
    assert err.startswith("sakdn: error: --set: search.num_samples = 'abc'")
    assert str(SEARCH_FILE) not in err
