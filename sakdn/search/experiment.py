"""A search's settings made ready to run: the ``search:`` section with its paths and derived
defaults resolved.

The section itself — keys, defaults, validation, the flat form that YAML, ``--set`` and
``sakdn config`` share — is ``sakdn.config.SearchConfig``. What depends on where the search
starts is resolved here, once, before Ray starts: trials run in other processes (and other
directories), so every path becomes absolute.

- ``space`` is looked up relative to the working directory first, then relative to the
  experiment file;
- ``storage_path`` is relative to the working directory;
- empty values take their derived defaults: ``name`` the experiment file's stem,
  ``study_name`` the name, ``prune_metric`` the first metric, ``tracking_uri``
  ``MLFLOW_TRACKING_URI`` else ``sqlite:///<storage_path>/mlflow.db``, ``study_storage``
  ``sqlite:///<storage_path>/optuna.db``, ``teacher_store`` ``<storage_path>/<name>/
  teacher_store`` (``none`` keeps sharing off).

Errors are ``ConfigError``s naming ``search.<key>`` and where its value came from: the
experiment file or ``--set`` (:class:`Sources`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sakdn.config import ExperimentConfig, SearchConfig, load_experiment
from sakdn.errors import ConfigError
from sakdn.tracking import default_tracking_uri

SET = "--set"


@dataclass(frozen=True)
class Sources:
    """Where a search's settings came from, so that an error names the file or ``--set``."""

    file: str | None
    set_keys: frozenset[str] = frozenset()

    def of(self, key: str) -> str | None:
        """``--set`` when the value of ``key`` (or of its ``_options``) came from the
        command line, else the experiment file."""
        stem = ".".join(key.split(".")[:2]).removesuffix("_options")
        return SET if any(k.startswith(stem) for k in self.set_keys) else self.file


def load_search(
    path: str | Path, overrides: Mapping[str, Any] | None = None, cwd: str | Path | None = None
) -> SearchConfig:
    """The resolved ``search:`` section of an experiment file (see :func:`read_experiment`)."""
    return read_experiment(path, overrides, cwd)[1]


def read_experiment(
    path: str | Path, overrides: Mapping[str, Any] | None = None, cwd: str | Path | None = None
) -> tuple[ExperimentConfig, SearchConfig, Sources]:
    """An experiment file's training config and resolved ``search:`` section, with
    ``overrides`` (typed values, as from ``config.parse_overrides``) applied to both, and
    where each setting came from."""
    overrides = dict(overrides or {})
    config, section = load_experiment(path, overrides)
    if section is None:
        raise ConfigError("search", None, "the experiment has no search: section; add one or "
                          "give at least --set search.space=<space file>", str(path))
    sources = Sources(str(path), frozenset(overrides))
    return config, resolve(section, sources, cwd), sources


def resolve(
    section: SearchConfig, sources: Sources, cwd: str | Path | None = None
) -> SearchConfig:
    """The section ready to run: the space found, paths absolute, derived defaults filled."""
    cwd = Path(cwd or os.getcwd())
    space = _find_space(section.space, sources, cwd)
    storage = (cwd / section.storage_path).resolve()
    name = section.name or (Path(sources.file).stem if sources.file else "search")
    store = section.teacher_store or str(storage / name / "teacher_store")
    if store != "none":
        store = str((cwd / store).resolve())
    try:
        return dataclasses.replace(
            section,
            space=space,
            storage_path=str(storage),
            name=name,
            study_name=section.study_name or name,
            prune_metric=section.prune_metric or section.metrics[0],
            tracking_uri=section.tracking_uri or default_tracking_uri(storage),
            study_storage=section.study_storage or f"sqlite:///{storage / 'optuna.db'}",
            teacher_store=store,
        )
    except ConfigError as err:  # a derived value that does not validate (a file's stem)
        where = sources.of(err.key)
        raise (err.with_file(where) if where else err) from None


def _find_space(value: str, sources: Sources, cwd: Path) -> str:
    where = sources.of("search.space")
    if not value:
        raise ConfigError("search.space", None, "required: the search-space file", where)
    candidates = [cwd / value]
    if sources.file:
        candidates.append(Path(sources.file).resolve().parent / value)
    for path in candidates:
        if path.is_file():
            return str(path.resolve())
    looked = " or ".join(str(c) for c in candidates)
    raise ConfigError("search.space", value, f"no such file (looked for {looked})", where)
