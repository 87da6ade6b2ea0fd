"""MMAct (trimmed release) on disk → paired samples (datasets.md §4).

Layout (folder names not zero-padded; the two top folders are found under any of the names
seen in the wild: ``trimmed/sensors`` + ``trimmed/video``, ``Sensor_trimmed`` +
``Video_trimmed``, ``sensors`` + ``video``)::

    <sensors>/{acc_phone,acc_watch,gyro,orientation}_clip/subject{N}/scene{K}/session{M}/
        {action}.csv
    <video>/subject{N}/cam{C}/scene{K}/session{M}/{action}.mp4

One sample per camera clip; the four sensor clips of (subject, scene, session, action) are
shared by its up to four views. Sensor CSVs have no header: ``YYYYMMDD_HH:MM:SS.ffffff,x,y,z``
(the fraction is sometimes missing), rows not always in time order and sometimes repeated
(sorted by time, the first of a repeated timestamp kept, both counted: ``sakdn.data.rows``),
some files empty (treated as missing). A clip missing some sensors follows ``data.missing_sensor``
(skip it, or zero-fill and mask those teachers); one with no sensor at all is skipped.

Classes: the 35 action folder names, sorted (label = position), action names lower-cased
first (the release has ``Carrying_light``). This differs from the reference code's 36 names
(an unused "object transfering" at 14, and ``Carrying_light`` clips mislabelled 35, method doc
P14) and from the 37-class convention that splits scene-3 ``talking_on_phone`` /
``using_phone`` into ``…_desk`` classes. Samples are in directory order (subject, camera,
scene, session, action), so ``data.train_subset = k`` keeps training clips k, 2k, … exactly
like the reference ``_1_k`` lists (``full[k-1::k]``).
"""

from __future__ import annotations

import datetime
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from sakdn.config import DataConfig
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.index import Sample
from sakdn.data.pairing import Gaps, Layout, pair
from sakdn.data.problems import Problem, Scan, dataset_error
from sakdn.data.rows import cut_off, decimals, order_rows, read_lines
from sakdn.data.sensors import SensorSignal

MMACT_CLASSES: tuple[str, ...] = (
    "carrying", "carrying_heavy", "carrying_light", "checking_time", "closing", "crouching",
    "drinking", "entering", "exiting", "fall", "jumping", "kicking", "loitering",
    "looking_around", "opening", "picking_up", "pocket_in", "pocket_out", "pointing", "pulling",
    "pushing", "running", "setting_down", "sitting", "sitting_down", "standing", "standing_up",
    "talking", "talking_on_phone", "throwing", "transferring_object", "using_pc", "using_phone",
    "walking", "waving_hand",
)
SENSOR_NAMES: tuple[str, ...] = ("acc_phone", "acc_watch", "gyro", "orientation")
SUBJECTS, CAMERAS, SCENES, SESSIONS = 20, 4, 4, 5
SENSOR_BASES = ("trimmed/sensors", "Sensor_trimmed", "sensors", ".")
VIDEO_BASES = ("trimmed/video", "Video_trimmed", "video", "Video")

_LABEL = {name: i for i, name in enumerate(MMACT_CLASSES)}
_TIMESTAMP = re.compile(r"(\d{4})(\d{2})(\d{2})_(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_DIR = {level: re.compile(rf"{level}(\d+)") for level in ("subject", "cam", "scene", "session")}
_LIMIT = {"subject": SUBJECTS, "cam": CAMERAS, "scene": SCENES, "session": SESSIONS}
_EMPTY_PEEK = 64  # bytes read to tell an all-whitespace file from a real one

Rec = tuple[int, int, int, str]  # (subject, scene, session, action)


@lru_cache(maxsize=4096)
def _day(year: int, month: int, day: int) -> int:
    return datetime.date(year, month, day).toordinal()


def parse_timestamp(text: str) -> float:
    """``YYYYMMDD_HH:MM:SS[.ffffff]`` (local wall clock) → seconds since 0001-01-01.

    A missing fraction means ``.000000``. Float64 keeps ~8 µs resolution at this magnitude,
    enough for the millisecond timestamps. ValueError when malformed.
    """
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"timestamp {text.strip()!r} is not YYYYMMDD_HH:MM:SS[.ffffff]")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if h > 23 or mi > 59 or s > 60:
        raise ValueError(f"timestamp {text.strip()!r} has no valid time of day")
    fraction = float("0." + m.group(7)) if m.group(7) else 0.0
    return _day(y, mo, d) * 86400.0 + h * 3600 + mi * 60 + s + fraction


