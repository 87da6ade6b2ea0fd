from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io

import sakdn.data.synthetic as synthetic
import sakdn.data.video as video
from sakdn.config import DataConfig
from sakdn.data import load_index
from sakdn.data.index import carve_validation, split
from sakdn.data.synthetic import MOTIONS, class_vectors, ensure_synthetic, write_synthetic
from sakdn.data.utd_mhad import read_class_names, read_utd
from sakdn.errors import ConfigError, DatasetError

SMALL = dict(classes=3, subjects=2, repetitions=2, frame_size=32, duration=1.0)
NAME = re.compile(r"a(\d+)_s(\d+)_t(\d+)_(inertial|color)\.(mat|avi)")


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _decode(path: Path) -> np.ndarray:
    """All frames as (T, H, W, 3) uint8, straight from PyAV (not the project's reader)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _check_files(root: Path, frame_size: int, fps: float = 15, imu_rate: float = 50) -> int:
    """Every .mat and .avi is readable by the independent readers; returns the recording count."""
    mats = {NAME.fullmatch(p.name).group(1, 2, 3): p for p in (root / "Inertial").iterdir()}
    avis = {NAME.fullmatch(p.name).group(1, 2, 3): p for p in (root / "RGB").iterdir()}
    assert mats.keys() == avis.keys()
    for ident, mat in mats.items():
        d_iner = scipy.io.loadmat(str(mat))["d_iner"]
        assert d_iner.dtype == np.float64 and d_iner.ndim == 2 and d_iner.shape[1] == 6
        assert np.isfinite(d_iner).all()
        frames = _decode(avis[ident])
        assert frames.shape[1:] == (frame_size, frame_size, 3) and frames.dtype == np.uint8
        assert len(frames) == round(len(d_iner) * fps / imu_rate)  # README: F = round(N·fps/rate)
    return len(mats)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("syn") / "small", seed=0, **SMALL)


def test_small_dataset_files_are_readable(small):
    assert _check_files(small, SMALL["frame_size"]) == 3 * 2 * 2
    names = (small / "classes.txt").read_text().splitlines()
    assert names == [m.name for m in MOTIONS[:3]]
    vectors = np.load(small / "class_vectors.npy")
    assert vectors.dtype == np.float32 and vectors.shape[0] == 3
    assert "d_iner" in (small / "README.txt").read_text()
    assert json.loads((small / "generator.json").read_text())["seed"] == 0


def test_same_seed_same_bytes_other_seed_other_bytes(small, tmp_path):
    again = write_synthetic(tmp_path / "again", seed=0, **SMALL)
    assert _hashes(again) == _hashes(small)
    other = _hashes(write_synthetic(tmp_path / "other", seed=1, **SMALL))
    first = _hashes(small)
    for name, digest in other.items():
        if name.startswith(("Inertial", "RGB")):
            assert digest != first[name], name


def test_sensors_follow_the_physics_at_rest(small):
    """Before the gesture starts the hand is still: |acc| ≈ 1 g (gravity only), gyro ≈ 0."""
    for mat in (small / "Inertial").iterdir():
        d_iner = scipy.io.loadmat(str(mat))["d_iner"]
        assert abs(np.linalg.norm(d_iner[0, :3]) - 1.0) < 0.1, mat.name
        assert np.linalg.norm(d_iner[0, 3:]) < 15.0, mat.name  # deg/s: bias + noise only
        assert np.abs(d_iner[:, :3]).max() <= 8 and np.abs(d_iner[:, 3:]).max() <= 1000
        assert np.ptp(d_iner[:, 3:], axis=0).max() > 30.0  # the wrist does turn


def test_reader_pairs_the_synthetic_files(small):
    index = read_utd(small, class_names=read_class_names(small / "classes.txt"),
                     dataset="synthetic")
    assert len(index) == 12 and index.num_classes == 3
    for s in index:
        a, subj, t = NAME.fullmatch(Path(s.video).name).group(1, 2, 3)
        assert NAME.fullmatch(Path(s.sensor_file("acc")).name).group(1, 2, 3) == (a, subj, t)
        assert (int(a) - 1, int(subj), int(t)) == (s.label, s.subject, s.repetition)


def test_related_classes_have_closer_vectors():
    vectors = class_vectors(MOTIONS)
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    names = [m.name for m in MOTIONS]
    for a, b in [("circle clockwise", "circle counter clockwise"),
                 ("swipe left", "swipe right"), ("push forward", "pull back")]:
        i, j = names.index(a), names.index(b)
        assert dist[i].argmin() == j and dist[j].argmin() == i


@pytest.mark.parametrize("classes", [8, len(MOTIONS)])
def test_class_vectors_are_dense_like_word_vectors(classes):
    """No coordinate near 0 (the reference ablation weights divide by single coordinates),
    the attributes' distances kept up to scale, and norms like GloVe class vectors (5-24)."""
    from sakdn.data.synthetic import class_attributes

    raw = class_vectors(MOTIONS[:classes])
    assert raw.shape == (classes, 16) and raw.dtype == np.float32
    vectors = raw.astype(np.float64)
    assert (np.abs(vectors) > 1e-3).all()  # dense: the attribute vectors are 55 % zeros
    assert (class_attributes(MOTIONS[:classes]) == 0).mean() > 0.5
    assert np.sqrt((vectors**2).mean()) == pytest.approx(1.75, rel=1e-5)
    norms = np.linalg.norm(vectors, axis=1)
    assert 5 < norms.min() and norms.max() < 10
    a = class_attributes(MOTIONS[:classes])
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)[np.triu_indices(classes, 1)]
    dv = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)[np.triu_indices(classes, 1)]
    assert np.corrcoef(da, dv)[0, 1] > 0.9  # rotation + a small per-class part


