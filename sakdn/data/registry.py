"""The dataset registry: ``data.dataset`` name → :class:`DatasetAdapter`, each listed once here.

To add a dataset, write its module with an ``ADAPTER`` (``docs/architecture.md``, "How to
extend") and list it below; ``config.DATASETS``, which validates ``data.dataset`` without
importing this layer, is kept in step by ``tests/data/test_registry.py``. Importing this
module imports every adapter (numpy, scipy.io); ``sakdn.data`` and ``sakdn.data.index`` stay
light by importing it only when a dataset is used.
"""

from __future__ import annotations

import numpy as np

from sakdn.data import basic_motions, berkeley_mhad, mmact, synthetic, utd_mhad
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.sensors import SensorSignal
from sakdn.errors import ConfigError

ADAPTERS: dict[str, DatasetAdapter] = {
    adapter.name: adapter
    for adapter in (
        synthetic.ADAPTER,
        utd_mhad.ADAPTER,
        berkeley_mhad.ADAPTER,
        mmact.ADAPTER,
        basic_motions.ADAPTER,
    )
}


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter of a dataset name; ConfigError listing the registered ones otherwise."""
    if name not in ADAPTERS:
        raise ConfigError("data.dataset", name, "no adapter; choices: " + ", ".join(ADAPTERS))
    return ADAPTERS[name]


def protocols(dataset: str) -> tuple[str, ...]:
    """The ``data.protocol`` names of ``dataset``."""
    return tuple(get_adapter(dataset).protocols)


def read_sensor(dataset: str, name: str, path: str) -> SensorSignal:
    """Sensor ``name`` of ``path`` in ``dataset``'s format, in time order (the check's and the
    cache's one way of reading a sensor file)."""
    return get_adapter(dataset).read(name, path)


def load_sensor(dataset: str, name: str, path: str) -> np.ndarray:
    """The (time, 3) float64 values of :func:`read_sensor`."""
    return read_sensor(dataset, name, path).values
