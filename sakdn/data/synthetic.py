"""A small synthetic action dataset written in the UTD-MHAD layout (datasets.md §2.12).

Each class is a right-hand gesture: a 3-D hand path (circle, line, figure eight, triangle in
one of three planes, drawn in a given sense and repeated a given number of times) plus a wrist
attitude signature (roll / pitch / yaw oscillations, invisible on video). A wrist-worn inertial
unit sees both; the camera sees only the hand's projection. Classes come in pairs whose videos
look alike (clockwise vs counter-clockwise circle, swipe left vs right, push vs pull in depth)
while their sensor signals differ, mostly in the wrist signature the video never shows.

Sensors (50 Hz by default), in the sensor's own moving frame ``R(t) = R_wrist(t) · R_place``:

    acc(t)  = R(t)ᵀ (p̈(t) / g₀ + ŷ)      [g]   (specific force: motion plus 1 g up)
    gyro(t) = vee(R(t)ᵀ Ṙ(t)) · 180/π    [deg/s]

plus white noise and a per-recording bias. ``R_place`` (how the sensor sits on the wrist) is
drawn per subject. Video: the hand is a small (5 cm radius), shaded, motion-blurred disc at the
perspective projection of p(t) (camera 1.8–2.6 m in front, drawn per subject, so motion in
depth barely changes it) with a forearm from a fixed shoulder, in a sleeve of any colour (for
some subjects it blends into the room), and the subject's torso, in one cluttered textured room
shared by all recordings, with occluders in front, camera shake, flicker and pixel noise. So the
sensors carry the action clearly while the video is ambiguous, and differently so per subject.

Version 3 (the small hand, per-subject camera distance and sleeve colour, stronger pixel noise,
16 subjects by default) replaced version 2, whose video a from-scratch student classified as
well as the teachers did. Measured with ``experiments/synthetic.yaml`` (cross-subject, 5
training and 3 validation subjects, 5 seeds): fused teachers 0.97–0.99 validation accuracy,
the CE-only student 0.46–0.57 (chance 0.125); docs/results.md, "Ablations". Version 4 keeps
every recording of version 3 and replaces the sparse class vectors by dense, word-vector-like
ones (:func:`class_vectors`).

``ADAPTER`` (``data.dataset: synthetic``) reads the dataset with the UTD-MHAD adapter's scan,
sensor reader and protocols, and writes it first when ``data.root`` does not exist.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from sakdn.config import DataConfig
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.problems import Scan
from sakdn.data.utd_mhad import ADAPTER as UTD_ADAPTER
from sakdn.data.utd_mhad import read_class_names, read_inertial_sensor, scan_utd
from sakdn.errors import ConfigError, DatasetError

GRAVITY = 9.80665  # m/s², one g
VERSION = 4  # bump when the generator's output changes for the same parameters
OMIT = ("a2_s3_t4",)  # dropped like UTD-MHAD's corrupt recordings (when inside the grid)

# Named parameter sets of write_synthetic: "tiny" is the smoke experiment's dataset
# (experiments/synthetic_smoke.yaml), the one tests and quick benchmarks train on.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"classes": 3, "subjects": 4, "repetitions": 2, "frame_size": 32, "duration": 1.0},
}

_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: sakdn synthetic generator"


@dataclass(frozen=True)
class Motion:
    """One class: the hand path and the wrist attitude signature, in documented attributes."""

    name: str
    shape: str  # "circle" | "line" | "eight" | "triangle"
    axes: str  # world axes of the shape's (u, v) coordinates, e.g. "xy" = facing the camera
    sense: int  # +1 / −1: travel along +u for lines, counter-clockwise (u→v) for closed shapes
    size: float  # metres: radius, half length or half width
    cycles: float  # strokes (lines) or turns (closed shapes) per recording
    twist: tuple[float, float, float]  # wrist roll, pitch, yaw amplitudes (rad)
    twist_cycles: float  # oscillations of the wrist attitude per recording


# World frame: x to the subject's right as seen by the camera (image right), y up, z toward the
# camera. The first eight classes are the default dataset; pairs (0,1), (2,3), (4,5) are the
# video-confusable ones.
MOTIONS: tuple[Motion, ...] = (
    Motion("circle clockwise", "circle", "xy", -1, 0.16, 1.0, (0.7, 0.2, 0.0), 1.0),
    Motion("circle counter clockwise", "circle", "xy", +1, 0.16, 1.0, (0.0, 0.25, 0.7), 0.5),
    Motion("swipe left", "line", "xy", -1, 0.22, 1.0, (0.0, 0.6, 0.3), 1.0),
    Motion("swipe right", "line", "xy", +1, 0.22, 1.0, (0.6, 0.0, 0.3), 0.5),
    Motion("push forward", "line", "zy", +1, 0.15, 1.0, (0.15, 0.7, 0.0), 0.5),
    Motion("pull back", "line", "zy", -1, 0.15, 1.0, (0.5, 0.0, 0.5), 1.0),
    Motion("vertical wave", "line", "yx", +1, 0.1, 4.0, (0.4, 0.1, 0.0), 2.0),
    Motion("figure eight", "eight", "xy", +1, 0.18, 1.0, (0.2, 0.5, 0.2), 1.0),
    Motion("draw triangle", "triangle", "xy", +1, 0.18, 1.0, (0.3, 0.3, 0.5), 1.5),
    Motion("clap", "line", "xy", +1, 0.08, 6.0, (0.1, 0.4, 0.2), 3.0),
    Motion("knock", "line", "zy", -1, 0.06, 6.0, (0.0, 0.5, 0.1), 3.0),
    Motion("stir horizontal circle", "circle", "xz", +1, 0.14, 2.0, (0.3, 0.0, 0.6), 2.0),
)

SHAPES = ("circle", "line", "eight", "triangle")
_AXIS = {"x": 0, "y": 1, "z": 2}
# Planes of the class vectors' one-hot: frontal (facing the camera), horizontal, sagittal.
_PLANES = {frozenset("xy"): 0, frozenset("xz"): 1, frozenset("yz"): 2}
_TWIST_PHASE = (0.0, math.pi / 2, math.pi / 4)  # fixed offsets: roll, pitch, yaw
_NOMINAL_PLACEMENT = (0.45, -0.6, 0.85)  # rad: a sensor frame not aligned with the wrist

# Camera and scene.
_CAM_DIST = (1.8, 2.6)  # m from the hand's mean position to the camera, drawn per subject
_FOCAL = 2.5  # focal length in units of the frame side
_HAND_RADIUS = 0.05  # m: a small hand, 4 px in radius at 2 m in a 64-px frame
_SHOULDER = np.array([0.0, 0.24, -0.3])  # m, relative to the hand's mean position
_ARM_WIDTH = 0.06  # m, half width of the forearm drawn from the shoulder to the hand
_JITTER = 2  # px of camera shake (at 64 px; scales with the frame)
_BLUR = 5  # sub-frame hand positions averaged into one frame (motion blur)
_NOISE = 0.05  # std of the per-pixel noise (frame values in [0, 1])


# -------------------------------------------------------------------------------- trajectories


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def _shape_uv(m: Motion, p: np.ndarray) -> np.ndarray:
    """(u, v) in units of ``m.size`` at motion phase p ∈ [0, 1]; (N,) → (N, 2)."""
    q = m.cycles * p
    if m.shape == "circle":  # starts at the top, turns counter-clockwise when sense = +1
        a = math.pi / 2 + m.sense * 2 * math.pi * q
        return np.stack([np.cos(a), np.sin(a) - 1.0], axis=1)
    if m.shape == "line":  # strokes between −sense and +sense, sagging a little in v
        u = -m.sense * np.cos(math.pi * q)
        return np.stack([u, -0.2 * np.abs(np.sin(math.pi * q))], axis=1)
    if m.shape == "eight":
        a = 2 * math.pi * q
        return np.stack([np.sin(a), m.sense * 0.5 * np.sin(2 * a)], axis=1)
    if m.shape == "triangle":  # corners at 90°, 210°, 330°; the hand stops at each corner
        ang = math.pi / 2 + m.sense * 2 * math.pi * np.arange(4) / 3
        corners = np.stack([np.cos(ang), np.sin(ang)], axis=1)  # (4, 2), closed
        w = 3 * (q - np.floor(q))
        edge = np.minimum(w.astype(int), 2)
        s = _smootherstep(w - edge)[:, None]
        return corners[edge] * (1 - s) + corners[edge + 1] * s
    raise ValueError(f"unknown shape {m.shape!r}")


def _rot(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rz(yaw) · Ry(pitch) · Rx(roll) for arrays of angles; (...) → (..., 3, 3)."""
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    return np.stack([
        np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
        np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
        np.stack([-sp, cp * sr, cp * cr], -1),
    ], -2)