def test_bad_parameters(tmp_path):
    with pytest.raises(ConfigError, match="synthetic.classes"):
        write_synthetic(tmp_path / "x", classes=1)
    with pytest.raises(ConfigError, match="synthetic.imu_rate"):
        write_synthetic(tmp_path / "x", fps=30, imu_rate=20)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        write_synthetic(tmp_path / "full", **SMALL)


def test_ensure_writes_once_and_checks_parameters(tmp_path):
    root = tmp_path / "data" / "syn"
    assert ensure_synthetic(root, seed=0, **SMALL) == root
    before = _hashes(root)
    stamp = (root / "generator.json").stat().st_mtime_ns
    assert ensure_synthetic(root, seed=0, **SMALL) == root
    assert (root / "generator.json").stat().st_mtime_ns == stamp and _hashes(root) == before
    assert [p.name for p in root.parent.iterdir()] == ["syn"]  # no temporary folder left
    assert root.stat().st_mode & 0o755 == 0o755  # readable by others, like any written folder
    with pytest.raises(DatasetError, match="seed"):
        ensure_synthetic(root, seed=1, **SMALL)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="generator.json"):
        ensure_synthetic(foreign, **SMALL)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_video(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = video.write_video
    monkeypatch.setattr(video, "write_video", failing_video)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path / "syn", **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_default_dataset_through_the_adapter(tmp_path):
    """The full default dataset (8 classes × 16 subjects × 4 repetitions), written on first use
    by the ``synthetic`` adapter, split as experiments/synthetic.yaml splits it."""
    root = tmp_path / "synthetic"
    index = load_index(DataConfig(dataset="synthetic", root=str(root)))
    n = _check_files(root, frame_size=64)
    assert len(index) == n == 8 * 16 * 4 - 1  # a2_s3_t4 is omitted, as documented
    assert "a2_s3_t4" not in {s.key for s in index}
    assert "a2_s3_t4" in (root / "README.txt").read_text()
    assert index.class_names == tuple(read_class_names(root / "classes.txt"))
    assert np.load(root / "class_vectors.npy").shape[0] == index.num_classes == 8

    train, test = split(index, "cross_subject")
    assert train.subjects() == tuple(range(1, 16, 2)) and test.subjects() == tuple(range(2, 17, 2))
    assert (len(train), len(test)) == (255, 256)
    fit, val = carve_validation(train, 0.3, seed=0)  # experiments/synthetic.yaml's split
    assert len(val.subjects()) == 3 and not set(fit.subjects()) & set(val.subjects())
    assert len(val) >= 95  # one validation clip is about one point of accuracy
    train, test = split(index, "trial")
    assert {s.repetition for s in train} == {1, 2} and (len(train), len(test)) == (256, 255)


def test_adapter_refuses_a_dataset_of_another_generator_version(small, tmp_path):
    """Content changes bump VERSION; a folder written by another version is not read silently."""
    import shutil

    root = tmp_path / "old"
    shutil.copytree(small, root)
    meta = json.loads((root / "generator.json").read_text())
    assert meta["version"] == synthetic.VERSION
    meta["version"] = synthetic.VERSION - 1
    (root / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=f"version {synthetic.VERSION - 1}"):
        load_index(DataConfig(dataset="synthetic", root=str(root)))


def test_imu_readings_of_a_uniform_circle():
    """Hand-computed case: a sensor on a turntable (radius r, rate w about the camera axis z,
    its x axis pointing outward). In its own frame: centripetal acc (−w²r/g₀, 0, 0), gravity
    Rᵀŷ = (sin wt, cos wt, 0), and gyro (0, 0, w) in deg/s."""
    r, w, dt = 0.2, 3.0, 1e-3
    t = np.arange(2000) * dt
    c, s = np.cos(w * t), np.sin(w * t)
    pos = np.stack([r * c, r * s, np.zeros_like(t)], axis=1)
    rot = np.zeros((len(t), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    acc, gyro = synthetic.imu_readings(pos, rot, dt)
    expected = np.stack([-w * w * r / synthetic.GRAVITY + s, c, np.zeros_like(t)], axis=1)
    np.testing.assert_allclose(acc[2:-2], expected[2:-2], atol=1e-5)
    np.testing.assert_allclose(gyro[2:-2], np.tile([0, 0, np.degrees(w)], (len(t) - 4, 1)),
                               atol=1e-3)
