"""Berkeley-MHAD on disk → paired samples (datasets.md §3).

Layout (as released)::

    Accelerometer/Shimmer{HH}/acc_h{HH}_s{SS}_a{AA}_r{RR}.txt          HH = 01..06
    Camera/Cluster{LL}/Cam{CC}/S{SS}/A{AA}/R{RR}/img_l{LL}_c{CC}_s{SS}_a{AA}_r{RR}_{FFFFF}.pgm

A recording (subject, action, repetition) has six accelerometer files and up to 12 camera views
(clusters 1–2 with four cameras, 3–4 with two); every view is one sample (a frame folder of raw
GRBG Bayer PGMs, demosaiced when cached) and all views share the recording's six sensor images.
Label = AA − 1. Protocol ``cross_subject``: subjects 1–7 train, 8–12 test.

Accelerometer text: ``ax ay az t`` per line (g, then Unix seconds, 6 decimals), ~30 Hz,
irregular, strictly increasing times, a newline after every line. Rows are ordered by time
before use (``sakdn.data.rows``: out-of-order and repeated rows are counted, a cut-off last
line or a row outside the recording's span is an error). Missing files: a recording with some
Shimmers absent follows ``data.missing_sensor`` (skip the views, or zero-fill and mask those
teachers); the views of a recording with none are skipped under either policy (the release
lacks S02 A07 R05's accelerometer files), and counted in the check report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sakdn.config import DataConfig
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.index import Sample
from sakdn.data.pairing import Gaps, Layout, pair
from sakdn.data.problems import Problem, Scan, dataset_error
from sakdn.data.rows import cut_off, decimals, order_rows, read_lines
from sakdn.data.sensors import SensorSignal

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


def read_shimmer(path: str | Path) -> SensorSignal:
    """One accelerometer file → (T, 3) float64 in g, rows ordered by their timestamps.

    Float64 throughout: the time column is Unix seconds (~1.3e9), where float32 steps by 128 s.
    """
    path = str(path)
    lines, terminated = read_lines(path, "ascii", "accelerometer file")
    if not lines:
        raise dataset_error(path, "empty_file", "accelerometer file holds no rows")
    if not terminated:
        _check_last_line(path, lines)
    for n, line in lines:
        if len(fields := line.split()) != 4:
            raise dataset_error(
                path, "bad_columns", f"line {n} has {len(fields)} fields, expected 4 (ax ay az t)"
            )
    try:
        table = np.array([line.split() for _, line in lines], dtype=np.float64)  # (T, 4)
    except ValueError as err:
        raise dataset_error(path, "bad_columns", f"a field is not a number ({err})") from None
    bad_time = ~np.isfinite(table[:, 3])
    if bad_time.any():
        i = int(np.argmax(bad_time))
        raise dataset_error(path, "bad_timestamps", f"line {lines[i][0]}: timestamp {table[i, 3]}")
    numbers = np.array([n for n, _ in lines])
    return order_rows(table[:, 3], table[:, :3], numbers, path)


def _check_last_line(path: str, lines: list[tuple[int, str]]) -> None:
    """A last line without newline must be a whole row: four numbers with as many decimals as
    the line before (the release prints every field with six)."""
    n, line = lines[-1]
    fields = line.split()
    if len(fields) != 4:
        raise cut_off(path, n, line, f"{len(fields)} of 4 fields")
    try:
        [float(f) for f in fields]
    except ValueError:
        raise cut_off(path, n, line, "a field is not a number") from None
    if len(lines) > 1 and len(before := lines[-2][1].split()) == 4:
        for name, field, prior in zip(("ax", "ay", "az", "t"), fields, before):
            if decimals(field) != decimals(prior):
                raise cut_off(path, n, line, f"{name} {field} has {decimals(field)} decimals, "
                              f"the line before {decimals(prior)}")


def _shimmer_signal(name: str, path: str) -> SensorSignal:
    if name not in SENSOR_NAMES:
        raise dataset_error(path, "unknown_code", f"unknown Berkeley-MHAD sensor {name!r}")
    return read_shimmer(path)


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


def _scan_sensors(folder: Path, problems: list[Problem]) -> dict[str, dict[str, str]]:
    """Recording name → {sensor: file} of the non-empty accelerometer files."""
    sensors: dict[str, dict[str, str]] = {}
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
            sensors.setdefault(_rec_name(rec), {})[SENSOR_NAMES[h - 1]] = str(path)
    return sensors


def _scan_cameras(folder: Path, problems: list[Problem]) -> dict[tuple[int, int, Rec], Path]:
    """(cluster, camera, recording) → frame folder; frames are listed only when read."""
    views: dict[tuple[int, int, Rec], Path] = {}
    for cluster, cluster_dir in _subdirs(folder, _CODE_DIRS[0]):
        if cluster not in CLUSTER_CAMERAS:
            problems.append(Problem("unknown_code", str(cluster_dir),
                                    f"Cluster{cluster:02d} is not one of Cluster01..04"))
            continue
        for c, cam_dir in _subdirs(cluster_dir, _CODE_DIRS[1]):
            if not 1 <= c <= CLUSTER_CAMERAS[cluster]:
                problems.append(Problem(
                    "unknown_code", str(cam_dir),
                    f"Cluster{cluster:02d} has cameras Cam01..{CLUSTER_CAMERAS[cluster]:02d}"))
                continue
            for s, s_dir in _subdirs(cam_dir, _CODE_DIRS[2]):
                for a, a_dir in _subdirs(s_dir, _CODE_DIRS[3]):
                    for r, r_dir in _subdirs(a_dir, _CODE_DIRS[4]):
                        if problem := _code_problem((s, a, r), r_dir):
                            problems.append(problem)
                            continue
                        views[(cluster, c, (s, a, r))] = r_dir
    return views


def _rec_name(rec: Rec) -> str:
    return "s{:02d}_a{:02d}_r{:02d}".format(*rec)


def _gaps(root: Path) -> Gaps:
    """A view without any accelerometer file is skipped (the release lacks S02 A07 R05's);
    accelerometer files without a view are not used."""

    def no_sensor(recording: str, views: tuple[Sample, ...]) -> Problem:
        s, a, r = views[0].subject, views[0].action, views[0].repetition
        return Problem(
            "missing_modality", str(root / "Accelerometer"),
            f"no accelerometer file for recording {recording} (expected "
            f"Shimmer01..06/acc_hHH_s{s:02d}_a{a:02d}_r{r:02d}.txt); "
            f"its {len(views)} camera view(s) skipped", "skipped", tuple(v.key for v in views),
        )

    def missing_file(view: Sample, sensor: str) -> str:
        h = int(sensor[-2:])
        return str(root / "Accelerometer" / f"Shimmer{h:02d}"
                   / f"acc_h{h:02d}_{view.recording}.txt")

    def no_view(recording: str, file: str) -> Problem:
        return Problem("missing_modality", file, f"recording {recording} has accelerometer "
                       "files but no camera view; not used", "warning")

    return Gaps(no_sensor, missing_file, no_view)


def scan_berkeley(root: str | Path, config: DataConfig) -> Scan:
    """Index a Berkeley-MHAD root: one sample per camera view, paired with its Shimmers."""
    layout = Layout.of(ADAPTER, root)
    root = layout.root
    for sub in ("Accelerometer", "Camera"):
        if not (root / sub).is_dir():
            why = "dataset root is not a directory" if not root.is_dir() else f"no {sub}/ folder"
            return layout.fatal(root, why)
    problems: list[Problem] = []
    sensors = _scan_sensors(root / "Accelerometer", problems)
    views = [
        Sample(key=f"{_rec_name(rec)}_l{cluster:02d}_c{c:02d}", label=rec[1] - 1,
               subject=rec[0], action=rec[1], repetition=rec[2],
               view=_VIEW_OFFSET[cluster] + c, video=str(folder), recording=_rec_name(rec))
        for (cluster, c, rec), folder
        in sorted(_scan_cameras(root / "Camera", problems).items())
    ]
    samples, gaps = pair(layout, views, sensors, _gaps(root), config.missing_sensor)
    return layout.finish(samples, problems + gaps, root / "Camera", "no camera view found")


ADAPTER = DatasetAdapter(
    name="berkeley_mhad",
    scan=scan_berkeley,
    read_sensor=_shimmer_signal,
    protocols={"cross_subject": lambda s: s.subject <= 7},  # S01–S07 train, S08–S12 test
    sensor_names=SENSOR_NAMES,
    class_names=BERKELEY_CLASSES,
)
