"""The ``search:`` section of an experiment file: what a search optimises and how it runs.

An experiment file is a training configuration (``data:``, ``teacher:``, … read by
``sakdn.config.load_config``) plus one ``search:`` section read here into a frozen, validated
:class:`SearchConfig`. Every key is documented in ``docs/experiments.md``. Errors are
``ConfigError``s naming ``search.<key>`` and the file, raised before Ray starts.

Paths: ``space`` is looked up relative to the working directory first, then relative to the
experiment file; ``storage_path`` is relative to the working directory. Both are made
absolute here, because trials run in other processes (and other directories).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from sakdn.config import read_yaml
from sakdn.errors import ConfigError

SAMPLERS = ("tpe", "random", "gp", "cmaes", "nsga2")
PRUNERS = (
    "median", "percentile", "successive_halving", "hyperband", "wilcoxon", "patient",
    "threshold", "none",
)
SCHEDULERS = ("optuna", "asha", "fifo")
MODES = ("max", "min")
DEFAULT_METRIC = "student/best_val_acc"
DEFAULT_STORAGE = "runs/search"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


@dataclass(frozen=True)
class Resources:
    """What one trial holds: CPUs and GPUs (a fraction of one GPU is allowed)."""

    cpu: float = 1.0
    gpu: float = 0.0

    def as_tune(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}


@dataclass(frozen=True)
class SearchConfig:
    """A validated ``search:`` section with every default and path resolved.

    ``metric`` / ``mode`` are tuples: one entry for a single objective, several for a
    multi-objective search (``nsga2`` or ``tpe``; Optuna cannot prune those).
    """

    space: str
    metric: tuple[str, ...] = (DEFAULT_METRIC,)
    mode: tuple[str, ...] = ("max",)
    prune_metric: str = DEFAULT_METRIC
    num_samples: int = 8
    max_concurrent_trials: int = 2
    resources: Resources = field(default_factory=Resources)
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "median"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "optuna"
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    name: str = "search"
    storage_path: str = ""
    tracking_uri: str = ""
    experiment_name: str = "sakdn"
    study_storage: str = ""
    study_name: str = ""
    teacher_store: str = ""
    time_budget_s: float = 0.0
    max_failures: int = 2
    keep_checkpoints: int = 2
    log_models: bool = True
    flush_timeout_s: float = 120.0
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    file: str | None = None

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def search_dir(self) -> Path:
        """``<storage_path>/<name>``: Tune state, trial work dirs, teacher store."""
        return Path(self.storage_path) / self.name

    def objective(self) -> tuple[str | list[str], str | list[str]]:
        """(metric, mode) as Optuna / Tune want them: scalars for one objective."""
        if self.multi_objective:
            return list(self.metric), list(self.mode)
        return self.metric[0], self.mode[0]


def load_search(
    path: str | Path, overrides: Mapping[str, Any] | None = None, cwd: str | Path | None = None
) -> SearchConfig:
    """Read and validate the ``search:`` section of an experiment file.

    ``overrides`` maps ``search.<key>`` (or ``<key>``) to values, as from ``--set``; a nested
    key such as ``search.resources.cpu`` sets one entry of a mapping.
    """
    file = str(path)
    tree = read_yaml(path)
    section = tree.get("search")
    given = {key.removeprefix("search.") for key in overrides or {}}
    if section is None and "space" in given:
        section = {}  # a training experiment searched with --set search.space=... and defaults
    if section is None:
        raise ConfigError("search", None, "the experiment has no search: section; add one or "
                          "give at least --set search.space=<space file>", file)
    if not isinstance(section, Mapping):
        raise ConfigError("search", section, "must be a mapping of search keys", file)
    raw = _deep_copy(section)
    for key, value in (overrides or {}).items():
        _set_nested(raw, key.removeprefix("search.").split("."), value, "--set")
    return parse_search(raw, file=file, cwd=cwd)


def parse_search(
    raw: Mapping[str, Any], file: str | None = None, cwd: str | Path | None = None
) -> SearchConfig:
    """Validate a ``search:`` mapping into a :class:`SearchConfig`."""
    known = {f.name for f in fields(SearchConfig)} - {"file"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"search.{key}", raw[key], "unknown key; search has " + ", ".join(sorted(known)),
                file,
            )
    cwd = Path(cwd or os.getcwd())
    v = _Validator(file)
    if "space" not in raw:
        raise ConfigError("search.space", None, "required: the search-space file", file)
    space = v.space(raw["space"], cwd)
    metric, mode = v.objective(raw.get("metric", DEFAULT_METRIC), raw.get("mode", "max"))
    prune_metric = v.text("prune_metric", raw.get("prune_metric", metric[0]))
    sampler = v.choice("sampler", raw.get("sampler", "tpe"), SAMPLERS)
    if sampler == "nsga2" and len(metric) < 2:
        raise ConfigError(
            "search.sampler", sampler, "nsga2 is multi-objective: give metric and mode as "
            "lists, e.g. metric: [student/best_val_acc, student/gflops], mode: [max, min]", file,
        )
    name = v.name("name", raw.get("name", Path(file).stem if file else "search"))
    storage = v.text("storage_path", raw.get("storage_path", DEFAULT_STORAGE))
    if _URI.match(storage):
        raise ConfigError(
            "search.storage_path", storage, "must be a filesystem path (a shared mount on a "
            "cluster): trial work dirs and the teacher store live there", file,
        )
    storage = str((cwd / storage).resolve())
    budget = v.number("time_budget_s", raw.get("time_budget_s", 0) or 0, lo=0.0)
    config = SearchConfig(
        space=space,
        metric=metric,
        mode=mode,
        prune_metric=prune_metric,
        num_samples=v.integer("num_samples", raw.get("num_samples", 8), lo=1),
        max_concurrent_trials=v.integer(
            "max_concurrent_trials", raw.get("max_concurrent_trials", 2), lo=1
        ),
        resources=v.resources(raw.get("resources", {})),
        sampler=sampler,
        sampler_options=v.options("sampler_options", raw.get("sampler_options", {})),
        pruner=v.choice("pruner", raw.get("pruner", "median"), PRUNERS),
        pruner_options=v.options("pruner_options", raw.get("pruner_options", {})),
        scheduler=v.choice("scheduler", raw.get("scheduler", "optuna"), SCHEDULERS),
        scheduler_options=v.options("scheduler_options", raw.get("scheduler_options", {})),
        seed=v.integer("seed", raw.get("seed", 0), lo=0),
        name=name,
        storage_path=storage,
        tracking_uri=v.text("tracking_uri", raw.get("tracking_uri", ""), empty=True),
        experiment_name=v.text("experiment_name", raw.get("experiment_name", "sakdn")),
        study_storage=v.text("study_storage", raw.get("study_storage", ""), empty=True),
        study_name=v.text("study_name", raw.get("study_name", name)),
        teacher_store=v.text("teacher_store", raw.get("teacher_store", ""), empty=True),
        time_budget_s=budget,
        max_failures=v.integer("max_failures", raw.get("max_failures", 2), lo=0),
        keep_checkpoints=v.integer("keep_checkpoints", raw.get("keep_checkpoints", 2), lo=1),
        log_models=v.boolean("log_models", raw.get("log_models", True)),
        flush_timeout_s=v.number("flush_timeout_s", raw.get("flush_timeout_s", 120.0), lo=0.0),
        points_to_evaluate=v.points(raw.get("points_to_evaluate", [])),
        file=file,
    )
    return _with_defaults(config)


def _with_defaults(config: SearchConfig) -> SearchConfig:
    """Fill the storage-derived defaults: MLflow store, Optuna study, teacher store."""
    storage = Path(config.storage_path)
    tracking = (
        config.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI", "")
        or f"sqlite:///{storage / 'mlflow.db'}"
    )
    study = config.study_storage or f"sqlite:///{storage / 'optuna.db'}"
    store = config.teacher_store or str(config.search_dir / "teacher_store")
    if store != "none":
        store = str(Path(store).resolve())
    return replace(config, tracking_uri=tracking, study_storage=study, teacher_store=store)


def default_tracking_uri(storage_path: str | Path = DEFAULT_STORAGE) -> str:
    """The tracking URI a search uses when nothing names one (``MLFLOW_TRACKING_URI`` first)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    return env or f"sqlite:///{(Path(storage_path)).resolve() / 'mlflow.db'}"


