"""One sensor's 3-axis signal as a dataset file gives it: :class:`SensorSignal`.

Each dataset stores its sensors differently (UTD-MHAD: one ``.mat`` holding accelerometer and
gyroscope columns; Berkeley-MHAD: one text file per Shimmer; MMAct: one CSV per sensor). The
dataset's adapter (``sakdn.data.adapter``) reads (sensor name, file) into this one shape, so
the checks and the cache need not know formats.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from sakdn.errors import DatasetError

if TYPE_CHECKING:
    from sakdn.data.rows import Timing

MEMBER_SEPARATOR = "::"  # "FILE::MEMBER": one recording inside a file that holds many


def source_file(path: str) -> str:
    """The file a sensor path lives in: ``FILE`` of ``FILE::MEMBER``, else the path itself."""
    return path.split(MEMBER_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class SensorSignal:
    """A (T, 3) float64 signal in time order, ready for the GAF.

    ``times`` (T,) seconds and ``timing`` (what ordering the rows as stored took) exist only
    for files that carry timestamps (Berkeley-MHAD, MMAct); UTD-MHAD and BasicMotions store
    evenly sampled rows without them.
    """

    values: np.ndarray
    times: np.ndarray | None = None
    timing: Timing | None = None

    def check_shape(self, path: str, sensor: str) -> SensorSignal:
        """Itself as float64; DatasetError naming the file unless it is (T, 3)."""
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != 3:
            raise DatasetError(
                path, f"sensor {sensor!r} has shape {values.shape}, expected (time, 3)"
            )
        return replace(self, values=values)
