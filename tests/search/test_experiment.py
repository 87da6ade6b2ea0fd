"""The ``search:`` section of experiment files: defaults, paths, overrides, every rejection,
and which of the file or ``--set`` an error names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sakdn.config import load_config, parse_overrides
from sakdn.errors import ConfigError
from sakdn.search.experiment import load_search, read_experiment
from tests.tiny import REPO, SMOKE


def _write(tmp_path: Path, search: dict, name: str = "exp.yaml") -> Path:
    (tmp_path / "spaces").mkdir(exist_ok=True)
    (tmp_path / "spaces" / "s.yaml").write_text("student.lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"student": {"epochs": 3}, "search": search}))
    return path


def test_defaults_and_derived_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _write(tmp_path, {"space": "spaces/s.yaml", "storage_path": "out"})
    s = load_search(path, cwd=tmp_path / "elsewhere")  # the space is found beside the file
    assert s.space == str(tmp_path / "spaces" / "s.yaml")
    assert s.name == "exp" and s.study_name == "exp"
    assert s.metrics == ("student/best_val_acc",) and s.modes == ("max",)
    assert s.prune_metric == "student/best_val_acc"
    assert (s.sampler, s.pruner, s.scheduler) == ("tpe", "median", "optuna")
    assert (s.num_samples, s.max_concurrent_trials, s.resources.cpu, s.resources.gpu) == (
        8, 2, 1.0, 0.0)
    storage = tmp_path / "elsewhere" / "out"
    assert s.storage_path == str(storage)
    assert s.tracking_uri == f"sqlite:///{storage / 'mlflow.db'}"
    assert s.study_storage == f"sqlite:///{storage / 'optuna.db'}"  # beside the MLflow store
    assert s.teacher_store == str(storage / "exp" / "teacher_store")
    assert s.search_dir == storage / "exp"
    # the training part of the same file still loads, ignoring search:
    assert load_config(path).student.epochs == 3


def test_the_tracking_uri_comes_from_the_file_then_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    path = _write(tmp_path, {"space": "spaces/s.yaml"})
    assert load_search(path, cwd=tmp_path).tracking_uri == "http://127.0.0.1:5000"
    path = _write(tmp_path, {"space": "spaces/s.yaml", "tracking_uri": "http://h:1"})
    assert load_search(path, cwd=tmp_path).tracking_uri == "http://h:1"


def test_overrides_reach_nested_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, {"space": "spaces/s.yaml", "resources": {"cpu": 2}})
    overrides = parse_overrides([
        "search.num_samples=3", "search.resources.gpu=0.5", "student.lr=0.1",
        "search.metric=[student/best_val_acc, student/gflops]", "search.mode=[max, min]",
        "search.sampler=nsga2",
    ])
    config, s, _ = read_experiment(path, overrides, cwd=tmp_path)
    assert config.student.lr == 0.1 and config.student.epochs == 3
    assert s.num_samples == 3 and (s.resources.cpu, s.resources.gpu) == (2.0, 0.5)
    assert s.multi_objective and s.objective() == (
        ["student/best_val_acc", "student/gflops"], ["max", "min"])


def test_the_shipped_experiments_are_valid() -> None:
    for name in ("synthetic_smoke.yaml", "synthetic_search.yaml"):
        s = load_search(REPO / "experiments" / name, cwd=REPO)
        assert Path(s.space).is_file() and s.num_samples >= 1
    assert load_search(SMOKE, cwd=REPO).num_samples <= 3


@pytest.mark.parametrize(
    "section, key, fragment",
    [
        ({"space": "spaces/s.yaml", "sampler": "grid"}, "search.sampler", "one of tpe"),
        ({"space": "spaces/s.yaml", "pruner": "early"}, "search.pruner", "one of median"),
        ({"space": "spaces/s.yaml", "scheduler": "pbt"}, "search.scheduler", "one of optuna"),
        ({"space": "spaces/s.yaml", "num_samples": 0}, "search.num_samples", ">= 1"),
        ({"space": "spaces/s.yaml", "num_samples": 2.5}, "search.num_samples", "integer"),
        ({"space": "spaces/s.yaml", "mode": "maximum"}, "search.mode", "one of max"),
        ({"space": "spaces/s.yaml", "metric": ["a", "b", "c"], "mode": ["max", "min"]},
         "search.mode", "one per metric"),
        ({"space": "spaces/s.yaml", "metric": ["a", "a"]}, "search.metric", "twice"),
        ({"space": "spaces/s.yaml", "sampler": "nsga2"}, "search.sampler", "multi-objective"),
        ({"space": "spaces/s.yaml", "resources": {"gpu": 1.5}}, "search.resources.gpu",
         "fractions"),
        ({"space": "spaces/s.yaml", "resources": {"tpu": 1}}, "search.resources.tpu", "unknown"),
        ({"space": "spaces/s.yaml", "resources": {"cpu": 0, "gpu": 0}}, "search.resources",
         "needs some"),
        ({"space": "spaces/s.yaml", "storage_path": "s3://bucket/x"}, "search.storage_path",
         "filesystem path"),
        ({"space": "spaces/s.yaml", "name": "a/b"}, "search.name", "letters"),
        ({"space": "spaces/s.yaml", "time_budget_s": -1}, "search.time_budget_s", ">= 0"),
        ({"space": "spaces/s.yaml", "log_models": "yes"}, "search.log_models", "true or false"),
        ({"space": "spaces/s.yaml", "pruner_options": [1]}, "search.pruner_options", "map"),
        ({"space": "spaces/s.yaml", "num_sample": 3}, "search.num_sample", "unknown key"),
        ({"space": "missing.yaml"}, "search.space", "no such file"),
        ({"metric": "student/val_acc"}, "search.space", "required"),
    ],
)
def test_rejections_name_the_key_and_the_file(tmp_path, section, key, fragment) -> None:
    path = _write(tmp_path, section)
    with pytest.raises(ConfigError) as info:
        load_search(path, cwd=tmp_path)
    assert info.value.key == key and info.value.file == str(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_a_file_without_a_search_section_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "train_only.yaml"
    path.write_text("student: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="no search: section"):
        load_search(path)
    with pytest.raises(ConfigError, match="search.space.*required") as info:
        load_search(path, {"search.num_samples": 4})
    assert info.value.file == str(path)  # the file lacks it, not the command line


def test_a_training_file_is_searched_with_a_space_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "train_only.yaml"
    path.write_text("student: {epochs: 2}\n")
    space = tmp_path / "space.yaml"
    space.write_text("student.lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    search = load_search(path, {"search.space": str(space), "search.num_samples": 3}, cwd=tmp_path)
    assert search.space == str(space) and search.num_samples == 3
    assert search.pruner == "median" and search.max_concurrent_trials == 2  # the defaults


def test_bad_override_text_is_rejected() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["search.num_samples"])


@pytest.mark.parametrize(
    "item, key, fragment",
    [
        ("search.num_samples=0", "search.num_samples", ">= 1"),
        ("search.num_samples=abc", "search.num_samples", "integer"),
        ("search.sampler=grid", "search.sampler", "one of tpe"),
        ("search.sampler=nsga2", "search.sampler", "multi-objective"),  # with the file's metric
        ("search.resources.gpu=1.5", "search.resources.gpu", "fractions"),
        ("search.pruner_options=[1]", "search.pruner_options", "map option names"),
        ("search.pruner_options={a: 1", "search.pruner_options", "not a YAML value"),
        ("search.name=a/b", "search.name", "letters"),
        ("search.space=missing.yaml", "search.space", "no such file"),
        ("search.num_sample=3", "search.num_sample", "unknown key"),
    ],
)
def test_an_error_in_a_set_value_names_the_command_line(tmp_path, item, key, fragment) -> None:
    path = _write(tmp_path, {"space": "spaces/s.yaml", "num_samples": 4})
    with pytest.raises(ConfigError) as info:
        load_search(path, parse_overrides([item]), cwd=tmp_path)
    assert info.value.key == key and info.value.file == "--set"
    assert str(info.value).startswith("--set: ") and fragment in str(info.value)
    assert str(path) not in str(info.value)


@pytest.mark.parametrize("where", ["file", "--set"])
def test_options_only_a_library_can_check_name_where_they_came_from(tmp_path, where) -> None:
    from sakdn.search.run import _build_parts, prepare

    section = {"space": "spaces/s.yaml", "storage_path": str(tmp_path / "store")}
    items = []
    if where == "file":
        section["pruner_options"] = {"n_startup": 3}  # MedianPruner has no such argument
    else:
        items = ["search.pruner_options={n_startup: 3}"]
    path = _write(tmp_path, section)
    prepared = prepare(path, items)
    with pytest.raises(ConfigError, match="n_startup") as info:
        _build_parts(prepared)
    assert info.value.file == (str(path) if where == "file" else "--set")


def test_a_derived_name_is_checked_like_a_given_one(tmp_path: Path) -> None:
    path = _write(tmp_path, {"space": "spaces/s.yaml"}, name="my search.yaml")
    with pytest.raises(ConfigError, match="letters") as info:
        load_search(path, cwd=tmp_path)
    assert info.value.key == "search.name" and info.value.value == "my search"
    assert info.value.file == str(path)
    assert load_search(path, {"search.name": "mine"}, cwd=tmp_path).name == "mine"