@dataclass(frozen=True)
class _Subject:
    tempo: float  # > 1: slower (longer recordings)
    amplitude: float
    placement: np.ndarray  # (3, 3) sensor frame → wrist frame
    offset: np.ndarray  # (3,) hand's mean position, m
    skin: np.ndarray  # (3,) RGB in [0, 1]
    sleeve: np.ndarray  # (3,) RGB in [0, 1]
    torso: np.ndarray  # (3,) RGB in [0, 1]
    camera: float  # m from the hand's mean position to the camera


def _subject(seed: int, s: int) -> _Subject:
    rng = np.random.default_rng([seed, 1, s])
    angles = np.asarray(_NOMINAL_PLACEMENT) + rng.uniform(-0.4, 0.4, 3)
    return _Subject(
        tempo=float(rng.uniform(0.85, 1.2)),
        amplitude=float(rng.uniform(0.85, 1.15)),
        placement=_rot(*angles),
        offset=np.array([0.12, 0.0, 0.0]) + rng.uniform(-0.04, 0.04, 3),
        skin=np.array([0.85, 0.62, 0.5]) * rng.uniform(0.7, 1.1) + rng.uniform(-0.05, 0.05, 3),
        # Any sleeve colour: for some subjects the forearm blends into the room's clutter.
        sleeve=rng.uniform(0.05, 0.6, 3),
        torso=rng.uniform(0.2, 0.45, 3),
        camera=float(rng.uniform(*_CAM_DIST)),
    )


