"""Read one sensor's 3-axis signal from a dataset file: (time, 3) float64.

Each dataset stores its sensors differently (UTD-MHAD: one ``.mat`` holding accelerometer and
gyroscope columns; Berkeley-MHAD: one text file per Shimmer; MMAct: one CSV per sensor). A
reader per dataset maps (sensor name, file) to the signal, so the cache need not know formats.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sakdn.errors import DatasetError

SensorReader = Callable[[str, str], np.ndarray]
_READERS: dict[str, SensorReader] = {}
MEMBER_SEPARATOR = "::"  # "FILE::MEMBER": one recording inside a file that holds many


def source_file(path: str) -> str:
    """The file a sensor path lives in: ``FILE`` of ``FILE::MEMBER``, else the path itself."""
    return path.split(MEMBER_SEPARATOR, 1)[0]


def register_sensor_reader(dataset: str, reader: SensorReader) -> None:
    _READERS[dataset] = reader


def _inertial_columns(name: str, path: str) -> np.ndarray:
    from sakdn.data.utd_mhad import load_inertial

    columns = {"acc": slice(0, 3), "gyro": slice(3, 6)}
    if name not in columns:
        raise DatasetError(path, f"unknown UTD-MHAD sensor {name!r}; expected acc or gyro")
    return load_inertial(path)[:, columns[name]]


register_sensor_reader("utd_mhad", _inertial_columns)
register_sensor_reader("synthetic", _inertial_columns)


def order_by_time(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by timestamp (stable) with repeated timestamps dropped (the first kept).

    MMAct's CSVs hold small backward jumps and repeated timestamps (datasets.md §4.4); a
    signal must be a function of time before it becomes an image.
    """
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.ones(len(times), dtype=bool)
    keep[1:] = times[1:] != times[:-1]
    return times[keep], values[keep]


def load_sensor(dataset: str, name: str, path: str) -> np.ndarray:
    """The (time, 3) float64 signal of sensor ``name`` stored in ``path``."""
    if dataset not in _READERS:
        _import_adapter(dataset)
    reader = _READERS.get(dataset)
    if reader is None:
        raise DatasetError(path, f"no sensor reader for dataset {dataset!r}")
    signal = np.asarray(reader(name, path), dtype=np.float64)
    if signal.ndim != 2 or signal.shape[1] != 3:
        raise DatasetError(path, f"sensor {name!r} has shape {signal.shape}, expected (time, 3)")
    return signal


def _import_adapter(dataset: str) -> None:
    """Adapters register their readers on import (Berkeley-MHAD, MMAct, BasicMotions)."""
    import importlib

    try:
        importlib.import_module(f"sakdn.data.{dataset}")
    except ModuleNotFoundError:
        pass
