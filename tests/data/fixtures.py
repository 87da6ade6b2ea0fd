"""Tiny dataset trees in the official layouts and file formats (datasets.md §2.12, §3.12, §4.12).

Every file is written in the format of the real release; only the sizes are small so that the
tests stay fast: videos and camera frames are 64×48 (UTD-MHAD, Berkeley-MHAD; the releases
have 640×480) or 64×36 (MMAct; the release has 1920×1080), and clips have a few frames.
Each writer returns a description of what it wrote, for the tests to derive their expectations
from the grid rather than from the code under test.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from sakdn.data.video import write_pgm, write_video

MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: PCWIN64, Created on: Sat Jan 03 21:17:45 2015"


def write_mat(path: Path, variables: dict[str, np.ndarray]) -> None:
    """MATLAB level-5 MAT file, zlib-compressed, with the release's Windows header text."""
    scipy.io.savemat(str(path), variables, format="5", do_compression=True)
    raw = bytearray(path.read_bytes())
    raw[:116] = MAT_HEADER.ljust(116, b" ")
    path.write_bytes(bytes(raw))


def flat_clip(n: int, height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """n frames of one colour with a bright square that moves one step per frame."""
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    frames[:] = colour
    for i in range(n):
        x = (4 * i) % max(1, width - 8)
        frames[i, 4:12, x:x + 8] = 250
    return frames


# ---------------------------------------------------------------------------------- UTD-MHAD


@dataclass
class UtdTree:
    root: Path
    ids: list[tuple[int, int, int]]  # (action, subject, trial) written in every modality
    lengths: dict[tuple[int, int, int], int] = field(default_factory=dict)  # inertial samples


def write_utd(root: Path, actions=(1, 10, 22), subjects=(1, 2), trials=(1, 2, 3, 4),
              omit=((10, 1, 4),), frames=(8, 12), extras: bool = False, seed: int = 0) -> UtdTree:
    """Inertial ``.mat`` (``d_iner`` T×6: g, deg/s) and MJPEG ``.avi`` per (A, S, T).

    ``omit`` ids are absent in every modality (UTD's corrupt sequences); ``extras`` also
    writes the Depth (``d_depth`` uint16 240×320×F) and Skeleton (``d_skel`` 20×3×F) files.
    """
    rng = np.random.default_rng(seed)
    for sub in ("Inertial", "RGB") + (("Depth", "Skeleton") if extras else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    tree = UtdTree(root, [])
    for a in actions:
        for s in subjects:
            for t in trials:
                if (a, s, t) in omit:
                    continue
                stem = f"a{a}_s{s}_t{t}"
                n = int(rng.integers(100, 327))
                time = np.arange(n) / 50.0
                acc = 0.3 * np.sin(2 * np.pi * (0.5 + a / 10) * time[:, None] + [0, 1, 2])
                acc[:, 1] -= 1.0  # gravity
                gyro = 120 * np.cos(2 * np.pi * (0.3 + s / 10) * time[:, None] + [0, 2, 4])
                d_iner = np.hstack([acc, gyro]) + 0.01 * rng.standard_normal((n, 6))
                write_mat(root / "Inertial" / f"{stem}_inertial.mat", {"d_iner": d_iner})
                f = int(rng.integers(frames[0], frames[1] + 1))
                colour = (20 * a % 256, 60 * s % 256, 40 * t % 256)
                write_video(root / "RGB" / f"{stem}_color.avi", flat_clip(f, 48, 64, colour),
                            fps=30, codec="mjpeg")
                if extras:
                    g = f + 3  # depth/skeleton frames ≠ RGB frames, as in the release
                    depth = np.full((240, 320, g), 1500, dtype=np.uint16)
                    write_mat(root / "Depth" / f"{stem}_depth.mat", {"d_depth": depth})
                    skel = rng.standard_normal((20, 3, g))
                    write_mat(root / "Skeleton" / f"{stem}_skeleton.mat", {"d_skel": skel})
                tree.ids.append((a, s, t))
                tree.lengths[(a, s, t)] = n
    return tree


# ----------------------------------------------------------------------------- Berkeley-MHAD


@dataclass
class BerkeleyTree:
    root: Path
    recordings: list[tuple[int, int, int]]  # (subject, action, repetition)
    cameras: list[tuple[int, int]]  # (cluster, camera)
    views: list[tuple[int, int, tuple[int, int, int]]]  # (cluster, camera, recording) written
    with_shimmers: list[tuple[int, int, int]]  # recordings with all six accelerometer files
    frames: dict[tuple[int, int, int], int] = field(default_factory=dict)
    colours: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)


def bayer_grbg(rgb: np.ndarray) -> np.ndarray:
    """The GRBG mosaic a Bayer camera records of an (H, W, 3) RGB scene."""
    h, w, _ = rgb.shape
    raw = np.empty((h, w), dtype=np.uint8)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 1]  # G
    raw[0::2, 1::2] = rgb[0::2, 1::2, 0]  # R
    raw[1::2, 0::2] = rgb[1::2, 0::2, 2]  # B
    raw[1::2, 1::2] = rgb[1::2, 1::2, 1]  # G
    return raw


