"""Dataset adapters: ``data.dataset`` name → function(root, config) → :class:`Scan`.

An adapter indexes a dataset root in its official layout and lists every problem it finds
(``sakdn.data.problems``) instead of stopping at the first; :func:`load_index` turns the scan
into the usable index, or stops with the same report ``sakdn data check`` prints. Adapters
import their readers lazily so that ``import sakdn.data.index`` stays light; each adapter
module registers its sensor reader (``sakdn.data.sensors``) and any own protocol on import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from sakdn.config import DataConfig
from sakdn.data.index import SampleIndex
from sakdn.data.problems import Scan, left_out_summary, raise_blocking
from sakdn.errors import ConfigError

Adapter = Callable[[str, DataConfig], Scan]


def _utd_mhad(root: str, config: DataConfig) -> Scan:
    from sakdn.data.utd_mhad import scan_utd

    return scan_utd(root)


def _synthetic(root: str, config: DataConfig) -> Scan:
    """The synthetic dataset, written on first use (seed 0) when ``root`` does not exist yet."""
    from sakdn.data.synthetic import ensure_synthetic
    from sakdn.data.utd_mhad import read_class_names, scan_utd

    # An existing dataset (any generator parameters, e.g. a small one written by
    # `sakdn data synth`) is read as it is; a missing one is written with the defaults.
    meta = Path(root) / "generator.json"
    if not meta.exists():
        path = ensure_synthetic(root)
    else:
        import json

        from sakdn.data.synthetic import VERSION
        from sakdn.errors import DatasetError

        found = json.loads(meta.read_text()).get("version")
        if found != VERSION:
            raise DatasetError(str(root), f"synthetic dataset written by generator version "
                               f"{found}, this is version {VERSION}; delete the folder to "
                               "write it anew")
        path = Path(root)
    names = read_class_names(Path(path) / "classes.txt")
    return scan_utd(path, class_names=names, dataset="synthetic", subjects=None)


def _berkeley_mhad(root: str, config: DataConfig) -> Scan:
    from sakdn.data.berkeley_mhad import scan_berkeley

    return scan_berkeley(root, config)


def _mmact(root: str, config: DataConfig) -> Scan:
    from sakdn.data.mmact import scan_mmact

    return scan_mmact(root, config)


def _basic_motions(root: str, config: DataConfig) -> Scan:
    from sakdn.data.basic_motions import scan_basic_motions

    return scan_basic_motions(root, config)


ADAPTERS: dict[str, Adapter] = {
    "utd_mhad": _utd_mhad,
    "synthetic": _synthetic,
    "berkeley_mhad": _berkeley_mhad,
    "mmact": _mmact,
    "basic_motions": _basic_motions,
}


def get_adapter(name: str) -> Adapter:
    """The adapter for a dataset name; ConfigError listing the registered ones otherwise."""
    if name not in ADAPTERS:
        raise ConfigError("data.dataset", name, "no adapter; choices: " + ", ".join(ADAPTERS))
    return ADAPTERS[name]


def scan_dataset(config: DataConfig) -> Scan:
    """Everything ``config.dataset`` at ``config.root`` offers, with every problem found."""
    return get_adapter(config.dataset)(config.root, config)


def load_index(config: DataConfig, log: Callable[[str], None] | None = None) -> SampleIndex:
    """The usable index: DatasetError listing every blocking problem (the check that runs
    before training), the samples of bad files left out when ``data.skip_bad_samples``.

    What is left out (bad files, the missing-sensor policy) is counted through ``log``
    (default: a ``logging`` warning), never dropped silently.
    """
    scan = scan_dataset(config)
    index = raise_blocking(scan, config.skip_bad_samples, config.root)
    if summary := left_out_summary(scan):
        (log or logging.getLogger(__name__).warning)(f"{config.dataset}: {summary}")
    return index
