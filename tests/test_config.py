"""Configuration: round trips, YAML, overrides and every kind of ConfigError."""

from __future__ import annotations

import dataclasses

import pytest

from sakdn.config import (
    ExperimentConfig,
    all_keys,
    dump_yaml,
    from_flat,
    key_type,
    load_config,
    parse_overrides,
    parse_subset,
    TEACHER_STAGES,
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