def write_shimmer(path: Path, rows: np.ndarray) -> None:
    """``ax ay az t`` per line, 6 decimals, one space, LF, trailing newline."""
    path.write_text("".join("%.6f %.6f %.6f %.6f\n" % tuple(r) for r in rows))


def write_berkeley(root: Path, subjects=(1, 8), actions=(1, 6), reps=(1, 2),
                   cameras=((1, 1), (3, 1)), drop_view=(3, 1, (1, 6, 2)),
                   drop_shimmers=((8, 1, 2),), size=(48, 64), seed: int = 0) -> BerkeleyTree:
    """Shimmer text files, GRBG Bayer PGM frame folders, time stamps and correspondences.

    ``drop_view`` (cluster, camera, recording) is absent from that camera only (the
    cluster-3/4 gaps); ``drop_shimmers`` recordings lack all six accelerometer files (as
    S02 A07 R05 in the public copy). One accelerometer file holds a glitch row (|a| ≈ 50 g).
    """
    rng = np.random.default_rng(seed)
    recs = [(s, a, r) for s in subjects for a in actions for r in reps]
    tree = BerkeleyTree(root, recs, list(cameras), [], [])
    glitch_done = False
    for rec in recs:
        s, a, r = rec
        tag = f"s{s:02d}_a{a:02d}_r{r:02d}"
        start = 1309539264.038020 + 1000 * len(tree.frames)
        n_frames = int(rng.integers(5, 9))
        tree.frames[rec] = n_frames
        colour = tuple(int(v) for v in rng.integers(40, 200, size=3))
        tree.colours[rec] = colour
        if rec not in drop_shimmers:
            duration = n_frames / 22.0 + 1.0
            gaps = np.resize([0.022, 0.045], int(duration * 30))
            t = start + np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
            for h in range(1, 7):
                phase = np.arange(len(t))[:, None] * (0.2 + 0.05 * h) + [0, 1, 2]
                acc = np.clip(0.8 * np.sin(phase) + 0.1 * rng.standard_normal((len(t), 3)), -2, 2)
                acc[:, 2] -= 0.9 if h > 4 else 0.0
                if not glitch_done:
                    acc[len(t) // 2] = [50.25, -1.0, 0.5]
                    glitch_done = True
                folder = root / "Accelerometer" / f"Shimmer{h:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                write_shimmer(folder / f"acc_h{h:02d}_{tag}.txt", np.column_stack([acc, t]))
            tree.with_shimmers.append(rec)
        for cluster, c in cameras:
            if (cluster, c, rec) == drop_view:
                continue
            folder = root / "Camera" / f"Cluster{cluster:02d}" / f"Cam{c:02d}" / f"S{s:02d}" / \
                f"A{a:02d}" / f"R{r:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, rgb in enumerate(flat_clip(n_frames, *size, colour)):
                write_pgm(folder / f"img_l{cluster:02d}_c{c:02d}_{tag}_{i:05d}.pgm",
                          bayer_grbg(rgb))
            tree.views.append((cluster, c, rec))
        stamps = root / "Time_stamps"
        stamps.mkdir(parents=True, exist_ok=True)
        (stamps / f"time_stamps_img_{tag}.txt").write_text(
            "".join("%d %.6f\n" % (i, start + 0.05 + i / 21.7) for i in range(n_frames)))
        corr = root / "Camera" / "Correspondences"
        corr.mkdir(parents=True, exist_ok=True)
        (corr / f"corr_moc_img_{tag}.txt").write_text(
            "".join(f"{i} {start + i / 21.7:.6f} {22 * i}\n" for i in range(n_frames)))
    for s in subjects:
        for suffix in ("b01", "t-pose"):
            (root / "Time_stamps" / f"time_stamps_img_s{s:02d}_{suffix}.txt").write_text(
                "".join(f"{i} 1309538992 {802302 + 46000 * i}\n" for i in range(3)))
    return tree


# ------------------------------------------------------------------------------------ MMAct

MMACT_SENSORS = ("acc_phone", "acc_watch", "gyro", "orientation")
RATES = {"acc_phone": 100, "acc_watch": 100, "gyro": 50, "orientation": 50}


@dataclass
class MmactTree:
    root: Path
    recordings: list[tuple[int, int, int, str]]  # (subject, scene, session, action), lower-case
    clips: list[tuple[int, int, int, int, str]]  # (subject, cam, scene, session, action)
    sensor_files: dict[tuple[str, tuple[int, int, int, str]], Path] = field(default_factory=dict)
    empty: tuple[str, tuple[int, int, int, str]] | None = None
    no_fraction: tuple[str, tuple[int, int, int, str]] | None = None
    shuffled: tuple[str, tuple[int, int, int, str]] | None = None
    missing_watch: tuple[int, int, int, str] | None = None


def _timestamp(t: datetime.datetime, fraction: bool = True) -> str:
    text = t.strftime("%Y%m%d_%H:%M:%S")
    return text + t.strftime(".%f")[:4] + "000" if fraction else text


def mmact_lines(stamps: list[datetime.datetime], values: np.ndarray) -> list[str]:
    """``YYYYMMDD_HH:MM:SS.ffffff,x,y,z`` lines (ms precision, values in free form)."""
    return [f"{_timestamp(t)},{x:.7g},{y:.7g},{z:.7g}" for t, (x, y, z) in zip(stamps, values)]


def write_mmact_csv(path: Path, start: datetime.datetime, values: np.ndarray, rate: float,
                    crlf: bool = False, no_fraction_first: bool = False,
                    swap_and_repeat: bool = False) -> None:
    """Header-less ``YYYYMMDD_HH:MM:SS.ffffff,x,y,z`` rows at ``rate`` Hz (ms precision)."""
    stamps = [start + datetime.timedelta(milliseconds=round(1000 * i / rate))
              for i in range(len(values))]
    lines = mmact_lines(stamps, values)
    if no_fraction_first:
        lines[0] = _timestamp(stamps[0].replace(microsecond=0), fraction=False) + \
            lines[0][lines[0].index(","):]
    if swap_and_repeat:
        lines[5], lines[6] = lines[6], lines[5]  # a backward jump
        lines.insert(10, lines[9])  # a repeated timestamp
    newline = "\r\n" if crlf else "\n"
    path.write_bytes((newline.join(lines) + newline).encode())


def write_mmact(root: Path, subjects=(1, 17), cams=(1, 4),
                scene_actions=((1, "walking"), (2, "walking"), (3, "using_phone"), (3, "drinking")),
                sessions=(1, 5), carrying_light=(14, 1, 2), size=(36, 64), seed: int = 0
                ) -> MmactTree:
    """Trimmed sensor CSVs and mp4 clips, with the release's quirks:

    a ``Carrying_light`` clip (capital C), one empty CSV, one CSV whose first timestamp has no
    fraction, one with two swapped rows and a repeated timestamp, one clip without
    ``acc_watch``, and CRLF line endings in the phone accelerometer CSVs.
    """
    rng = np.random.default_rng(seed)
    sensors_root = root / "trimmed" / "sensors"
    video_root = root / "trimmed" / "video"
    recs = [(n, k, m, act) for n in subjects for k, act in scene_actions for m in sessions]
    names = {rec: rec[3] for rec in recs}
    if carrying_light:
        n, k, m = carrying_light
        recs.append((n, k, m, "carrying_light"))
        names[(n, k, m, "carrying_light")] = "Carrying_light"
    tree = MmactTree(root, recs, [])
    tree.empty = ("gyro", recs[2])  # subject 1, scene 2, session 1
    tree.no_fraction = ("acc_phone", recs[0])
    tree.shuffled = ("acc_watch", recs[1])
    tree.missing_watch = recs[-2]
    base = datetime.datetime(2018, 10, 16, 13, 37, 28, 612000)
    for i, rec in enumerate(recs):
        n, k, m, _ = rec
        start = base + datetime.timedelta(seconds=30 * i)
        duration = 1.0 + (i % 3) / 2
        for sensor in MMACT_SENSORS:
            if sensor == "acc_watch" and rec == tree.missing_watch:
                continue
            folder = sensors_root / f"{sensor}_clip" / f"subject{n}" / f"scene{k}" / f"session{m}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{names[rec]}.csv"
            tree.sensor_files[(sensor, rec)] = path
            if (sensor, rec) == tree.empty:
                path.write_bytes(b"")
                continue
            rows = int(duration * RATES[sensor])
            tt = np.arange(rows) / RATES[sensor]
            if sensor == "orientation":
                values = np.column_stack([(180 + 40 * np.sin(tt)) % 360, 10 * np.cos(3 * tt),
                                          5 * np.sin(2 * tt)])
            else:
                values = np.sin(2 * np.pi * (1 + i % 4) * tt[:, None] + [0, 1, 2])
                if sensor.startswith("acc"):
                    values[:, 1] -= 9.8  # gravity on −y
            values += 0.05 * rng.standard_normal(values.shape)
            offset = datetime.timedelta(milliseconds=int(rng.integers(-50, 51)))
            write_mmact_csv(path, start + offset, values, RATES[sensor],
                            crlf=sensor == "acc_phone",
                            no_fraction_first=(sensor, rec) == tree.no_fraction,
                            swap_and_repeat=(sensor, rec) == tree.shuffled)
        for c in cams:
            folder = video_root / f"subject{n}" / f"cam{c}" / f"scene{k}" / f"session{m}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = (30 * n % 256, 50 * c % 256, (20 * k + 40 * m) % 256)
            write_video(folder / f"{names[rec]}.mp4", flat_clip(int(rng.integers(6, 11)), *size,
                                                                colour), fps=30, codec="mpeg4")
            tree.clips.append((n, c, k, m, rec[3]))
    return tree