def read_mmact_csv(path: str | Path) -> SensorSignal:
    """One sensor CSV → the signal in time order (values (T, 3), times (T,) in seconds),
    repeated timestamps dropped."""
    path = str(path)
    lines, terminated = read_lines(path, "utf-8-sig", "sensor CSV")  # LF or CRLF
    if not terminated and lines:
        _check_last_line(path, lines)
    times: list[float] = []
    values: list[list[float]] = []
    for n, line in lines:
        fields = line.split(",")
        if len(fields) != 4:
            raise dataset_error(
                path, "bad_columns",
                f"line {n} has {len(fields)} comma-separated fields, expected 4 (timestamp,x,y,z)",
            )
        try:
            times.append(parse_timestamp(fields[0]))
        except ValueError as err:
            raise dataset_error(path, "bad_timestamps", f"line {n}: {err}") from None
        try:
            values.append([float(v) for v in fields[1:]])
        except ValueError:
            raise dataset_error(
                path, "bad_columns", f"line {n}: value in {fields[1:]} is not a number"
            ) from None
    if not times:
        raise dataset_error(path, "empty_file", "sensor CSV holds no rows")
    numbers = np.array([n for n, _ in lines])
    return order_rows(np.asarray(times), np.asarray(values, dtype=np.float64), numbers, path)


def _check_last_line(path: str, lines: list[tuple[int, str]]) -> None:
    """A last line without newline must be a whole row: four fields, a valid timestamp with as
    many fraction digits as the line before, numbers (whose digits cannot be checked: the
    release prints values in free form)."""
    n, line = lines[-1]
    fields = line.split(",")
    if len(fields) != 4:
        raise cut_off(path, n, line, f"{len(fields)} of 4 fields")
    try:
        parse_timestamp(fields[0])
        [float(v) for v in fields[1:]]
    except ValueError as err:
        raise cut_off(path, n, line, str(err)) from None
    if len(lines) > 1:
        prior = lines[-2][1].split(",")[0].strip()
        if decimals(fields[0].strip()) != decimals(prior):
            raise cut_off(path, n, line, f"timestamp with {decimals(fields[0].strip())} "
                          f"fraction digits, the line before {decimals(prior)}")


def _csv_signal(name: str, path: str) -> SensorSignal:
    if name not in SENSOR_NAMES:
        raise dataset_error(path, "unknown_code", f"unknown MMAct sensor {name!r}")
    return read_mmact_csv(path)


def _find(root: Path, candidates: tuple[str, ...], ok) -> Path | None:
    for rel in candidates:
        base = (root / rel).resolve()
        if base.is_dir() and ok(base):
            return base
    return None


def _levels(folder: Path, names: tuple[str, ...], problems: list[Problem]):
    """Walk ``folder/<names[0]>{i}/<names[1]>{j}/…`` → ((i, j, …), leaf dir), codes checked."""
    if not names:
        yield (), folder
        return
    level, rest = names[0], names[1:]
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if p.is_dir() and (m := _DIR[level].fullmatch(p.name)))
    for code, sub in found:
        if not 1 <= code <= _LIMIT[level]:
            kind = "unknown_subject" if level == "subject" else "unknown_code"
            problems.append(Problem(kind, str(sub), f"{level} {code} is not one of "
                                    f"{level}1..{level}{_LIMIT[level]}"))
            continue
        for codes, leaf in _levels(sub, rest, problems):
            yield (code, *codes), leaf


def _is_empty(path: Path) -> bool:
    size = path.stat().st_size
    if size >= _EMPTY_PEEK:
        return False
    return not path.read_bytes().strip()


def _action(path: Path, problems: list[Problem]) -> str | None:
    action = path.stem.lower()
    if action not in _LABEL:
        problems.append(Problem("unknown_action", str(path),
                                f"action {path.stem!r} is not one of the 35 MMAct classes"))
        return None
    return action


def _scan_sensors(base: Path, problems: list[Problem],
                  duplicates: dict[str, list[Problem]]) -> dict[str, dict[str, str]]:
    """Recording name → {sensor: CSV} of the non-empty CSVs; ``duplicates`` collects a
    recording's CSVs stored twice."""
    sensors: dict[str, dict[str, str]] = {}
    for name in SENSOR_NAMES:
        folder = base / f"{name}_clip"
        if not folder.is_dir():
            problems.append(Problem("layout", str(folder),
                                    f"no {name}_clip folder: every clip lacks {name}", "warning"))
            continue
        for (n, k, m), leaf in _levels(folder, ("subject", "scene", "session"), problems):
            for path in sorted(leaf.iterdir()):
                if path.suffix.lower() != ".csv" or not path.is_file():
                    continue
                if (action := _action(path, problems)) is None:
                    continue
                rec = _rec_name((n, k, m, action))
                held = sensors.setdefault(rec, {})
                if name in held:
                    duplicates.setdefault(rec, []).append(Problem(
                        "duplicate_recording", str(path),
                        f"{name} of {rec} also stored as {held[name]}"))
                    continue
                if _is_empty(path):
                    problems.append(Problem("empty_file", str(path),
                                            f"empty {name} CSV; treated as missing", "warning"))
                    held[name] = ""  # taken (a duplicate is still one), but not present
                    continue
                held[name] = str(path)
    return {rec: {s: p for s, p in held.items() if p} for rec, held in sensors.items()}


