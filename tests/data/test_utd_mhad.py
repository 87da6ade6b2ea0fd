from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sakdn.config import DataConfig
from sakdn.data import load_index
from sakdn.data.index import split
from sakdn.data.registry import get_adapter
from sakdn.data.utd_mhad import UTD_CLASSES, load_inertial, read_class_names, read_utd
from sakdn.errors import ConfigError, DatasetError

ACTIONS, SUBJECTS, TRIALS = (1, 2, 10), (1, 2), (1, 2, 3, 4)
MISSING = "a10_s1_t4"  # absent in every modality, like UTD-MHAD's corrupt recordings


def _d_iner(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.normal(0, 0.3, (n, 3)) + [0, 0, 1], rng.normal(0, 50, (n, 3))], 1)


@pytest.fixture()
def utd_root(tmp_path: Path) -> Path:
    """A small UTD-MHAD tree: a1/a2/a10 (natural-sort trap), 2 subjects, 4 trials, one gap.

    Videos are split over RGB-part1 and RGB-part2; Depth/ files must be ignored. The reader
    does not decode videos, so placeholder bytes stand in for them.
    """
    rng = np.random.default_rng(0)
    for folder in ("Inertial", "Depth", "RGB-part1", "RGB-part2"):
        (tmp_path / folder).mkdir()
    for a in ACTIONS:
        for s in SUBJECTS:
            for t in TRIALS:
                stem = f"a{a}_s{s}_t{t}"
                if stem == MISSING:
                    continue
                scipy.io.savemat(tmp_path / "Inertial" / f"{stem}_inertial.mat",
                                 {"d_iner": _d_iner(100 + a + s + t, rng)}, format="5",
                                 do_compression=True)
                part = "RGB-part1" if a < 10 else "RGB-part2"
                (tmp_path / part / f"{stem}_color.avi").write_bytes(b"avi")
                (tmp_path / "Depth" / f"{stem}_depth.mat").write_bytes(b"depth")
    (tmp_path / "Inertial" / "notes.txt").write_text("not a recording")
    return tmp_path


def test_reader_pairs_videos_with_inertial_files_in_natural_order(utd_root):
    index = read_utd(utd_root)
    assert index.dataset == "utd_mhad" and index.class_names == UTD_CLASSES
    assert len(index) == len(ACTIONS) * len(SUBJECTS) * len(TRIALS) - 1
    keys = [s.key for s in index]
    assert MISSING not in keys
    assert keys.index("a2_s2_t4") < keys.index("a10_s1_t1")  # a10 after a2, not before
    assert [s.action for s in index] == sorted(s.action for s in index)
    for s in index:
        video, inertial = Path(s.video), Path(s.sensor_file("acc"))
        assert video.name == f"a{s.action}_s{s.subject}_t{s.repetition}_color.avi"
        assert inertial.name == f"a{s.action}_s{s.subject}_t{s.repetition}_inertial.mat"
        assert s.sensor_file("gyro") == str(inertial)
        assert video.is_file() and inertial.is_file()
        assert s.label == s.action - 1 and s.recording == s.key
    assert index[keys.index("a10_s2_t1")].label == 9
    assert index.class_names[9] == "right hand draw circle (counter clockwise)"


def test_reader_protocols_on_the_small_tree(utd_root):
    index = read_utd(utd_root)
    train, test = split(index, "cross_subject")
    assert train.subjects() == (1,) and test.subjects() == (2,)
    assert (len(train), len(test)) == (11, 12)  # subject 1 lacks a10_s1_t4
    train, test = split(index, "trial")
    assert (len(train), len(test)) == (12, 11)


def test_unpaired_recordings_are_reported_or_skipped(utd_root):
    (utd_root / "RGB-part1" / "a2_s1_t3_color.avi").unlink()
    (utd_root / "Inertial" / "a1_s2_t2_inertial.mat").unlink()
    with pytest.raises(DatasetError) as err:
        read_utd(utd_root)
    assert "a2_s1_t3_inertial.mat" in str(err.value)
    assert "a1_s2_t2_color.avi" in str(err.value)
    index = read_utd(utd_root, skip_unpaired=True)
    keys = {s.key for s in index}
    assert len(index) == 21 and "a2_s1_t3" not in keys and "a1_s2_t2" not in keys


def test_recording_stored_twice_is_an_error(utd_root):
    (utd_root / "RGB").mkdir()
    (utd_root / "RGB" / "a1_s1_t1_color.avi").write_bytes(b"avi")
    with pytest.raises(DatasetError, match="a1_s1_t1_color.avi"):
        read_utd(utd_root)


def test_bad_roots_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        read_utd(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="Inertial"):
        read_utd(tmp_path)
    (tmp_path / "Inertial").mkdir()
    with pytest.raises(DatasetError, match="RGB"):
        read_utd(tmp_path)


def test_own_class_names_and_actions_beyond_them(utd_root):
    names = tuple(f"class {i}" for i in range(10))
    index = read_utd(utd_root, class_names=names, dataset="synthetic")
    assert index.class_names == names and index.dataset == "synthetic"
    with pytest.raises(DatasetError, match="a10"):
        read_utd(utd_root, class_names=names[:5])


def test_load_inertial_returns_d_iner(tmp_path):
    x = np.arange(18, dtype=np.float64).reshape(3, 6)
    scipy.io.savemat(tmp_path / "ok.mat", {"d_iner": x})
    out = load_inertial(tmp_path / "ok.mat")
    assert out.dtype == np.float64 and out.shape == (3, 6)
    np.testing.assert_array_equal(out, x)


def test_load_inertial_errors_name_the_file(tmp_path):
    cases = {
        "missing_key.mat": lambda p: scipy.io.savemat(p, {"d_skel": np.zeros((4, 6))}),
        "wrong_shape.mat": lambda p: scipy.io.savemat(p, {"d_iner": np.zeros((4, 5))}),
        "text.mat": lambda p: p.write_text("this is not a MAT file\n" * 20),
        "empty.mat": lambda p: p.write_bytes(b""),
    }
    problems = {"missing_key.mat": "d_iner", "wrong_shape.mat": r"\(4, 5\)",
                "text.mat": "not a readable", "empty.mat": "not a readable"}
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(DatasetError, match=problems[name]) as err:
            load_inertial(path)
        assert str(path) in str(err.value)
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_inertial(tmp_path / "absent.mat")
    assert "absent.mat" in str(err.value)


def test_read_class_names(tmp_path):
    (tmp_path / "classes.txt").write_text("wave \n\n clap\nknock")
    assert read_class_names(tmp_path / "classes.txt") == ("wave", "clap", "knock")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty.txt"):
        read_class_names(tmp_path / "empty.txt")


def test_adapter_registry(utd_root):
    config = DataConfig(dataset="utd_mhad", root=str(utd_root))
    scan = get_adapter("utd_mhad").scan(str(utd_root), config)
    assert len(scan.index) == 23 and not scan.problems
    assert len(load_index(config)) == 23
    with pytest.raises(ConfigError) as err:
        get_adapter("kinetics")
    assert "utd_mhad" in str(err.value) and "synthetic" in str(err.value)
