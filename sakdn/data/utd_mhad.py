"""UTD-MHAD on disk → :class:`SampleIndex` (datasets.md §2).

Layout: ``Inertial/a{A}_s{S}_t{T}_inertial.mat`` (variable ``d_iner``, T×6: acceleration in g,
then angular rate in deg/s) and ``RGB/a{A}_s{S}_t{T}_color.avi`` (or the RGB-part1..4 folders
of the split download). One recording = one video + one inertial file; label = A − 1, in
the official action order. Protocols (registered with ``ADAPTER``): ``cross_subject``
(subjects 1, 3, 5, 7 train; 2, 4, 6, 8 test) and ``trial`` (trials 1–2 train, 3–4 test). The
synthetic dataset is written in the same layout and read by the same code
(``sakdn.data.synthetic``), with its own class names taken from ``classes.txt`` and any
number of subjects.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from sakdn.config import DataConfig
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.index import Sample, SampleIndex, natural_key
from sakdn.data.matfile import mat_defect, truncated_mat, unreadable_mat
from sakdn.data.pairing import Gaps, Layout, pair
from sakdn.data.problems import Problem, Scan, dataset_error, raise_blocking
from sakdn.data.sensors import SensorSignal
from sakdn.errors import DatasetError

UTD_CLASSES: tuple[str, ...] = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shoot",
    "right hand draw x",
    "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)",
    "draw triangle",
    "bowling (right hand)",
    "front boxing",
    "baseball swing from right",
    "tennis right hand forehand swing",
    "arm curl (two arms)",
    "tennis serve",
    "two hand push",
    "right hand knock on door",
    "right hand catch an object",
    "right hand pick up and throw",
    "jogging in place",
    "walking in place",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)

# Sensors of d_iner: "acc" = columns 0–2 (g), "gyro" = columns 3–5 (deg/s); both in one file.
SENSOR_NAMES: tuple[str, ...] = ("acc", "gyro")
_COLUMNS = {"acc": slice(0, 3), "gyro": slice(3, 6)}

FILE_RE = re.compile(r"a(\d+)_s(\d+)_t(\d+)_(inertial|depth|skeleton|color)\.(mat|avi)")
_RGB_DIR = re.compile(r"RGB(-part\d+)?")
UTD_SUBJECTS = 8


def load_inertial(path: str | Path) -> np.ndarray:
    """``d_iner`` of one inertial file as float64 (T, 6); a DatasetError naming the file if
    unusable."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise dataset_error(str(path), "missing_modality", "inertial file does not exist") from None
    except Exception as err:  # scipy raises ValueError, MatReadError, OSError, IndexError, …
        raise unreadable_mat(path, err) from None
    if "d_iner" not in mat:
        names = [k for k in mat if not k.startswith("__")]
        if not names and (defect := mat_defect(path)):  # e.g. a header and nothing after it
            raise truncated_mat(path, defect)
        raise dataset_error(
            str(path), "bad_mat", f"no variable 'd_iner' (found: {names or 'none'})"
        )
    data = mat["d_iner"]
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "iuf":
        raise dataset_error(str(path), "bad_mat", "d_iner is not a real numeric matrix")
    if data.ndim != 2 or data.shape[1] != 6 or data.shape[0] < 1:
        raise dataset_error(
            str(path), "bad_mat", f"d_iner has shape {data.shape}, expected (T, 6)"
        )
    return np.asarray(data, dtype=np.float64)


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names, one per non-empty line (surrounding spaces dropped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DatasetError(str(path), f"cannot read class names: {err.strerror}") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise DatasetError(str(path), "no class names in the file")
    return names


def _scan(folder: Path, modality: str, found: dict[tuple[int, int, int], Path],
          problems: list[Problem]) -> None:
    """Add the files of one modality in ``folder`` to ``found``, keyed by (A, S, T); a
    recording stored twice is an error naming its sample."""
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        m = FILE_RE.fullmatch(path.name)
        if m is None or m.group(4) != modality or not path.is_file():
            continue
        ident = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if ident in found:
            key = _key(ident)
            problems.append(Problem(
                "duplicate_recording", str(path),
                f"recording {key} also stored as {found[ident]}", "error", (key,),
            ))
            continue
        found[ident] = path


def _key(ident: tuple[int, int, int]) -> str:
    return "a{}_s{}_t{}".format(*ident)


def _gaps(layout: Layout) -> Gaps:
    """A UTD-MHAD video without its inertial file, or the reverse, is an error."""

    def no_sensor(recording: str, views: tuple[Sample, ...]) -> Problem:
        return Problem(
            "missing_modality", views[0].video,
            f"no inertial file for this video (expected Inertial/{recording}_inertial.mat)",
            "error", tuple(v.key for v in views),
        )

    def no_view(recording: str, file: str) -> Problem:
        return Problem(
            "missing_modality", file,
            f"no color video for this inertial file (expected RGB/{recording}_color.avi)",
        )

    def missing_file(view: Sample, sensor: str) -> str:  # both sensors share one file
        return str(layout.root / "Inertial" / f"{view.recording}_inertial.mat")

    return Gaps(no_sensor, missing_file, no_view)


def scan_utd(
    root: str | Path,
    class_names: tuple[str, ...] | list[str] | None = None,
    dataset: str = "utd_mhad",
    subjects: int | None = UTD_SUBJECTS,
) -> Scan:
    """Index a UTD-MHAD-layout root and list what is wrong with it, without raising.

    One sample per colour video, paired with the inertial file of its (A, S, T). A file
    without its partner (missing modality), an action code without a class name, a subject
    outside 1..``subjects`` (None: any) and a recording stored twice are ``error`` problems; a
    missing folder is ``fatal``. Recordings absent in every modality (UTD's three corrupt
    sequences) are simply not there.
    """
    names = tuple(class_names) if class_names is not None else UTD_CLASSES
    layout = Layout(dataset, Path(root).resolve(), names, SENSOR_NAMES)
    root = layout.root
    if not root.is_dir():
        return layout.fatal(root, "dataset root is not a directory")
    inertial_dir = root / "Inertial"
    if not inertial_dir.is_dir():
        return layout.fatal(root, "no Inertial/ folder (expected the UTD-MHAD layout)")
    rgb_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and _RGB_DIR.fullmatch(p.name)),
        key=lambda p: natural_key(p.name),
    )
    if not rgb_dirs:
        return layout.fatal(root, "no RGB/ (or RGB-part1..4/) folder of color videos")
    problems: list[Problem] = []
    inertial: dict[tuple[int, int, int], Path] = {}
    videos: dict[tuple[int, int, int], Path] = {}
    _scan(inertial_dir, "inertial", inertial, problems)
    for folder in rgb_dirs:
        _scan(folder, "color", videos, problems)

    views = []
    for ident in sorted(videos):
        a, s, t = ident
        if problem := _code_problem(ident, videos[ident], len(names), subjects):
            problems.append(problem)
            inertial.pop(ident, None)  # one problem per recording
            continue
        views.append(Sample(key=_key(ident), label=a - 1, subject=s, action=a, repetition=t,
                            video=str(videos[ident])))
    sensors = {_key(i): {name: str(path) for name in SENSOR_NAMES} for i, path in inertial.items()}
    samples, gaps = pair(layout, views, sensors, _gaps(layout), "skip")  # never partial
    return layout.finish(samples, problems + gaps, root,
                         "no recording has both a color video and an inertial file")