@dataclass(frozen=True)
class _Take:
    """One repetition: its timing, amplitude, plane tilt and wrist variation."""

    frames: int
    rest: tuple[float, float]  # share of the recording before / after the movement
    warp: float  # time-warp strength, |warp| < 1 keeps time monotone
    amplitude: float
    tilt: np.ndarray  # (3, 3) small rotation of the gesture's plane
    twist_gain: np.ndarray  # (3,)
    wobble: np.ndarray  # (3,) rad: a class-independent wrist wobble (roll, pitch, yaw)
    wobble_cycles: float


def _take(rng: np.random.Generator, subject: _Subject, duration: float, fps: float) -> _Take:
    length = duration * subject.tempo * rng.uniform(0.9, 1.1)
    return _Take(
        frames=max(8, round(length * fps)),
        rest=(float(rng.uniform(0.04, 0.14)), float(rng.uniform(0.04, 0.14))),
        warp=float(rng.uniform(-0.3, 0.3)),
        amplitude=subject.amplitude * float(rng.uniform(0.9, 1.1)),
        tilt=_rot(*rng.uniform(-0.12, 0.12, 3)),
        twist_gain=rng.uniform(0.7, 1.3, 3),
        wobble=rng.uniform(-0.15, 0.15, 3),
        wobble_cycles=float(rng.uniform(0.5, 3.0)),
    )


def _phase(x: np.ndarray, take: _Take) -> np.ndarray:
    """Motion phase at normalised time x ∈ [0, 1]: rest, warped smooth movement, rest."""
    r0, r1 = take.rest
    y = np.clip((x - r0) / (1.0 - r0 - r1), 0.0, 1.0)
    y = y + take.warp * np.sin(2 * math.pi * y) / (2 * math.pi)  # dy'/dy = 1 + warp·cos > 0
    return _smootherstep(y)


def _pose(m: Motion, subject: _Subject, take: _Take, x: np.ndarray):
    """Hand position (N, 3) in m and sensor-to-world rotation (N, 3, 3) at normalised times x."""
    p = _phase(x, take)
    uv = _shape_uv(m, p) * (m.size * take.amplitude)
    local = np.zeros((len(x), 3))
    local[:, _AXIS[m.axes[0]]] = uv[:, 0]
    local[:, _AXIS[m.axes[1]]] = uv[:, 1]
    pos = subject.offset + local @ take.tilt.T
    amp = np.asarray(m.twist) * take.twist_gain
    angles = [amp[i] * np.sin(2 * math.pi * m.twist_cycles * p + _TWIST_PHASE[i])
              + take.wobble[i] * np.sin(2 * math.pi * take.wobble_cycles * p) for i in range(3)]
    wrist = _rot(*angles)  # (N, 3, 3)
    return pos, wrist @ subject.placement


