"""`sakdn data check`: each kind of bad file gives its message, the exit code, and training
stopping with the same lines (structural problems in load_index, content ones in the cache)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sakdn.cli import main
from sakdn.config import load_config
from sakdn.data import load_index
from sakdn.data.cache import PreprocessSpec, prepare
from sakdn.data.check import check_dataset, run_check
from sakdn.data.problems import Problem, Scan, format_report, raise_blocking
from sakdn.errors import DatasetError
from tests.data.fixtures import write_berkeley, write_mat, write_mmact, write_utd


def config(dataset: str, root: Path, **overrides):
    flat = {"data.dataset": dataset, "data.root": str(root), "train.progress": False,
            "data.cache_dir": str(root.parent / "cache"), "gaf.image_size": 16,
            "data.frame_size": 16, "semantics.provider": "none"}
    flat.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(overrides=flat)


def report(cfg) -> tuple[int, str]:
    out = io.StringIO()
    code = check_dataset(cfg, out=out)
    return code, out.getvalue()


@pytest.fixture
def utd(tmp_path: Path) -> Path:
    return write_utd(tmp_path / "UTD-MHAD", actions=(1, 10), trials=(1, 2, 3)).root


def problems_of(cfg, kind: str) -> list[Problem]:
    return [p for p in run_check(cfg).problems if p.kind == kind]


# ------------------------------------------------------------------------------ clean trees


def test_clean_trees_are_usable(tmp_path: Path) -> None:
    write_utd(tmp_path / "u")
    write_berkeley(tmp_path / "b")
    write_mmact(tmp_path / "m")
    for dataset, root in (("utd_mhad", "u"), ("berkeley_mhad", "b"), ("mmact", "m")):
        code, text = report(config(dataset, tmp_path / root))
        assert code == 0, text
        assert "result: usable" in text
        assert not [p for p in run_check(config(dataset, tmp_path / root)).problems
                    if p.severity in ("fatal", "error")]


# ------------------------------------------------------------------- one test per problem kind


def test_missing_modality(utd: Path) -> None:
    (utd / "RGB" / "a10_s2_t3_color.avi").unlink()
    cfg = config("utd_mhad", utd)
    code, text = report(cfg)
    assert code == 1
    assert f"{utd / 'Inertial' / 'a10_s2_t3_inertial.mat'}: no color video" in text
    assert "error: missing modality (1)" in text
    # listed, then left out when bad samples may be skipped
    code, text = report(config("utd_mhad", utd, data__skip_bad_samples=True))
    assert code == 0 and "no color video" in text


def test_unreadable_video(utd: Path) -> None:
    video = utd / "RGB" / "a1_s1_t2_color.avi"
    video.write_bytes(b"RIFF but not really an AVI file" * 10)
    found = problems_of(config("utd_mhad", utd), "unreadable_video")
    assert [p.path for p in found] == [str(video)]
    assert found[0].samples == ("a1_s1_t2",) and found[0].severity == "error"
    assert run_check(config("utd_mhad", utd)).exit_code == 1


def test_truncated_video(utd: Path) -> None:
    video = utd / "RGB" / "a1_s2_t1_color.avi"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    found = problems_of(config("utd_mhad", utd), "truncated_video")
    assert [p.path for p in found] == [str(video)]
    assert "truncated" in found[0].message


def test_truncated_pgm_sequence(tmp_path: Path) -> None:
    tree = write_berkeley(tmp_path / "B")
    cluster, c, (s, a, r) = tree.views[0]
    folder = tmp_path / "B" / "Camera" / f"Cluster{cluster:02d}" / f"Cam{c:02d}" / f"S{s:02d}" / \
        f"A{a:02d}" / f"R{r:02d}"
    frames = sorted(folder.iterdir())
    frames[-1].write_bytes(frames[-1].read_bytes()[:500])  # a cut-off frame file
    found = problems_of(config("berkeley_mhad", tmp_path / "B"), "truncated_video")
    assert [p.path for p in found] == [str(frames[-1])]
    frames[-1].unlink()
    frames[1].unlink()  # a gap in the frame numbers
    found = problems_of(config("berkeley_mhad", tmp_path / "B"), "truncated_video")
    assert [p.path for p in found] == [str(folder)]
    assert "1 of" in found[0].message and "missing: 1" in found[0].message


def test_mat_without_d_iner(utd: Path) -> None:
    path = utd / "Inertial" / "a10_s1_t1_inertial.mat"
    write_mat(path, {"inertial": np.zeros((50, 6))})
    found = problems_of(config("utd_mhad", utd), "bad_mat")
    assert len(found) == 1  # one file holds both sensors: reported once
    assert found[0].line == f"{path}: no variable 'd_iner' (found: ['inertial'])"


def test_mat_with_wrong_shape(utd: Path) -> None:
    path = utd / "Inertial" / "a1_s2_t3_inertial.mat"
    write_mat(path, {"d_iner": np.ones((80, 5))})
    found = problems_of(config("utd_mhad", utd), "bad_mat")
    assert [p.line for p in found] == [f"{path}: d_iner has shape (80, 5), expected (T, 6)"]


def test_unreadable_mat(utd: Path) -> None:
    path = utd / "Inertial" / "a1_s1_t1_inertial.mat"
    path.write_bytes(b"not a mat file at all")
    found = problems_of(config("utd_mhad", utd), "unreadable_file")
    assert [p.path for p in found] == [str(path)]


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.97])
def test_truncated_mat_is_named_as_such(utd: Path, keep: float) -> None:
    """A cut inertial file: scipy says "could not read bytes" or "index out of range"; the
    check says what it is, and training stops on the same line."""
    path = utd / "Inertial" / "a10_s2_t1_inertial.mat"
    raw = path.read_bytes()
    path.write_bytes(raw[:round(keep * len(raw))])
    cfg = config("utd_mhad", utd)
    found = problems_of(cfg, "truncated_file")
    assert [(p.path, p.severity) for p in found] == [(str(path), "error")]
    assert found[0].message.startswith("truncated or corrupt MAT file: ")
    if keep > 0.1:  # past the 128-byte header: the element it stops in
        assert f"the file ends at byte {round(keep * len(raw))}, inside the data element at " \
            "byte 128" in found[0].message
    index = load_index(config("utd_mhad", utd).data)
    with pytest.raises(DatasetError) as err:
        prepare(index, PreprocessSpec.from_config(cfg), utd.parent / "cache")
    assert found[0].line in str(err.value)


def test_csv_with_bad_columns(tmp_path: Path) -> None:
    tree = write_mmact(tmp_path / "M")
    path = tree.sensor_files[("gyro", tree.recordings[3])]
    lines = path.read_text().splitlines()
    lines[4] = lines[4] + ",0.5"
    path.write_text("\n".join(lines) + "\n")
    found = problems_of(config("mmact", tmp_path / "M"), "bad_columns")
    assert [p.line for p in found] == [
        f"{path}: line 5 has 5 comma-separated fields, expected 4 (timestamp,x,y,z)"
    ]


def test_csv_with_bad_timestamps(tmp_path: Path) -> None:
    tree = write_mmact(tmp_path / "M")
    path = tree.sensor_files[("orientation", tree.recordings[4])]
    lines = path.read_text().splitlines()
    lines[2] = "2018-10-16 13:37:28.612" + lines[2][lines[2].index(","):]
    path.write_text("\n".join(lines) + "\n")
    found = problems_of(config("mmact", tmp_path / "M"), "bad_timestamps")
    assert len(found) == 1 and found[0].path == str(path)
    assert found[0].message.startswith("line 3: timestamp '2018-10-16 13:37:28.612' is not")


def test_nan_signal(utd: Path) -> None:
    path = utd / "Inertial" / "a1_s1_t3_inertial.mat"
    d = scipy.io.loadmat(str(path))["d_iner"]
    d[7, 4] = np.nan
    write_mat(path, {"d_iner": d})
    found = problems_of(config("utd_mhad", utd), "nan_signal")
    assert [p.line for p in found] == [
        f"{path}: sensor gyro: 1 non-finite value(s), the first nan at sample 7, axis y"
    ]


def test_constant_signal_is_a_warning(utd: Path) -> None:
    path = utd / "Inertial" / "a10_s2_t2_inertial.mat"
    d = scipy.io.loadmat(str(path))["d_iner"]
    d[:, 0] = 0.25  # a dead accelerometer axis
    write_mat(path, {"d_iner": d})
    result = run_check(config("utd_mhad", utd))
    found = [p for p in result.problems if p.kind == "constant_signal"]
    assert [(p.path, p.severity) for p in found] == [(str(path), "warning")]
    assert "axis x constant" in found[0].message
    assert result.exit_code == 0


def test_recording_too_short_for_the_gaf(utd: Path) -> None:
    path = utd / "Inertial" / "a1_s2_t2_inertial.mat"
    write_mat(path, {"d_iner": np.random.default_rng(0).standard_normal((10, 6))})
    ok = problems_of(config("utd_mhad", utd, gaf__image_size=64), "too_short")
    assert ok == []  # 10 samples: enough for 64x64 (each sample at most 16x16 pixels)
    found = problems_of(config("utd_mhad", utd, gaf__image_size=224), "too_short")
    assert {p.message for p in found} == {
        f"sensor {s}: 10 sample(s); a 224x224 GAF needs at least 14" for s in ("acc", "gyro")
    }


def test_unknown_action_and_subject_codes(utd: Path) -> None:
    for stem in ("a28_s1_t1", "a1_s9_t1"):
        shutil.copy(utd / "Inertial" / "a1_s1_t1_inertial.mat",
                    utd / "Inertial" / f"{stem}_inertial.mat")
        shutil.copy(utd / "RGB" / "a1_s1_t1_color.avi", utd / "RGB" / f"{stem}_color.avi")
    result = run_check(config("utd_mhad", utd))
    lines = {p.kind: p.line for p in result.problems}
    assert lines["unknown_action"] == (
        f"{utd / 'RGB' / 'a28_s1_t1_color.avi'}: action a28 has no class name (actions are a1..a27)"
    )
    assert lines["unknown_subject"] == (
        f"{utd / 'RGB' / 'a1_s9_t1_color.avi'}: subject s9 is not one of s1..s8"
    )
    assert result.exit_code == 1


def test_unknown_mmact_codes(tmp_path: Path) -> None:
    write_mmact(tmp_path / "M")
    video = tmp_path / "M" / "trimmed" / "video" / "subject1" / "cam1" / "scene1" / "session1"
    shutil.copy(video / "walking.mp4", video / "moonwalking.mp4")
    shutil.copytree(video.parent.parent.parent, video.parents[3] / "subject21")
    shutil.copytree(video.parent.parent, video.parents[2] / "cam7")
    result = run_check(config("mmact", tmp_path / "M"))
    assert sorted((p.kind, p.path) for p in result.problems if p.severity == "error") == [
        ("unknown_action", str(video / "moonwalking.mp4")),
        ("unknown_code", str(video.parents[2] / "cam7")),
        ("unknown_subject", str(video.parents[3] / "subject21")),
    ]
    assert result.exit_code == 1


def test_duplicate_recordings(tmp_path: Path) -> None:
    tree = write_mmact(tmp_path / "M")
    rec = next(r for r in tree.recordings if r[3] == "carrying_light")
    n, k, m, _ = rec
    csv = tree.sensor_files[("gyro", rec)]
    shutil.copy(csv, csv.with_name("carrying_light.csv"))  # both spellings of one recording
    video = tmp_path / "M/trimmed/video" / f"subject{n}" / "cam1" / f"scene{k}" / f"session{m}"
    shutil.copy(video / "Carrying_light.mp4", video / "carrying_light.mp4")
    result = run_check(config("mmact", tmp_path / "M"))
    dups = sorted((p.path, p.samples) for p in result.problems if p.kind == "duplicate_recording")
    key = f"subject{n}_cam1_scene{k}_session{m}_carrying_light"
    assert dups == sorted([
        (str(csv.with_name("carrying_light.csv")), (key, key.replace("cam1", "cam4"))),
        (str(video / "carrying_light.mp4"), (key,)),
    ])
    assert result.exit_code == 1
    usable = load_index(config("mmact", tmp_path / "M", data__skip_bad_samples=True).data)
    assert not any(s.recording.endswith("carrying_light") for s in usable)


def test_empty_split_is_fatal(utd: Path) -> None:
    for p in utd.glob("*/*_s2_*"):
        p.unlink()
    code, text = report(config("utd_mhad", utd))
    assert code == 1
    assert "fatal: protocol split (1)" in text and "leaves the test split empty" in text
    (line,) = [t for t in text.splitlines() if "leaves the test split empty" in t]
    assert line.count(str(utd)) == 1  # the root once, not once per layer of the message


def test_a_refused_synthetic_folder_names_its_root_once(tmp_path: Path) -> None:
    from sakdn.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path / "syn", classes=2, subjects=1, repetitions=1,
                           frame_size=16, duration=0.5)
    meta = root / "generator.json"
    meta.write_text(meta.read_text().replace('"version": ', '"version": 1'))
    code, text = report(config("synthetic", root))
    (line,) = [t for t in text.splitlines() if "generator version" in t]
    assert code == 1 and line.count(str(root)) == 1


def test_missing_root_is_fatal(tmp_path: Path) -> None:
    for dataset in ("utd_mhad", "berkeley_mhad", "mmact"):
        code, text = report(config(dataset, tmp_path / "nowhere"))
        assert code == 1 and "fatal: dataset layout (1)" in text


# ------------------------------------------------------------ the same checks before training


def test_training_stops_with_the_check_lines(utd: Path) -> None:
    (utd / "Inertial" / "a1_s1_t1_inertial.mat").unlink()  # structural: load_index
    nan = utd / "Inertial" / "a10_s2_t1_inertial.mat"  # content: the cache build
    d = scipy.io.loadmat(str(nan))["d_iner"]
    d[3, 0] = np.inf
    write_mat(nan, {"d_iner": d})
    cfg = config("utd_mhad", utd)
    lines = {p.line for p in run_check(cfg).problems}
    assert len(lines) == 2

    with pytest.raises(DatasetError) as structural:
        load_index(cfg.data)
    index = load_index(config("utd_mhad", utd, data__skip_bad_samples=True).data)
    with pytest.raises(DatasetError) as content:
        prepare(index, PreprocessSpec.from_config(cfg), utd.parent / "cache")
    found = [line for line in lines if line in str(structural.value)]
    found += [line for line in lines if line in str(content.value)]
    assert sorted(found) == sorted(lines)
    assert "data.skip_bad_samples=true" in str(content.value)


def test_raise_blocking_lists_every_error() -> None:
    from sakdn.data.index import SampleIndex

    index = SampleIndex("x", "/r", ("a",), ("s",), ())
    problems = tuple(Problem("bad_columns", f"/r/f{i}.csv", "line 1 has 3 fields")
                     for i in range(3))
    scan = Scan(index, problems + (Problem("constant_signal", "/r/g.csv", "flat", "warning"),))
    with pytest.raises(DatasetError) as err:
        raise_blocking(scan, skip_bad=False, root="/r")
    assert format_report(problems, 20) in str(err.value)
    assert raise_blocking(scan, skip_bad=True, root="/r") == index


def test_cli_check_exit_codes(utd: Path, capsys) -> None:
    assert main(["data", "check", "--dataset", "utd_mhad", "--root", str(utd),
                 "--set", "train.progress=false"]) == 0
    (utd / "RGB" / "a1_s1_t1_color.avi").write_bytes(b"\0" * 100)
    assert main(["data", "check", "--dataset", "utd_mhad", "--root", str(utd),
                 "--set", "train.progress=false"]) == 1
    out = capsys.readouterr().out
    assert "unreadable video (1)" in out and "result: NOT usable" in out


def test_parallel_check_finds_the_same_problems(utd: Path) -> None:
    (utd / "RGB" / "a1_s1_t1_color.avi").write_bytes(b"\0" * 100)
    write_mat(utd / "Inertial" / "a10_s1_t2_inertial.mat", {"d_iner": np.zeros((40, 4))})
    serial = run_check(config("utd_mhad", utd)).problems
    parallel = run_check(config("utd_mhad", utd, data__num_workers=2)).problems
    assert sorted(p.line for p in serial) == sorted(p.line for p in parallel)
    assert len(serial) == 2


def test_left_out_samples_are_logged(tmp_path: Path) -> None:
    tree = write_mmact(tmp_path / "M")
    logged: list[str] = []
    index = load_index(config("mmact", tmp_path / "M").data, log=logged.append)
    assert len(index) == len(tree.clips) - 4  # two recordings lacking a sensor, two views each
    assert logged == ["mmact: left out: 2 missing sensor (skipped); "
                      "`sakdn data check` lists every file"]
    bad = tree.root / "trimmed/video/subject1/cam1/scene1/session1/moonwalking.mp4"
    bad.write_bytes(b"")
    logged.clear()
    load_index(config("mmact", tmp_path / "M", data__skip_bad_samples=True).data,
               log=logged.append)
    assert f"{bad}: action 'moonwalking' is not one of the 35 MMAct classes" in logged[0]
