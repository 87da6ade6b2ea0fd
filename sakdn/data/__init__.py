"""Datasets: ``data.dataset`` → its adapter (``sakdn.data.registry``) → a scan → the index.

An adapter indexes a dataset root in its official layout and lists every problem it finds
(``sakdn.data.problems``) instead of stopping at the first; :func:`load_index` turns the scan
into the usable index, or stops with the same report ``sakdn data check`` prints. The registry
(and with it every adapter's readers) is imported when a dataset is used, so that
``import sakdn.data.index`` stays light.
"""

from __future__ import annotations

import logging
from typing import Callable

from sakdn.config import DataConfig
from sakdn.data.index import SampleIndex
from sakdn.data.problems import Scan, left_out_summary, raise_blocking


def scan_dataset(config: DataConfig) -> Scan:
    """Everything ``config.dataset`` at ``config.root`` offers, with every problem found."""
    from sakdn.data.registry import get_adapter

    return get_adapter(config.dataset).scan(config.root, config)


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