def _scan_videos(base: Path, problems: list[Problem]) -> dict[tuple[int, int, int, int, str], Path]:
    videos: dict[tuple[int, int, int, int, str], Path] = {}
    for (n, c, k, m), leaf in _levels(base, ("subject", "cam", "scene", "session"), problems):
        for path in sorted(leaf.iterdir()):
            if path.suffix.lower() != ".mp4" or not path.is_file():
                continue
            if (action := _action(path, problems)) is None:
                continue
            ident = (n, c, k, m, action)
            if ident in videos:
                problems.append(Problem(
                    "duplicate_recording", str(path),
                    f"clip {_key(ident)} also stored as {videos[ident]}", "error", (_key(ident),)))
                continue
            videos[ident] = path
    return videos


def _rec_name(rec: Rec) -> str:
    n, k, m, action = rec
    return f"subject{n}_scene{k}_session{m}_{action}"


def _key(ident: tuple[int, int, int, int, str]) -> str:
    n, c, k, m, action = ident
    return f"subject{n}_cam{c}_scene{k}_session{m}_{action}"


def _gaps(sensor_base: Path) -> Gaps:
    """A clip without any sensor CSV is skipped; sensor CSVs without a clip are not used."""

    def no_sensor(recording: str, views: tuple[Sample, ...]) -> Problem:
        return Problem("missing_modality", str(sensor_base), f"no sensor CSV for {recording}: "
                       f"its {len(views)} camera clip(s) skipped", "skipped",
                       tuple(v.key for v in views))

    def missing_file(view: Sample, sensor: str) -> str:
        return str(sensor_base / f"{sensor}_clip" / f"subject{view.subject}"
                   / f"scene{view.scene}" / f"session{view.session}"
                   / f"{MMACT_CLASSES[view.label]}.csv")

    def no_view(recording: str, file: str) -> Problem:
        return Problem("missing_modality", file,
                       f"{recording} has sensor CSVs but no camera clip; not used", "warning")

    return Gaps(no_sensor, missing_file, no_view)


def scan_mmact(root: str | Path, config: DataConfig) -> Scan:
    """Index an MMAct root: one sample per camera clip, paired with its sensor clips."""
    layout = Layout.of(ADAPTER, root)
    root = layout.root
    if not root.is_dir():
        return layout.fatal(root, "dataset root is not a directory")
    sensor_base = _find(root, SENSOR_BASES,
                        lambda b: any((b / f"{s}_clip").is_dir() for s in SENSOR_NAMES))
    video_base = _find(root, VIDEO_BASES, lambda b: any(_DIR["subject"].fullmatch(p.name)
                                                        for p in b.iterdir()))
    if sensor_base is None or video_base is None:
        what = "sensor (<sensor>_clip/)" if sensor_base is None else "video (subject*/cam*/)"
        return layout.fatal(root, f"no {what} folder under trimmed/, Sensor_trimmed/ + "
                            "Video_trimmed/ or the root")
    problems: list[Problem] = []
    duplicates: dict[str, list[Problem]] = {}
    sensors = _scan_sensors(sensor_base, problems, duplicates)
    views = [  # directory order: subject, camera, scene, session, action
        Sample(key=_key(ident), label=_LABEL[ident[4]], subject=ident[0],
               action=_LABEL[ident[4]] + 1, repetition=0, view=ident[1], scene=ident[2],
               session=ident[3], video=str(path), recording=_recording(ident))
        for ident, path in sorted(_scan_videos(video_base, problems).items())
    ]
    samples, gaps = pair(layout, views, sensors, _gaps(sensor_base), config.missing_sensor,
                         duplicates)
    return layout.finish(samples, problems + gaps, video_base, "no .mp4 clip found")


def _recording(ident: tuple[int, int, int, int, str]) -> str:
    """The recording a clip shows: its identity without the camera."""
    n, _, k, m, action = ident
    return _rec_name((n, k, m, action))


ADAPTER = DatasetAdapter(
    name="mmact",
    scan=scan_mmact,
    read_sensor=_csv_signal,
    protocols={  # datasets.md §4.8: view = camera 1–4, scene 1–4, session 1–5
        "cross_subject": lambda s: s.subject <= 16,
        "cross_view": lambda s: s.view <= 3,
        "cross_scene": lambda s: s.scene != 2,
        "cross_session": lambda s: s.session <= 4,
    },
    sensor_names=SENSOR_NAMES,
    class_names=MMACT_CLASSES,
)
