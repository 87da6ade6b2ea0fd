"""Timestamped sensor files as real copies hold them: cut short, rows out of order, repeated
timestamps, gaps. Every file is written in its release format (Berkeley-MHAD Shimmer text,
MMAct CSV); the expectations come from the rows the test wrote."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import load_config
from sakdn.data.berkeley_mhad import read_shimmer
from sakdn.data.cache import PreprocessSpec, prepare
from sakdn.data.check import check_dataset, run_check
from sakdn.data.mmact import read_mmact_csv
from sakdn.errors import DatasetError
from tests.data.fixtures import mmact_lines, write_berkeley, write_mmact, write_shimmer

START = 1309539264.038020  # a Berkeley-MHAD Unix time (2011)


def shimmer_rows(n: int = 60, seed: int = 0) -> np.ndarray:
    """(n, 4) rows ``ax ay az t``: values in ±1 g, the release's alternating 22 / 45 ms steps."""
    t = START + np.concatenate([[0.0], np.cumsum(np.resize([0.022, 0.045], n - 1))])
    acc = np.round(np.random.default_rng(seed).uniform(-1, 1, (n, 3)), 6)
    return np.column_stack([acc, t])


def config(dataset: str, root: Path, **flat):
    return load_config(overrides={
        "data.dataset": dataset, "data.root": str(root), "train.progress": False,
        "gaf.image_size": 16, "data.frame_size": 16, "semantics.provider": "none", **flat})


def report(cfg) -> tuple[int, str]:
    out = io.StringIO()
    return check_dataset(cfg, out=out), out.getvalue()


# ------------------------------------------------------------------- a file cut in its last line


def test_a_line_cut_anywhere_is_never_read_as_data(tmp_path: Path) -> None:
    """Every cut inside the last line (the issue's 47 cut points: a partial time such as
    ``130`` was read as 130 s and sorted to the front) is a truncated file; only the line
    whole but for its newline is a row, and it is read as written."""
    rows = shimmer_rows()
    whole = tmp_path / "acc.txt"
    write_shimmer(whole, rows)
    raw = whole.read_bytes()
    last = raw[:-1].rfind(b"\n") + 1
    line = raw[last:-1].decode()
    cut = tmp_path / "cut.txt"
    for keep in range(1, len(line)):  # 1 .. all-but-one characters of the last line
        cut.write_bytes(raw[:last + keep])
        with pytest.raises(DatasetError) as err:
            read_shimmer(cut)
        assert err.value.kind == "truncated_file", (keep, err.value.problem)
        assert err.value.path == str(cut)
        assert err.value.problem.startswith(f"truncated: the last line ({len(rows)}) has no "
                                            f"newline and is cut off")
        assert repr(line[:keep].strip()) in err.value.problem
    cut.write_bytes(raw[:-1])  # only the newline missing: a whole row
    signal = read_shimmer(cut)
    assert np.array_equal(signal.values, rows[:, :3])
    assert np.allclose(signal.times, rows[:, 3], rtol=0, atol=1e-6)


def test_a_cut_file_stops_the_check_and_training(tmp_path: Path) -> None:
    tree = write_berkeley(tmp_path / "B")
    s, a, r = tree.with_shimmers[0]
    path = tree.root / "Accelerometer" / "Shimmer03" / f"acc_h03_s{s:02d}_a{a:02d}_r{r:02d}.txt"
    raw = path.read_bytes()
    path.write_bytes(raw[:raw[:-1].rfind(b"\n") + 31])  # "ax ay az 130": 3 digits of the time
    cfg = config("berkeley_mhad", tree.root, **{"data.cache_dir": str(tmp_path / "cache")})
    code, text = report(cfg)
    assert code == 1 and "error: truncated or corrupt sensor file (1)" in text
    found = [p for p in run_check(cfg).problems if p.kind == "truncated_file"]
    assert [(p.path, p.severity) for p in found] == [(str(path), "error")]
    assert found[0].message.endswith("restore the file, or delete that line to use the rows "
                                     "before it")
    assert len(found[0].samples) == sum(view[2] == (s, a, r) for view in tree.views)
    from sakdn.data import load_index

    with pytest.raises(DatasetError) as err:  # before any epoch: the cache build reads it
        prepare(load_index(cfg.data), PreprocessSpec(image_size=16, frame_size=16),
                tmp_path / "cache")
    assert found[0].line in str(err.value)


def test_a_row_outside_the_recording_span_is_an_error(tmp_path: Path) -> None:
    """A cut time that kept (or got back) its newline still names itself: ~41 years before
    the other rows is no part of a 2-second recording."""
    rows = shimmer_rows()
    path = tmp_path / "acc.txt"
    write_shimmer(path, rows)
    text = path.read_text().splitlines()
    text[-1] = text[-1].rsplit(" ", 1)[0] + " 130"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetError) as err:
        read_shimmer(path)
    assert err.value.kind == "bad_timestamps"
    assert err.value.problem.startswith(f"line {len(rows)}: its timestamp lies 1.31e+09 s "
                                        f"before the recording's other {len(rows) - 1} row(s)")