class _Validator:
    """Type and range checks whose errors name ``search.<key>`` and the file."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    def fail(self, key: str, value: Any, problem: str) -> ConfigError:
        return ConfigError(f"search.{key}", value, problem, self.file)

    def text(self, key: str, value: Any, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(key, value, "must be a non-empty string" if not empty else
                            "must be a string")
        return value

    def name(self, key: str, value: Any) -> str:
        value = self.text(key, value)
        if not _NAME.match(value):
            raise self.fail(key, value, "use letters, digits, '_', '-' or '.' (it names a "
                                        "folder, an MLflow tag and an Optuna study)")
        return value

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, value, "must be one of " + ", ".join(choices))
        return value

    def integer(self, key: str, value: Any, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, "must be an integer")
        if value < lo:
            raise self.fail(key, value, f"must be >= {lo}")
        return value

    def number(self, key: str, value: Any, lo: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, value, "must be a number")
        if not math.isfinite(value) or value < lo:
            raise self.fail(key, value, f"must be a finite number >= {lo}")
        return float(value)

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false")
        return value

    def options(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise self.fail(key, value, "must map option names to values")
        return dict(value)

    def space(self, value: Any, cwd: Path) -> str:
        value = self.text("space", value)
        candidates = [cwd / value]
        if self.file:
            candidates.append(Path(self.file).resolve().parent / value)
        for path in candidates:
            if path.is_file():
                return str(path.resolve())
        where = " or ".join(str(c) for c in candidates)
        raise self.fail("space", value, f"no such file (looked for {where})")

    def objective(self, metric: Any, mode: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        metrics = metric if isinstance(metric, list) else [metric]
        modes = mode if isinstance(mode, list) else [mode] * len(metrics)
        if not metrics:
            raise self.fail("metric", metric, "names no metric")
        for m in metrics:
            self.text("metric", m)
        if len(set(metrics)) != len(metrics):
            raise self.fail("metric", metric, "names a metric twice")
        if len(modes) != len(metrics):
            raise self.fail("mode", mode, f"give one mode per metric ({len(metrics)})")
        for m in modes:
            self.choice("mode", m, MODES)
        return tuple(metrics), tuple(modes)

    def resources(self, value: Any) -> Resources:
        if not isinstance(value, Mapping):
            raise self.fail("resources", value, "must be a mapping such as {cpu: 1, gpu: 0.5}")
        for key in value:
            if key not in ("cpu", "gpu"):
                raise self.fail(f"resources.{key}", value[key], "unknown; use cpu and gpu")
        cpu = self.number("resources.cpu", value.get("cpu", 1), lo=0.0)
        gpu = self.number("resources.gpu", value.get("gpu", 0), lo=0.0)
        if cpu == 0 and gpu == 0:
            raise self.fail("resources", dict(value), "a trial needs some cpu or gpu")
        if gpu > 1 and not float(gpu).is_integer():
            raise self.fail("resources.gpu", gpu, "fractions are allowed below 1 GPU only "
                                                  "(0.25, 0.5, or a whole number)")
        return Resources(cpu=cpu, gpu=gpu)

    def points(self, value: Any) -> tuple[dict[str, Any], ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(p, Mapping) for p in value):
            raise self.fail("points_to_evaluate", value, "must be a list of {key: value} maps")
        return tuple(dict(p) for p in value)


def split_overrides(items: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """``--set`` items → (search overrides ``{key: value}``, the config items left as text).

    Values of ``search.*`` keys are read as YAML (``search.num_samples=3`` is an integer,
    ``search.metric=[a, b]`` a list).
    """
    search: dict[str, Any] = {}
    rest: list[str] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not key.startswith("search."):
            rest.append(item)
            continue
        if not sep:
            raise ConfigError(key, None, "expected key=value after --set", "--set")
        try:
            search[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(key, text, f"not a YAML value: {err}", "--set") from None
    return search, rest


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _set_nested(tree: dict[str, Any], parts: list[str], value: Any, file: str) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError("search." + ".".join(parts), value, f"{part} is not a mapping", file)
        node = child
    node[parts[-1]] = value
