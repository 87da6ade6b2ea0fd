"""Outliers: glitch values as the Berkeley-MHAD release holds them (rows of 28 or 61 g from a
±2 g accelerometer) are reported with counts per file and kept; real movement is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sakdn.config import load_config
from sakdn.data.berkeley_mhad import read_shimmer
from sakdn.data.check import run_check
from sakdn.data.sensors import SensorSignal
from sakdn.data.validate import signal_problems
from tests.data.fixtures import write_berkeley, write_mmact, write_shimmer, write_utd


def config(dataset: str, root: Path):
    return load_config(overrides={
        "data.dataset": dataset, "data.root": str(root), "train.progress": False,
        "gaf.image_size": 16, "data.frame_size": 16, "semantics.provider": "none"})


def motion(n: int = 200, seed: int = 0) -> np.ndarray:
    """(n, 3) arm-like acceleration in g, saturating at the sensor's ±2 g."""
    t = np.arange(n) / 30
    rng = np.random.default_rng(seed)
    acc = 1.5 * np.sin(2 * np.pi * np.array([0.7, 1.1, 0.4]) * t[:, None])
    return np.clip(acc + 0.05 * rng.standard_normal((n, 3)), -2, 2)


def test_glitches_are_reported_with_counts_per_file_and_kept(tmp_path: Path) -> None:
    tree = write_berkeley(tmp_path / "B")
    s, a, r = tree.with_shimmers[1]
    path = tree.root / "Accelerometer" / "Shimmer05" / f"acc_h05_s{s:02d}_a{a:02d}_r{r:02d}.txt"
    rows = np.loadtxt(path)
    rows[7, 0], rows[30, 2] = 60.75, 28.25  # one glitch on x, one on z
    write_shimmer(path, rows)
    result = run_check(config("berkeley_mhad", tree.root))
    assert result.exit_code == 0
    found = [p for p in result.problems if p.path == str(path)]
    assert [(p.kind, p.severity) for p in found] == [("outliers", "warning")]
    x_share = np.ptp(np.delete(rows[:, 0], 7)) / np.ptp(rows[:, 0])
    z_share = np.ptp(np.delete(rows[:, 2], 30)) / np.ptp(rows[:, 2])
    assert x_share < 0.06 and z_share < 0.12  # what the glitches do to the GAF's range
    assert found[0].message == (
        f"sensor shimmer05: axis x: 1 outlier(s) (the farthest 60.75, median "
        f"{np.median(rows[:, 0]):.3g}); the other values fill {x_share:.0%} of the axis' range; "
        f"axis z: 1 outlier(s) (the farthest 28.25, median {np.median(rows[:, 2]):.3g}); the "
        f"other values fill {z_share:.0%} of the axis' range (kept as stored)")
    assert len(found[0].samples) == sum(view[2] == (s, a, r) for view in tree.views)
    values = read_shimmer(path).values
    assert values[7, 0] == 60.75 and values[30, 2] == 28.25  # kept as stored


def test_a_glitch_on_a_saturating_axis_is_found() -> None:
    acc = motion()
    acc[100, 1] = 28.25
    (problem,) = signal_problems(SensorSignal(acc), "f.txt", "shimmer02", 64)
    assert problem.kind == "outliers" and problem.message.startswith(
        "sensor shimmer02: axis y: 1 outlier(s) (the farthest 28.25")


def test_movement_is_not_an_outlier() -> None:
    """A resting sensor that moves briefly (a few samples lift together) and the swings of
    an active one are the signal, not glitches, however much they dominate the range."""
    rest = 0.01 * np.random.default_rng(1).standard_normal((200, 3)) + [0.0, 0.0, 1.0]
    rest[120:125, 0] += [0.8, 2.5, 3.0, 2.2, 0.6]  # a short, sharp movement
    assert signal_problems(SensorSignal(rest), "f.txt", "acc", 64) == []
    assert signal_problems(SensorSignal(motion()), "f.txt", "acc", 64) == []


def test_fixture_trees_have_no_outliers_but_the_written_glitch(tmp_path: Path) -> None:
    write_utd(tmp_path / "u")
    write_mmact(tmp_path / "m")
    tree = write_berkeley(tmp_path / "b")  # holds one glitch row of 50.25 g
    for dataset, root in (("utd_mhad", tmp_path / "u"), ("mmact", tmp_path / "m")):
        assert not [p for p in run_check(config(dataset, root)).problems if p.kind == "outliers"]
    found = [p for p in run_check(config("berkeley_mhad", tree.root)).problems
             if p.kind == "outliers"]
    assert len(found) == 1 and "axis x: 1 outlier(s) (the farthest 50.25" in found[0].message