def test_release_files_read_without_timing_remarks(tmp_path: Path) -> None:
    tree = write_berkeley(tmp_path / "B")
    files = sorted((tree.root / "Accelerometer").glob("Shimmer*/acc_*.txt"))
    timings = {read_shimmer(p).timing for p in files}
    assert len(files) == 42 and all(t.backward == t.repeated == t.gaps == 0 for t in timings)


# ---------------------------------------------------------- rows out of order, repeated, gaps


def _mmact_file_with_quirks(path: Path) -> tuple[list[datetime.datetime], np.ndarray]:
    """100 Hz rows with 6 jumps back of 1–45 ms, 2 repeated timestamps carrying other values
    and one row stored twice; returns the rows as stored."""
    base = datetime.datetime(2018, 10, 16, 13, 37, 28, 612000)
    n = 120
    stamps = [base + datetime.timedelta(milliseconds=10 * i) for i in range(n)]
    values = np.column_stack([np.sin(np.arange(n) / 5), np.cos(np.arange(n) / 7),
                              np.linspace(-9.9, -9.7, n)]) + 0.25
    for i, back in zip((10, 25, 40, 55, 70, 85), (1, 4, 13, 22, 38, 45)):
        stamps[i] = stamps[i - 1] - datetime.timedelta(milliseconds=back)
    for i in (30, 95):
        stamps[i] = stamps[i - 1]  # same time, other values
    stamps.insert(101, stamps[100])
    values = np.insert(values, 101, values[100], axis=0)  # the same row twice
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(mmact_lines(stamps, values)) + "\r\n").encode())
    return stamps, values


def test_mmact_rows_out_of_order_and_repeated_are_reported(tmp_path: Path) -> None:
    tree = write_mmact(tmp_path / "M")
    rec = tree.recordings[4]
    path = tree.sensor_files[("acc_phone", rec)]
    stamps, values = _mmact_file_with_quirks(path)
    cfg = config("mmact", tree.root)
    code, text = report(cfg)
    assert code == 0, text  # warnings: the data stays usable
    found = [p for p in run_check(cfg).problems if p.path == str(path)]
    assert [(p.kind, p.severity) for p in found] == [("row_order", "warning")]
    assert found[0].message == (
        "sensor acc_phone: 6 row(s) out of time order (back by 1–45 ms), sorted; 3 row(s) "
        "repeating an earlier timestamp dropped (2 with other values, 1 identical); 121 rows "
        "stored")
    assert f"{path}: sensor acc_phone: 6 row(s) out of time order" in text

    # read as before: sorted by time (stable), the first row of a repeated time kept
    order = sorted(range(len(stamps)), key=lambda i: stamps[i])
    first = [i for k, i in enumerate(order) if k == 0 or stamps[i] != stamps[order[k - 1]]]
    signal = read_mmact_csv(path)
    assert np.allclose(signal.values, values[first], rtol=1e-6)
    assert len(signal.values) == len(stamps) - 3


def test_mmact_line_cut_in_its_timestamp_is_a_truncated_file(tmp_path: Path) -> None:
    base = datetime.datetime(2018, 10, 16, 13, 37, 28, 612000)
    stamps = [base + datetime.timedelta(milliseconds=10 * i) for i in range(30)]
    lines = mmact_lines(stamps, np.ones((30, 3)))
    path = tmp_path / "walking.csv"
    for cut in (5, 20, 22):  # "20181", "20181016_13:37:28.9", "…28.901"
        path.write_bytes(("\r\n".join(lines[:-1]) + "\r\n" + lines[-1][:cut]).encode())
        with pytest.raises(DatasetError) as err:
            read_mmact_csv(path)
        assert err.value.kind == "truncated_file" and "line (30)" in err.value.problem
    path.write_bytes(("\r\n".join(lines)).encode())  # whole, only the last CRLF missing
    assert len(read_mmact_csv(path).values) == 30


def test_gaps_between_timestamps_are_warned(tmp_path: Path) -> None:
    rows = shimmer_rows()
    step = rows[40, 3] - rows[39, 3]
    rows[40:, 3] += 2.5  # the sensor fell silent for 2.5 s
    path = tmp_path / "acc.txt"
    write_shimmer(path, rows)
    timing = read_shimmer(path).timing
    assert timing.gaps == 1 and timing.largest_gap_s == pytest.approx(2.5 + step, abs=1e-5)
    from sakdn.data.validate import timing_problems

    (problem,) = timing_problems(timing, str(path), "shimmer01")
    assert (problem.kind, problem.severity) == ("time_gaps", "warning")
    assert problem.message.startswith("sensor shimmer01: 1 gap(s) longer than 10 median steps")
