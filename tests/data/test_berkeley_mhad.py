"""Berkeley-MHAD adapter on a fixture tree in the release layout (Shimmer text, Bayer PGMs)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import load_config
from sakdn.data import load_index, scan_dataset
from sakdn.data.berkeley_mhad import BERKELEY_CLASSES, SENSOR_NAMES, read_shimmer
from sakdn.data.cache import PreprocessSpec, prepare
from sakdn.data.index import split
from tests.data.fixtures import write_berkeley, write_shimmer


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_berkeley(tmp_path_factory.mktemp("berkeley") / "BerkeleyMHAD")


def data_config(root: Path, **flat):
    return load_config(overrides={"data.dataset": "berkeley_mhad", "data.root": str(root),
                                  **flat}).data


def test_one_sample_per_camera_view_with_sensors(tree) -> None:
    index = load_index(data_config(tree.root))
    # every written view whose recording has its accelerometer files (the others are skipped)
    expected = {view for view in tree.views if view[2] in tree.with_shimmers}
    got = {(int(re.search(r"_l(\d+)", s.key).group(1)), int(re.search(r"_c(\d+)", s.key).group(1)),
            (s.subject, s.action, s.repetition)) for s in index}
    assert got == expected
    assert len(index) == len(expected) == 13
    views = {(cluster, c): s.view for (cluster, c, _), s in zip(sorted(expected), index)}
    assert views == {(1, 1): 1, (3, 1): 9}  # global camera numbers 1..12


def test_protocol_subjects_1_to_7_train(tree) -> None:
    index = load_index(data_config(tree.root))
    train, test = split(index, "cross_subject")
    usable = [view for view in tree.views if view[2] in tree.with_shimmers]
    assert len(train) == sum(rec[0] <= 7 for _, _, rec in usable) == 7
    assert len(test) == sum(rec[0] >= 8 for _, _, rec in usable) == 6
    assert {s.subject for s in train} == {1} and {s.subject for s in test} == {8}


def test_pairing_shares_subject_action_repetition(tree) -> None:
    index = load_index(data_config(tree.root))
    for s in index:
        codes = re.search(r"S(\d+)/A(\d+)/R(\d+)$", s.video).groups()
        assert tuple(map(int, codes)) == (s.subject, s.action, s.repetition)
        assert [name for name, _ in s.sensors] == list(SENSOR_NAMES)
        for name, path in s.sensors:
            m = re.fullmatch(r"acc_h(\d+)_s(\d+)_a(\d+)_r(\d+)\.txt", Path(path).name)
            assert int(m.group(1)) == int(name[-2:])
            assert tuple(map(int, m.groups()[1:])) == (s.subject, s.action, s.repetition)
            assert Path(path).parent.name == f"Shimmer{int(name[-2:]):02d}"
    # the views of one recording share one sensor set
    by_rec = {}
    for s in index:
        by_rec.setdefault(s.recording, set()).add(s.sensors)
    assert all(len(v) == 1 for v in by_rec.values())


def test_class_order_is_official(tree) -> None:
    index = load_index(data_config(tree.root))
    assert index.class_names == BERKELEY_CLASSES and len(BERKELEY_CLASSES) == 11
    assert index.class_names[0] == "jumping in place" and index.class_names[10] == "stand up"
    assert all(s.label == s.action - 1 for s in index)


def test_missing_shimmer_policy(tmp_path: Path) -> None:
    tree = write_berkeley(tmp_path / "B")
    rec = tree.with_shimmers[0]
    missing = tmp_path / "B" / "Accelerometer" / "Shimmer04" / \
        "acc_h04_s{:02d}_a{:02d}_r{:02d}.txt".format(*rec)
    missing.unlink()
    views = sum(r == rec for _, _, r in tree.views)

    skip = scan_dataset(data_config(tmp_path / "B", **{"data.missing_sensor": "skip"}))
    policy = [p for p in skip.problems if p.kind == "missing_sensor"]
    assert [(p.path, p.severity, len(p.samples)) for p in policy] == [
        (str(missing), "skipped", views)
    ]
    assert len(skip.usable()) == 13 - views

    zero = scan_dataset(data_config(tmp_path / "B", **{"data.missing_sensor": "zero_fill"}))
    assert [p.severity for p in zero.problems if p.kind == "missing_sensor"] == ["info"]
    index = zero.usable()
    assert len(index) == 13
    kept = [s for s in index if (s.subject, s.action, s.repetition) == rec]
    assert [n for n, _ in kept[0].sensors] == [n for n in SENSOR_NAMES if n != "shimmer04"]
    data = prepare(index, PreprocessSpec(image_size=16, frame_size=16), tmp_path / "cache")
    images, mask = data.sensors(data.row_of_key[kept[0].key])
    assert mask.tolist() == [True, True, True, False, True, True]
    assert not np.any(np.asarray(images[3])) and np.asarray(images[2]).max() > 0


def test_shimmer_reader_orders_rows_by_time(tmp_path: Path) -> None:
    t = 1309539264.038020 + np.array([0.0, 0.022, 0.067, 0.089, 0.134])
    acc = np.arange(15, dtype=float).reshape(5, 3) / 10
    rows = np.column_stack([acc, t])[[0, 2, 1, 3, 4]]  # two rows swapped
    write_shimmer(tmp_path / "acc.txt", rows)
    assert np.allclose(read_shimmer(tmp_path / "acc.txt").values, acc)


def test_glitch_values_are_kept(tree) -> None:
    """Values beyond the ±2 g range (the release's rare glitches) are read as stored."""
    peaks = [np.abs(read_shimmer(p).values).max() for p in
             sorted((tree.root / "Accelerometer").glob("Shimmer*/acc_*.txt"))]
    assert max(peaks) == pytest.approx(50.25) and sorted(peaks)[-2] <= 2.0


def test_frames_are_demosaiced(tree, tmp_path: Path) -> None:
    index = load_index(data_config(tree.root))
    data = prepare(index, PreprocessSpec(image_size=16, frame_size=48, max_frames=64),
                   tmp_path / "cache")
    for s in index:
        clip = np.asarray(data.clip(data.row_of_key[s.key]))
        rec = (s.subject, s.action, s.repetition)
        assert clip.shape == (tree.frames[rec], 48, 48, 3)
        # the flat background (rows away from the moving square) has the scene's colour
        background = clip[:, 20:, :].reshape(-1, 3).astype(int)
        assert np.abs(np.median(background, axis=0) - tree.colours[rec]).max() <= 2