def imu_readings(pos: np.ndarray, rot: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Ideal accelerometer and gyroscope of a sensor moving along ``pos`` with attitude ``rot``.

    pos: (N, 3) metres in the world frame (y up); rot: (N, 3, 3) sensor-to-world rotations,
    sampled every ``dt`` seconds. Returns (acc (N, 3) in g, gyro (N, 3) in deg/s), both in the
    sensor's frame: acc = Rᵀ (p̈ / g₀ + ŷ) (specific force), [gyro]ₓ = Rᵀ Ṙ.
    """
    acc = np.gradient(np.gradient(pos, dt, axis=0, edge_order=2), dt, axis=0, edge_order=2)
    force = acc / GRAVITY + np.array([0.0, 1.0, 0.0])  # specific force in g, world frame
    acc_s = np.einsum("nji,nj->ni", rot, force)  # Rᵀ f
    skew = np.einsum("nji,njk->nik", rot, np.gradient(rot, dt, axis=0, edge_order=2))  # Rᵀ Ṙ
    gyro_s = np.degrees(np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], axis=1))
    return acc_s, gyro_s


def _inertial(m: Motion, subject: _Subject, take: _Take, fps: float, imu_rate: float,
              rng: np.random.Generator) -> np.ndarray:
    """``d_iner`` (N, 6): acc in g (gravity included), gyro in deg/s, in the sensor's frame."""
    n = round(take.frames * imu_rate / fps)
    over = 4  # differentiate on a finer grid, then keep every 4th sample
    t = np.arange(n * over) / (imu_rate * over)
    pos, rot = _pose(m, subject, take, t * fps / take.frames)
    acc_s, gyro_s = imu_readings(pos, rot, 1.0 / (imu_rate * over))
    acc_s, gyro_s = acc_s[::over], gyro_s[::over]
    acc_s = acc_s + rng.normal(0, 0.02, 3) + rng.normal(0, 0.015, acc_s.shape)
    gyro_s = gyro_s + rng.normal(0, 1.0, 3) + rng.normal(0, 2.0, gyro_s.shape)
    # Round to the 1/1000 g and 1/100 °/s of a 16-bit sensor, within its ±8 g / ±1000 °/s range.
    acc_s = np.round(np.clip(acc_s, -8, 8), 3)
    gyro_s = np.round(np.clip(gyro_s, -1000, 1000), 2)
    return np.ascontiguousarray(np.concatenate([acc_s, gyro_s], axis=1), dtype=np.float64)


# ---------------------------------------------------------------------------------------- video


def _room(seed: int, side: int) -> np.ndarray:
    """The recording room (side, side, 3): a textured wall with cluttered furniture.

    One room for the whole dataset, as in UTD-MHAD's single recording site: the clutter is
    the same behind every class and every subject, so it never tells the class.
    """
    rng = np.random.default_rng([seed, 3, side])
    small = rng.uniform(0, 1, (side // 8 + 2, side // 8 + 2, 3))
    reps = -(-side // small.shape[0]) + 1
    noise = np.kron(small, np.ones((reps, reps, 1)))[:side, :side]
    room = 0.25 + 0.25 * noise + rng.normal(0, 0.04, (side, side, 3))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    for _ in range(rng.integers(10, 18)):  # clutter: rectangles and discs
        color = 0.4 * rng.uniform(0, 1, 3) + 0.2
        cx, cy = rng.uniform(0, side, 2)
        w, h = rng.uniform(0.04, 0.2, 2) * side
        if rng.uniform() < 0.5:
            mask = (np.abs(xx - cx) < w) & (np.abs(yy - cy) < h)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.6 * w) ** 2
        room[mask] = color
    return room


def _with_torso(room: np.ndarray, subject: _Subject) -> np.ndarray:
    """The room with the subject's torso standing in front of it."""
    side = room.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    c = side / 2
    torso = ((xx - c) / (0.16 * side)) ** 2 + ((yy - 1.15 * c) / (0.3 * side)) ** 2 < 1
    out = room.copy()
    out[torso] = subject.torso
    return out


def _occluders(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """1–3 rectangles in front of the hand for one recording: colour (side, side, 3), alpha."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    occ = np.zeros((side, side, 3))
    alpha = np.zeros((side, side))
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * side
        w, h = rng.uniform(0.03, 0.1, 2) * side
        mask = (np.abs(xx - cx) < w) & (np.abs(yy - cy) < h)
        occ[mask] = rng.uniform(0, 1, 3)
        alpha[mask] = 1.0
    return occ, alpha


def _segment_distance(px: np.ndarray, py: np.ndarray, ax: float, ay: float, bx: float,
                      by: float) -> np.ndarray:
    """Distance of each pixel to the segment a–b."""
    vx, vy = bx - ax, by - ay
    t = np.clip(((px - ax) * vx + (py - ay) * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
    return np.hypot(px - ax - t * vx, py - ay - t * vy)


def _render(m: Motion, subject: _Subject, take: _Take, scene: np.ndarray, size: int,
            rng: np.random.Generator) -> np.ndarray:
    """(frames, size, size, 3) uint8 RGB: the arm and the motion-blurred hand over ``scene``."""
    j = (scene.shape[0] - size) // 2
    side = scene.shape[0]
    occ, alpha = _occluders(rng, side)
    # Hand positions at _BLUR sub-times across each frame's exposure (one frame period).
    sub = (np.arange(take.frames)[:, None] + np.linspace(-0.5, 0.5, _BLUR)) / take.frames
    pos, _ = _pose(m, subject, take, np.clip(sub.ravel(), 0.0, 1.0))
    depth = subject.camera - pos[:, 2]
    f = _FOCAL * size
    cx = (side / 2 + f * pos[:, 0] / depth).reshape(-1, _BLUR)  # canvas coordinates
    cy = (side / 2 - f * pos[:, 1] / depth).reshape(-1, _BLUR)
    radius = (f * _HAND_RADIUS / depth).reshape(-1, _BLUR)
    shoulder = subject.offset + _SHOULDER
    sx = side / 2 + f * shoulder[0] / (subject.camera - shoulder[2])
    sy = side / 2 - f * shoulder[1] / (subject.camera - shoulder[2])
    arm_half = f * _ARM_WIDTH / subject.camera
    shake = np.clip(np.cumsum(rng.integers(-1, 2, (take.frames, 2)), axis=0), -j, j) + j
    flicker = rng.uniform(0.9, 1.1, take.frames)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    mid = _BLUR // 2
    out = np.empty((take.frames, size, size, 3), dtype=np.uint8)
    for k in range(take.frames):
        oy, ox = shake[k]
        frame = scene[oy:oy + size, ox:ox + size].copy()
        px, py = xx + ox, yy + oy  # canvas coordinates of the frame's pixels
        dist = _segment_distance(px, py, sx, sy, cx[k, mid], cy[k, mid])
        arm = np.clip(arm_half + 0.5 - dist, 0, 1)[..., None]
        frame = frame * (1 - arm) + subject.sleeve * arm
        d = np.hypot(px[None] - cx[k, :, None, None], py[None] - cy[k, :, None, None])  # (B,S,S)
        r = radius[k, :, None, None]
        hand = np.clip(r + 0.5 - d, 0.0, 1.0)[..., None]  # (B, S, S, 1)
        shade = subject.skin * (1.0 - 0.35 * np.clip(d / r, 0, 1))[..., None]
        frame = frame * (1 - hand.mean(0)) + (shade * hand).mean(0)
        a = alpha[oy:oy + size, ox:ox + size, None]
        frame = frame * (1 - a) + occ[oy:oy + size, ox:ox + size] * a
        frame = frame * flicker[k] + rng.normal(0, _NOISE, frame.shape)
        out[k] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------- class vectors


def class_attributes(motions: tuple[Motion, ...]) -> np.ndarray:
    """(classes, 16) float64 description of each class's motion, sparse by construction.

    Coarse attributes weigh most, as in a description of the gesture: shape one-hot (4) ·
    plane one-hot (frontal, horizontal, sagittal) (3) · 0.5 × signed motion axis (travel
    direction of a line, rotation axis of a closed shape) (3) · size / 0.2 m ·
    log₆(cycles) · 0.25 × wrist twist amplitudes / 0.7 rad (3) · 0.25 × twist cycles / 3.
    So the two circles, the two swipes, push and pull are each other's nearest classes.
    """
    rows = []
    for m in motions:
        shape = np.eye(len(SHAPES))[SHAPES.index(m.shape)]
        plane = np.eye(3)[_PLANES[frozenset(m.axes)]]
        u, v = _AXIS[m.axes[0]], _AXIS[m.axes[1]]
        axis = np.zeros(3)
        if m.shape == "line":
            axis[u] = m.sense
        else:  # rotation axis u × v, signed by the sense of rotation
            axis = np.cross(np.eye(3)[u], np.eye(3)[v]) * m.sense
        rows.append(np.concatenate([
            shape, plane, 0.5 * axis, [m.size / 0.2, math.log(m.cycles, 6)],
            0.25 * np.asarray(m.twist) / 0.7, [0.25 * m.twist_cycles / 3.0],
        ]))
    return np.asarray(rows, dtype=np.float64)


_VECTOR_SEED = 2021  # fixed: the class vectors never depend on the dataset's seed
_VECTOR_NOISE = 0.15  # per-class idiosyncratic part, relative to the attribute part
_VECTOR_RMS = 1.75  # per coordinate: norms ≈ 7, inside GloVe class vectors' 5–24


def class_vectors(motions: tuple[Motion, ...]) -> np.ndarray:
    """(classes, 16) float32 class embedding that behaves like word vectors.

    e_k = s · (Q a_k + 0.15 · n_k): the attribute description a_k (:func:`class_attributes`)
    turned by a fixed random rotation Q, plus a fixed random per-class part n_k, scaled so that
    each coordinate has RMS 1.75 over the classes. The rotation keeps the attributes'
    distances (look-alike classes stay each other's nearest) while every coordinate becomes
    dense: the sparse attribute vectors (70 of 128 entries exactly 0 for 8 classes) saturated
    the reference ablation weights, which divide by single coordinates (method doc §6.3, P9).
    The scale is that of GloVe class vectors (sums of word vectors): with norm-1.8 vectors the
    teachers' semantic regression lost to cross-entropy (fc2 features further from the class
    vectors than zero is, R² < 0), because targets that close together leave no logit margin;
    at this scale teachers reach R² ≈ 0.75 at full accuracy (docs/results.md).
    """
    a = class_attributes(motions)
    rng = np.random.default_rng(_VECTOR_SEED)
    q, _ = np.linalg.qr(rng.normal(size=(a.shape[1], a.shape[1])))
    rotated = a @ q.T
    noise = rng.normal(size=(len(MOTIONS), a.shape[1]))[: len(motions)]
    e = rotated + _VECTOR_NOISE * np.sqrt((rotated**2).mean()) * noise
    return (e * _VECTOR_RMS / np.sqrt((e**2).mean())).astype(np.float32)


# -------------------------------------------------------------------------------------- writing


def _check(key: str, value: Any, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError(f"synthetic.{key}", value, problem)


def _write_mat(path: Path, d_iner: np.ndarray) -> None:
    """A compressed MAT v5 file with a fixed header text (scipy's holds the current time)."""
    tmp = path.with_name(path.name + ".partial")
    scipy.io.savemat(str(tmp), {"d_iner": d_iner}, format="5", do_compression=True)
    with open(tmp, "r+b") as fh:
        fh.write(_MAT_HEADER.ljust(116, b" "))
    os.replace(tmp, path)


def _readme(params: dict[str, Any], motions: tuple[Motion, ...], omitted: list[str]) -> str:
    lines = [
        "Synthetic action dataset in the UTD-MHAD layout (sakdn.data.synthetic).",
        "",
        "Files",
        "  Inertial/a{A}_s{S}_t{T}_inertial.mat  MAT v5 (zlib), one variable d_iner, float64",
        "      N x 6: columns 1-3 acceleration in g (gravity included), 4-6 angular rate in",
        "      deg/s, both in the wrist sensor's own moving frame, sampled at imu_rate Hz.",
        "  RGB/a{A}_s{S}_t{T}_color.avi          MJPEG, frame_size x frame_size RGB at fps.",
        "  classes.txt                           class names, line A = action A, label A-1.",
        "  class_vectors.npy                     float32 (classes x 16), row k = class k:",
        "      dense, word-vector-like embeddings of the motion attributes below",
        "      (sakdn.data.synthetic.class_vectors).",
        "  generator.json                        the parameters that wrote this folder.",
        "",
        "Timing",
        "  A recording has F video frames (F/fps seconds) and N = round(F * imu_rate / fps) IMU",
        "  samples covering the same interval, so F = round(N * fps / imu_rate).",
        "  F = max(8, round(duration * fps * subject tempo * U(0.9, 1.1))), tempo ~ U(0.85, 1.2).",
        "",
        "Content",
        "  Each class is a right-hand gesture: a 3-D path (shape, plane, sense, size, cycles)",
        "  and a wrist attitude signature (roll/pitch/yaw amplitudes, oscillations per",
        "  recording). Per subject: tempo, amplitude, hand position, skin, sleeve and torso",
        "  colours, camera distance and the sensor's placement on the wrist (a rotation of its",
        "  frame). Per repetition: rest",
        "  before/after, time warp, amplitude, a small tilt of the plane, wrist-signature gain",
        "  and a class-independent wrist wobble.",
        "  acc = R^T (p''/g + y_up), gyro = vee(R^T R') in deg/s, plus noise and bias, rounded",
        "  to 1e-3 g and 1e-2 deg/s. The video shows the hand as a small (5 cm) shaded,",
        "  motion-blurred disc (perspective projection, camera 1.8-2.6 m away per subject:",
        "  depth motion barely changes it) with a forearm in a sleeve of any colour and the",
        "  subject's torso, in one cluttered room shared by all recordings (so the background",
        "  never tells the class), with occluders in front, camera shake, flicker and pixel",
        "  noise (std 0.05). The sensors carry the action clearly; the video is ambiguous.",
        "  Pairs that look alike on video but differ in the sensors: circle clockwise /",
        "  counter clockwise, swipe left / right, push forward / pull back.",
        "",
        "Classes (A: name - shape, axes, sense, size m, cycles, twist rad, twist cycles)",
    ]
    for a, m in enumerate(motions, start=1):
        lines.append(f"  {a}: {m.name} - {m.shape}, {m.axes}, {m.sense:+d}, {m.size}, "
                     f"{m.cycles}, {m.twist}, {m.twist_cycles}")
    lines += [
        "",
        "Omitted recordings (absent in every modality, like UTD-MHAD's corrupt ones): "
        + (", ".join(omitted) if omitted else "none"),
        "",
        "Parameters: " + json.dumps(params, sort_keys=True),
        "",
    ]
    return "\n".join(lines)


def write_synthetic(
    out_dir: str | Path,
    seed: int = 0,
    classes: int = 8,
    subjects: int = 16,
    repetitions: int = 4,
    frame_size: int = 64,
    duration: float = 2.0,
    fps: float = 15,
    imu_rate: float = 50,
    omit: tuple[str, ...] = OMIT,
) -> Path:
    """Write the dataset into ``out_dir`` (created; must be empty) and return it.

    The same arguments give byte-identical files. Recording keys in ``omit`` (``a2_s3_t4`` by
    default, when inside the grid) are left out in every modality, mimicking UTD-MHAD's gaps.
    """
    _check("seed", seed, isinstance(seed, int) and seed >= 0, "must be an integer >= 0")
    _check("classes", classes, 2 <= classes <= len(MOTIONS), f"must be in 2..{len(MOTIONS)}")
    _check("subjects", subjects, subjects >= 1, "must be >= 1")
    _check("repetitions", repetitions, repetitions >= 1, "must be >= 1")
    _check("frame_size", frame_size, 16 <= frame_size <= 512, "must be in 16..512")
    _check("duration", duration, 0 < duration <= 60, "must be in (0, 60] seconds")
    _check("fps", fps, 0 < fps <= 120, "must be in (0, 120]")
    _check("imu_rate", imu_rate, fps <= imu_rate <= 2000, "must be in [fps, 2000]")
    from sakdn.data.video import write_video  # PyAV and torch: only when writing

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(str(out), "output folder exists and is not empty")
    (out / "Inertial").mkdir(parents=True, exist_ok=True)
    (out / "RGB").mkdir(exist_ok=True)
    motions = MOTIONS[:classes]
    people = {s: _subject(seed, s) for s in range(1, subjects + 1)}
    side = frame_size + 2 * max(1, round(_JITTER * frame_size / 64))
    room = _room(seed, side)
    scenes = {s: _with_torso(room, subject) for s, subject in people.items()}
    omitted = []
    for a, m in enumerate(motions, start=1):
        for s, subject in people.items():
            for t in range(1, repetitions + 1):
                key = f"a{a}_s{s}_t{t}"
                if key in omit:
                    omitted.append(key)
                    continue
                rng = np.random.default_rng([seed, 2, a, s, t])
                take = _take(rng, subject, duration, fps)
                _write_mat(out / "Inertial" / f"{key}_inertial.mat",
                           _inertial(m, subject, take, fps, imu_rate, rng))
                frames = _render(m, subject, take, scenes[s], frame_size, rng)
                write_video(out / "RGB" / f"{key}_color.avi", frames, fps=fps, codec="mjpeg")
    (out / "classes.txt").write_text("".join(m.name + "\n" for m in motions), encoding="utf-8")
    np.save(out / "class_vectors.npy", class_vectors(motions))
    params = _params(seed, classes, subjects, repetitions, frame_size, duration, fps, imu_rate,
                     omit)
    (out / "README.txt").write_text(_readme(params, motions, omitted), encoding="utf-8")
    (out / "generator.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return out


def _params(seed: int, classes: int, subjects: int, repetitions: int, frame_size: int,
            duration: float, fps: float, imu_rate: float, omit: tuple[str, ...]) -> dict[str, Any]:
    return {
        "version": VERSION, "seed": seed, "classes": classes, "subjects": subjects,
        "repetitions": repetitions, "frame_size": frame_size, "duration": float(duration),
        "fps": float(fps), "imu_rate": float(imu_rate), "omit": sorted(omit),
    }


def ensure_synthetic(root: str | Path, seed: int = 0, **options: Any) -> Path:
    """The dataset at ``root``, written first when ``root`` is missing (or an empty folder).

    Written into a temporary sibling folder and renamed into place, so an interrupted write
    never leaves a half dataset at ``root``; concurrent callers (parallel trials) are safe.
    An existing ``root`` written with other parameters raises DatasetError.
    """
    root = Path(root)
    defaults = {
        name: p.default for name, p in inspect.signature(write_synthetic).parameters.items()
        if name not in ("out_dir", "seed")
    }
    unknown = set(options) - set(defaults)
    if unknown:
        raise ConfigError("synthetic", sorted(unknown), "unknown generator options")
    wanted = _params(seed, **{**defaults, **options})
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if root.exists():
        _check_existing(root, wanted)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is meant to be shared
    try:
        write_synthetic(tmp, seed=seed, **options)
        try:
            os.rename(tmp, root)
        except OSError:
            if not root.exists():
                raise
            # Another process finished first; its copy is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _check_existing(root, wanted)
    return root


def _check_existing(root: Path, wanted: dict[str, Any]) -> None:
    meta = root / "generator.json"
    try:
        found = json.loads(meta.read_text())
    except (OSError, ValueError):
        raise DatasetError(
            str(root), "exists but holds no complete synthetic dataset (no readable "
            "generator.json); delete it or choose another data.root"
        ) from None
    diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: has {a!r}, wanted {b!r}" for k, (a, b) in sorted(diff.items()))
        raise DatasetError(str(root), f"synthetic dataset written with other parameters ({shown})")


def scan_synthetic(root: str, config: DataConfig) -> Scan:
    """The synthetic dataset at ``root``, written first (seed 0) when ``root`` does not exist.

    An existing dataset (any generator parameters, e.g. a small one written by
    ``sakdn data synth``) is read as it is, in the UTD-MHAD layout with the class names of its
    ``classes.txt``; one written by another generator version is refused.
    """
    meta = Path(root) / "generator.json"
    if not meta.exists():
        path = ensure_synthetic(root)
    else:
        found = json.loads(meta.read_text()).get("version")
        if found != VERSION:
            raise DatasetError(str(root), f"synthetic dataset written by generator version "
                               f"{found}, this is version {VERSION}; delete the folder to "
                               "write it anew")
        path = Path(root)
    names = read_class_names(Path(path) / "classes.txt")
    return scan_utd(path, class_names=names, dataset="synthetic", subjects=None)


ADAPTER = DatasetAdapter(
    name="synthetic",
    scan=scan_synthetic,
    read_sensor=read_inertial_sensor,
    protocols=UTD_ADAPTER.protocols,  # the UTD-MHAD layout, and its protocols
    sensor_names=UTD_ADAPTER.sensor_names,
)
