"""What the driver does to the data before any trial starts.

Trials run in other processes, in other working directories, maybe on other nodes: every
path in the experiment must be absolute. And no trial may decode a video or compute a GAF
image that another could share: the driver builds the preprocessing cache for every variant
the search space can produce (the cache key depends on ``gaf.method``, ``gaf.image_size``,
``gaf.channel_scaling``, ``data.frame_size`` and, through the frames kept per clip,
``student.segments``), so trials only read it. Likewise every weights file a trial can load is
resolved and verified here (:func:`check_weights`): trials never download.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Callable

from sakdn.config import ExperimentConfig
from sakdn.models.weights import configured, default_dir, is_torchvision, verify
from sakdn.search.space import SearchSpace

logger = logging.getLogger(__name__)

# Keys whose value changes the preprocessing cache entry (sakdn.data.cache.PreprocessSpec).
PREPROCESSING_KEYS = (
    "gaf.method", "gaf.image_size", "gaf.channel_scaling", "data.frame_size", "student.segments",
)
MAX_VARIANTS = 24  # more than this and the driver builds only the experiment's own variant
# Keys that decide which weights file a trial loads.
WEIGHTS_KEYS = ("teacher.backbone", "teacher.weights", "student.backbone", "student.weights")


def absolute_paths(config: ExperimentConfig, cwd: str | Path) -> ExperimentConfig:
    """The config with relative file paths resolved against ``cwd`` (the driver's)."""
    cwd = Path(cwd)
    flat = config.to_flat()
    changes: dict[str, str] = {}
    for key in ("data.root", "data.cache_dir", "train.output_dir", "train.weights_dir"):
        value = flat[key]
        if value and not Path(value).is_absolute():
            changes[key] = str((cwd / value).resolve())
    root = Path(changes.get("data.root", flat["data.root"]))
    for key in ("teacher.weights", "student.weights", "semantics.path"):
        value = flat[key]
        if not value or Path(value).is_absolute() or (key != "semantics.path" and
                                                       is_torchvision(value)):
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


def check_weights(
    config: ExperimentConfig, space: SearchSpace, log: Callable[[str], None] = print
) -> ExperimentConfig:
    """Resolve and verify every weights file a trial of the search can load, before any starts.

    Every combination of the backbone and weights values the space can sample is checked
    (conditions ignored: a superset). A missing or corrupt file raises one ``ConfigError``
    naming the key, the backbone, the file and the fetch command. When torchvision weights
    are used and ``train.weights_dir`` is empty, it is set to the directory checked here
    (torch's cache of this process), so that trials read exactly that directory.

    Returns:
        The config, with ``train.weights_dir`` filled in when it was needed.
    """
    combos = _weights_variants(config, space)
    needs_dir = any(r.from_torchvision for c in combos for r in configured(c))
    if needs_dir and not config.train.weights_dir:
        config = config.replace({"train.weights_dir": str(default_dir())})
        combos = _weights_variants(config, space)
    seen: set[tuple[str, str, str]] = set()
    for candidate in combos:
        for resolved in configured(candidate):
            if (resolved.key, resolved.backbone, str(resolved.path)) in seen:
                continue
            seen.add((resolved.key, resolved.backbone, str(resolved.path)))
            verify(resolved)
            log(f"{resolved.key}: {resolved.describe()} (verified)")
    return config


def _weights_variants(config: ExperimentConfig, space: SearchSpace) -> list[ExperimentConfig]:
    choices = {key: _values(space[key]) or [] for key in WEIGHTS_KEYS if key in space}
    keys = list(choices)
    return [config] + [
        config.replace(dict(zip(keys, combo)))
        for combo in itertools.product(*(choices[k] for k in keys))
    ]
