"""What the driver does to the data before any trial starts.

Trials run in other processes, in other working directories, maybe on other nodes: every
path in the experiment must be absolute. And no trial may decode a video or compute a GAF
image that another could share: the driver builds the preprocessing cache for every variant
the search space can produce (the cache key depends on ``gaf.method``, ``gaf.image_size``,
``gaf.channel_scaling``, ``data.frame_size`` and, through the frames kept per clip,
``student.segments``), so trials only read it.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Callable

from sakdn.config import ExperimentConfig
from sakdn.search.space import SearchSpace

logger = logging.getLogger(__name__)

# Keys whose value changes the preprocessing cache entry (sakdn.data.cache.PreprocessSpec).
PREPROCESSING_KEYS = (
    "gaf.method", "gaf.image_size", "gaf.channel_scaling", "data.frame_size", "student.segments",
)
MAX_VARIANTS = 24  # more than this and the driver builds only the experiment's own variant


def absolute_paths(config: ExperimentConfig, cwd: str | Path) -> ExperimentConfig:
    """The config with relative file paths resolved against ``cwd`` (the driver's)."""
    cwd = Path(cwd)
    flat = config.to_flat()
    changes: dict[str, str] = {}
    for key in ("data.root", "data.cache_dir", "train.output_dir"):
        value = flat[key]
        if value and not Path(value).is_absolute():
            changes[key] = str((cwd / value).resolve())
    root = Path(changes.get("data.root", flat["data.root"]))
    for key in ("teacher.weights", "student.weights", "semantics.path"):
        value = flat[key]
        if not value or Path(value).is_absolute():
            continue
        if key == "semantics.path" and (root / value).exists():
            continue  # looked up under the (now absolute) dataset root first
        if (cwd / value).exists():
            changes[key] = str((cwd / value).resolve())
    return config.replace(changes) if changes else config


def variants(config: ExperimentConfig, space: SearchSpace) -> list[ExperimentConfig]:
    """One config per distinct preprocessing the space can produce (the experiment's first).

    Conditional keys count with all their values (a superset is harmless). A key sampled
    from a continuous range cannot be enumerated: then only the experiment's own variant is
    returned and trials build the others on first use.
    """
    from sakdn.data.cache import PreprocessSpec

    choices: dict[str, list] = {}
    for key in PREPROCESSING_KEYS:
        if key not in space:
            continue
        values = _values(space[key])
        if values is None:
            logger.warning("%s is sampled from a range: its preprocessing cannot be built "
                           "ahead; trials build it on first use", key)
            return [config]
        choices[key] = values
    configs = [config]
    seen = {PreprocessSpec.from_config(config)}
    keys = list(choices)
    combos = list(itertools.product(*(choices[k] for k in keys)))
    if len(combos) > MAX_VARIANTS:
        logger.warning("the space has %d preprocessing variants; building only the "
                       "experiment's own ahead", len(combos))
        return configs
    for combo in combos:
        candidate = config.replace(dict(zip(keys, combo)))
        spec = PreprocessSpec.from_config(candidate)
        if spec not in seen:
            seen.add(spec)
            configs.append(candidate)
    return configs


def _values(param) -> list | None:
    if param.kind in ("choice", "fixed"):
        return list(param.choices)
    if param.kind == "int" and not param.log:
        step = param.step or 1
        values = list(range(int(param.low), int(param.high) + 1, int(step)))
        return values if len(values) <= MAX_VARIANTS else None
    return None


def build_caches(
    config: ExperimentConfig, space: SearchSpace, log: Callable[[str], None] = print
) -> list[str]:
    """Build (or find) the preprocessing cache of every variant; returns their paths."""
    from sakdn.train.data import build_data

    paths = []
    for variant in variants(config, space):
        bundle = build_data(variant, log=log)
        paths.append(str(bundle.data.path))
    return paths
