"""A dataset as the library knows it: one frozen :class:`DatasetAdapter` registration.

Everything dataset-specific — how a root is indexed, how a sensor file is read, the official
split protocols, the sensor and class names — is one value that the dataset's module defines
(``ADAPTER``) and ``sakdn.data.registry`` lists once; nothing else registers a dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from sakdn.config import DataConfig
from sakdn.data.index import Sample
from sakdn.data.problems import Scan
from sakdn.data.sensors import SensorSignal
from sakdn.errors import ConfigError

Scanner = Callable[[str, DataConfig], Scan]  # (root, data config) → index + problems
SensorReader = Callable[[str, str], SensorSignal]  # (sensor name, file) → signal
TrainRule = Callable[[Sample], bool]  # is this sample on the training side of a protocol?

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class DatasetAdapter:
    """One dataset: its ``data.dataset`` name and everything the library needs to use it.

    ``class_names`` is the official label order, or empty when the dataset's own files name
    the classes (the synthetic dataset's ``classes.txt``, BasicMotions' ARFF header); the scan
    then fills them in. ``protocols`` maps a ``data.protocol`` name to its training-side rule.
    """

    name: str
    scan: Scanner
    read_sensor: SensorReader
    protocols: Mapping[str, TrainRule]
    sensor_names: tuple[str, ...]
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"dataset name {self.name!r}: lower-case letters, digits and _")
        if not self.protocols:
            raise ValueError(f"dataset {self.name}: no split protocol")
        if not self.sensor_names:
            raise ValueError(f"dataset {self.name}: no sensor")
        for what, names in (("sensor", self.sensor_names), ("class", self.class_names)):
            if len(set(names)) != len(names):
                raise ValueError(f"dataset {self.name}: a {what} name occurs twice")
        object.__setattr__(self, "protocols", MappingProxyType(dict(self.protocols)))

    def rule(self, protocol: str) -> TrainRule:
        """The training-side rule of ``protocol``; ConfigError listing the known ones."""
        if protocol not in self.protocols:
            raise ConfigError("data.protocol", protocol, f"unknown protocol for {self.name}; "
                              f"known: {', '.join(self.protocols)}")
        return self.protocols[protocol]

    def read(self, sensor: str, path: str) -> SensorSignal:
        """Sensor ``sensor`` of ``path`` as a (T, 3) float64 signal; DatasetError naming the
        file when it cannot be read or has another shape."""
        return self.read_sensor(sensor, path).check_shape(path, sensor)