def _code_problem(ident: tuple[int, int, int], video: Path, actions: int,
                  subjects: int | None) -> Problem | None:
    a, s, _ = ident
    if not 1 <= a <= actions:
        return Problem("unknown_action", str(video),
                       f"action a{a} has no class name (actions are a1..a{actions})")
    if subjects is not None and not 1 <= s <= subjects:
        return Problem("unknown_subject", str(video),
                       f"subject s{s} is not one of s1..s{subjects}")
    return None


def read_utd(
    root: str | Path,
    class_names: tuple[str, ...] | list[str] | None = None,
    skip_unpaired: bool = False,
    dataset: str = "utd_mhad",
    subjects: int | None = UTD_SUBJECTS,
) -> SampleIndex:
    """The usable index of a UTD-MHAD-layout root; DatasetError listing every problem otherwise.

    ``skip_unpaired`` (``data.skip_bad_samples``) leaves the bad files out instead.
    """
    return raise_blocking(
        scan_utd(root, class_names, dataset, subjects), skip_unpaired, str(Path(root))
    )


def read_inertial_sensor(name: str, path: str) -> SensorSignal:
    """``acc`` (columns 0–2, g) or ``gyro`` (3–5, deg/s) of one inertial file."""
    if name not in _COLUMNS:
        raise DatasetError(path, f"unknown UTD-MHAD sensor {name!r}; expected acc or gyro")
    return SensorSignal(load_inertial(path)[:, _COLUMNS[name]])


def _scan_root(root: str, config: DataConfig) -> Scan:
    return scan_utd(root)


ADAPTER = DatasetAdapter(
    name="utd_mhad",
    scan=_scan_root,
    read_sensor=read_inertial_sensor,
    protocols={
        "cross_subject": lambda s: s.subject % 2 == 1,  # subjects 1,3,5,7 train; 2,4,6,8 test
        "trial": lambda s: s.repetition <= 2,  # "subject-specific": trials 1–2 train, 3–4 test
    },
    sensor_names=SENSOR_NAMES,
    class_names=UTD_CLASSES,
)
