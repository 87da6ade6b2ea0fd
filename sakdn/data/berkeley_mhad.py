"""Berkeley-MHAD on disk → paired samples (datasets.md §3).

Layout (as released)::

    Accelerometer/Shimmer{HH}/acc_h{HH}_s{SS}_a{AA}_r{RR}.txt          HH = 01..06
    Camera/Cluster{LL}/Cam{CC}/S{SS}/A{AA}/R{RR}/img_l{LL}_c{CC}_s{SS}_a{AA}_r{RR}_{FFFFF}.pgm

A recording (subject, action, repetition) has six accelerometer files and up to 12 camera views
(clusters 1–2 with four cameras, 3–4 with two); every view is one sample (a frame folder of raw
GRBG Bayer PGMs, demosaiced when cached) and all views share the recording's six sensor images.
Label = AA − 1. Protocol ``cross_subject``: subjects 1–7 train, 8–12 test (``sakdn.data.index``).

Accelerometer text: ``ax ay az t`` per line (g, then Unix seconds), ~30 Hz, irregular; rows are
ordered by time before use. Missing files: a recording with some Shimmers absent follows
``data.missing_sensor`` (skip the views, or zero-fill and mask those teachers); the views of a
recording with none are skipped under either policy (the release lacks S02 A07 R05's
accelerometer files), and counted in the check report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sakdn.config import DataConfig
from sakdn.data.index import Sample, SampleIndex
from sakdn.data.problems import Problem, Scan, dataset_error, missing_sensor_problem
from sakdn.data.sensors import order_by_time, register_sensor_reader

BERKELEY_CLASSES: tuple[str, ...] = (
    "jumping in place",
    "jumping jacks",
    "bending (hands up all the way down)",
    "punching (boxing)",
    "waving two hands",
    "waving one hand (right)",
    "clapping hands",
    "throwing a ball",
    "sit down then stand up",
    "sit down",
    "stand up",
)
SHIMMERS = 6
SENSOR_NAMES: tuple[str, ...] = tuple(f"shimmer{h:02d}" for h in range(1, SHIMMERS + 1))
SUBJECTS, REPETITIONS = 12, 5
CLUSTER_CAMERAS = {1: 4, 2: 4, 3: 2, 4: 2}  # cameras per cluster → views 1–4, 5–8, 9–10, 11–12
_VIEW_OFFSET = {1: 0, 2: 4, 3: 8, 4: 10}

ACC_RE = re.compile(r"acc_h(\d+)_s(\d+)_a(\d+)_r(\d+)\.txt")
_SHIMMER_DIR = re.compile(r"Shimmer(\d+)")
_CODE_DIRS = (re.compile(r"Cluster(\d+)"), re.compile(r"Cam(\d+)"), re.compile(r"S(\d+)"),
              re.compile(r"A(\d+)"), re.compile(r"R(\d+)"))

Rec = tuple[int, int, int]  # (subject, action, repetition)


def read_shimmer(path: str | Path) -> np.ndarray:
    """One accelerometer file → (T, 3) float64 in g, rows ordered by their timestamps.

    Float64 throughout: the time column is Unix seconds (~1.3e9), where float32 steps by 128 s.
    """
    path = str(path)
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise dataset_error(path, "unreadable_file", f"unreadable accelerometer file ({err})")
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise dataset_error(path, "empty_file", "accelerometer file holds no rows")
    for n, fields in rows:
        if len(fields) != 4:
            raise dataset_error(
                path, "bad_columns", f"line {n} has {len(fields)} fields, expected 4 (ax ay az t)"
            )
    try:
        table = np.array([fields for _, fields in rows], dtype=np.float64)  # (T, 4)
    except ValueError as err:
        raise dataset_error(path, "bad_columns", f"a field is not a number ({err})") from None
    bad_time = ~np.isfinite(table[:, 3])
    if bad_time.any():
        i = int(np.argmax(bad_time))
        raise dataset_error(path, "bad_timestamps", f"line {rows[i][0]}: timestamp {table[i, 3]}")
    _, values = order_by_time(table[:, 3], table[:, :3])
    return values


def _shimmer_signal(name: str, path: str) -> np.ndarray:
    if name not in SENSOR_NAMES:
        raise dataset_error(path, "unknown_code", f"unknown Berkeley-MHAD sensor {name!r}")
    return read_shimmer(path)


register_sensor_reader("berkeley_mhad", _shimmer_signal)


def _subdirs(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.is_dir() and (m := pattern.fullmatch(p.name))]
    return sorted(found)


def _code_problem(rec: Rec, path: Path) -> Problem | None:
    s, a, r = rec
    if not 1 <= a <= len(BERKELEY_CLASSES):
        return Problem("unknown_action", str(path), f"action {a:02d} is not one of 01..11")
    if not 1 <= s <= SUBJECTS:
        return Problem("unknown_subject", str(path), f"subject {s:02d} is not one of 01..12")
    if not 1 <= r <= REPETITIONS:
        return Problem("unknown_code", str(path), f"repetition {r:02d} is not one of 01..05")
    return None


def _scan_sensors(folder: Path, problems: list[Problem]) -> dict[Rec, dict[str, str]]:
    sensors: dict[Rec, dict[str, str]] = {}
    for h, shimmer_dir in _subdirs(folder, _SHIMMER_DIR):
        if not 1 <= h <= SHIMMERS:
            problems.append(Problem("unknown_code", str(shimmer_dir),
                                    f"Shimmer{h:02d} is not one of Shimmer01..06", "warning"))
            continue
        for path in sorted(shimmer_dir.iterdir()):
            m = ACC_RE.fullmatch(path.name)
            if m is None or not path.is_file():
                continue
            if int(m.group(1)) != h:
                problems.append(Problem(
                    "unknown_code", str(path),
                    f"file of Shimmer{int(m.group(1)):02d} in {shimmer_dir.name}"))
                continue
            rec = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
            if problem := _code_problem(rec, path):
                problems.append(problem)
                continue
            if path.stat().st_size == 0:
                problems.append(Problem("empty_file", str(path),
                                        "empty accelerometer file; treated as missing", "warning"))
                continue
            sensors.setdefault(rec, {})[SENSOR_NAMES[h - 1]] = str(path)
    return sensors


def _scan_cameras(folder: Path, problems: list[Problem]) -> dict[tuple[int, int, Rec], Path]:
    """(cluster, camera, recording) → frame folder; frames are listed only when read."""
    views: dict[tuple[int, int, Rec], Path] = {}
    for l, cluster_dir in _subdirs(folder, _CODE_DIRS[0]):
        if l not in CLUSTER_CAMERAS:
            problems.append(Problem("unknown_code", str(cluster_dir),
                                    f"Cluster{l:02d} is not one of Cluster01..04"))
            continue
        for c, cam_dir in _subdirs(cluster_dir, _CODE_DIRS[1]):
            if not 1 <= c <= CLUSTER_CAMERAS[l]:
                problems.append(Problem(
                    "unknown_code", str(cam_dir),
                    f"Cluster{l:02d} has cameras Cam01..{CLUSTER_CAMERAS[l]:02d}"))
                continue
            for s, s_dir in _subdirs(cam_dir, _CODE_DIRS[2]):
                for a, a_dir in _subdirs(s_dir, _CODE_DIRS[3]):
                    for r, r_dir in _subdirs(a_dir, _CODE_DIRS[4]):
                        if problem := _code_problem((s, a, r), r_dir):
                            problems.append(problem)
                            continue
                        views[(l, c, (s, a, r))] = r_dir
    return views


def _rec_name(rec: Rec) -> str:
    return "s{:02d}_a{:02d}_r{:02d}".format(*rec)


def scan_berkeley(root: str | Path, config: DataConfig) -> Scan:
    """Index a Berkeley-MHAD root: one sample per camera view, paired with its Shimmers."""
    root = Path(root).resolve()
    empty = SampleIndex("berkeley_mhad", str(root), BERKELEY_CLASSES, SENSOR_NAMES, ())
    for sub in ("Accelerometer", "Camera"):
        if not (root / sub).is_dir():
            why = "dataset root is not a directory" if not root.is_dir() else f"no {sub}/ folder"
            return Scan(empty, (Problem("layout", str(root), why, "fatal"),))
    problems: list[Problem] = []
    sensors = _scan_sensors(root / "Accelerometer", problems)
    views = _scan_cameras(root / "Camera", problems)

    by_rec: dict[Rec, list[str]] = {}
    samples: list[Sample] = []
    for (l, c, rec), folder in sorted(views.items()):
        key = f"{_rec_name(rec)}_l{l:02d}_c{c:02d}"
        by_rec.setdefault(rec, []).append(key)
        present = sensors.get(rec, {})
        samples.append(Sample(
            key=key, label=rec[1] - 1, subject=rec[0], action=rec[1], repetition=rec[2],
            view=_VIEW_OFFSET[l] + c, video=str(folder),
            sensors=tuple((n, present[n]) for n in SENSOR_NAMES if n in present),
            recording=_rec_name(rec),
        ))
    for rec, keys in by_rec.items():
        present = sensors.get(rec, {})
        s, a, r = rec
        if not present:
            problems.append(Problem(
                "missing_modality", str(root / "Accelerometer"),
                f"no accelerometer file for recording {_rec_name(rec)} (expected "
                f"Shimmer01..06/acc_hHH_s{s:02d}_a{a:02d}_r{r:02d}.txt); "
                f"its {len(keys)} camera view(s) skipped", "skipped", tuple(keys),
            ))
        elif len(present) < SHIMMERS:
            missing = [n for n in SENSOR_NAMES if n not in present]
            h = int(missing[0][-2:])
            path = (root / "Accelerometer" / f"Shimmer{h:02d}"
                    / f"acc_h{h:02d}_s{s:02d}_a{a:02d}_r{r:02d}.txt")
            problems.append(missing_sensor_problem(
                str(path), _rec_name(rec), missing, keys, config.missing_sensor
            ))
    for rec in sorted(sensors.keys() - by_rec.keys()):
        first = next(iter(sensors[rec].values()))
        problems.append(Problem(
            "missing_modality", first,
            f"recording {_rec_name(rec)} has accelerometer files but no camera view; not used",
            "warning",
        ))
    index = SampleIndex("berkeley_mhad", str(root), BERKELEY_CLASSES, SENSOR_NAMES, tuple(samples))
    if not samples:
        problems.append(Problem("layout", str(root / "Camera"), "no camera view found", "fatal"))
    return Scan(index, tuple(problems))
