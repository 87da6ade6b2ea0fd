"""The preprocessing cache on fixture trees: built once, reused without decoding anything,
resumable after an interruption, identical when built in parallel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sakdn.data.cache as cache
import sakdn.data.video as video
from sakdn.cli import main
from sakdn.config import load_config
from sakdn.data import load_index
from sakdn.data.cache import PreprocessSpec, cache_key, prepare
from sakdn.errors import DatasetError
from tests.data.fixtures import write_berkeley, write_mmact, write_utd

WRITERS = {"utd_mhad": write_utd, "berkeley_mhad": write_berkeley, "mmact": write_mmact}
SPEC = PreprocessSpec(image_size=16, frame_size=16, max_frames=64)


def index_of(dataset: str, root: Path, **flat):
    cfg = load_config(overrides={"data.dataset": dataset, "data.root": str(root), **flat})
    return load_index(cfg.data)


class Counter:
    """Counts calls of a wrapped function (or refuses them)."""

    def __init__(self, fn=None):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.fn is None:
            raise AssertionError("the second run must not read any dataset file")
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_second_prepare_decodes_nothing(dataset: str, tmp_path: Path, monkeypatch, capsys) -> None:
    WRITERS[dataset](tmp_path / "root")
    args = ["data", "prepare", "--dataset", dataset, "--root", str(tmp_path / "root"),
            "--set", "train.progress=false", "--set", "gaf.image_size=16",
            "--set", "data.frame_size=16", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    decoded, sensors = Counter(video._scan), Counter(cache.read_sensor)
    pgms = Counter(video.read_pgm)
    monkeypatch.setattr(video, "_scan", decoded)
    monkeypatch.setattr(video, "read_pgm", pgms)
    monkeypatch.setattr(cache, "read_sensor", sensors)
    assert main([*args, "--workers", "0"]) == 0
    assert sensors.calls > 0 and decoded.calls + pgms.calls > 0  # the first run reads
    first = capsys.readouterr().out

    for name in ("_scan", "read_pgm"):
        monkeypatch.setattr(video, name, Counter())
    monkeypatch.setattr(cache, "read_sensor", Counter())
    assert main([*args, "--workers", "2"]) == 0
    second = capsys.readouterr().out
    assert "preprocessing cache hit" in second
    entry = first.split("cache ready: ")[1].split(" ")[0]
    assert f"cache ready: {entry} " in second


def test_interrupted_build_resumes(tmp_path: Path, monkeypatch) -> None:
    write_utd(tmp_path / "root", actions=(1, 10), trials=(1, 2))
    index = index_of("utd_mhad", tmp_path / "root")
    jobs = len(index.recordings()) + len(index)
    real = cache._work
    done = []

    def interrupt_after_five(*args):
        if len(done) == 5:
            raise KeyboardInterrupt
        done.append(args[:2])
        return real(*args)

    monkeypatch.setattr(cache, "_work", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        prepare(index, SPEC, tmp_path / "cache")
    entry = tmp_path / "cache" / cache_key(index, SPEC)
    assert not (entry / "manifest.json").exists()
    assert len(list((entry / "parts").iterdir())) == 5  # finished items are kept

    resumed = Counter(real)
    monkeypatch.setattr(cache, "_work", resumed)
    data = prepare(index, SPEC, tmp_path / "cache")
    assert resumed.calls == jobs - 5
    assert not (entry / "parts").exists()

    monkeypatch.setattr(cache, "_work", real)
    fresh = prepare(index, SPEC, tmp_path / "fresh")
    assert np.array_equal(np.asarray(data.gaf), np.asarray(fresh.gaf))
    assert np.array_equal(np.asarray(data.frames), np.asarray(fresh.frames))
    assert np.array_equal(data.frame_offsets, fresh.frame_offsets)


def test_parallel_build_equals_serial(tmp_path: Path) -> None:
    write_berkeley(tmp_path / "root")
    index = index_of("berkeley_mhad", tmp_path / "root")
    serial = prepare(index, SPEC, tmp_path / "serial", workers=0)
    parallel = prepare(index, SPEC, tmp_path / "parallel", workers=2)
    assert serial.manifest["sample_keys"] == parallel.manifest["sample_keys"]
    assert np.array_equal(np.asarray(serial.gaf), np.asarray(parallel.gaf))
    assert np.array_equal(np.asarray(serial.frames), np.asarray(parallel.frames))


def test_samples_skipped_once_are_not_silently_reused(tmp_path: Path) -> None:
    write_utd(tmp_path / "root", actions=(1,), trials=(1, 2))
    bad = tmp_path / "root" / "RGB" / "a1_s2_t2_color.avi"
    bad.write_bytes(b"\x00" * 64)
    index = index_of("utd_mhad", tmp_path / "root")
    data = prepare(index, SPEC, tmp_path / "cache", skip_bad=True)
    assert data.manifest["skipped"] == ["a1_s2_t2"]
    assert "a1_s2_t2" not in data.row_of_key and len(data.sample_keys) == len(index) - 1
    with pytest.raises(DatasetError, match="unreadable video") as err:
        prepare(index, SPEC, tmp_path / "cache", skip_bad=False)
    assert str(bad) in str(err.value)


def test_changed_frame_folder_makes_a_new_entry(tmp_path: Path) -> None:
    write_berkeley(tmp_path / "root")
    index = index_of("berkeley_mhad", tmp_path / "root")
    before = cache_key(index, SPEC)
    folder = Path(index[0].video)
    last = sorted(folder.iterdir())[-1]
    n = int(last.stem[-5:])
    (folder / f"{last.stem[:-5]}{n + 1:05d}.pgm").write_bytes(last.read_bytes())
    assert cache_key(index_of("berkeley_mhad", tmp_path / "root"), SPEC) != before
