"""The benchmark scripts run in their smallest mode and report what they claim to measure.

Fast: ``data_path.py --quick`` and ``memory.py --quick`` (seconds), the GAF benchmark on a few
signals, and the benchmarks' pure bookkeeping on hand-made inputs. The three that run searches
(``search_efficiency``, ``teacher_reuse``, ``orchestration``) start Ray and take about a minute
each even in ``--quick`` mode: marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))


def run_script(name: str, tmp_path: Path, *extra: str, timeout: int = 300) -> dict:
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(BENCH / f"{name}.py"), "--workdir", str(tmp_path / name),
           "--json", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| " in done.stdout  # a table was printed
    return json.loads(out.read_text())


# --- pure bookkeeping -----------------------------------------------------------------------


def _trial(index: int, accs: list[float], seconds_per_epoch: float, completed: bool = True):
    results = [{"stage": "teacher", "epoch": 1, "time_total_s": 1.0}]
    for e, acc in enumerate(accs, start=1):
        results.append({"stage": "student", "epoch": e, "student/val_acc": acc,
                        "time_total_s": 1.0 + e * seconds_per_epoch})
    if completed:
        results[-1]["completed"] = True
    return {"index": index, "id": str(index), "config": {}, "results": results}


def test_compute_until_counts_earlier_trials_and_the_reaching_epoch():
    from search_efficiency import compute_until

    trials = [_trial(1, [0.2, 0.3, 0.4], 2.0),          # 3 epochs, 7 s, never reaches
              _trial(2, [0.3, 0.5], 1.0, completed=False),  # pruned after 2 epochs, 3 s
              _trial(3, [0.4, 0.9, 0.95], 3.0)]           # reaches at its epoch 2, 7 s in
    out = compute_until(trials, target=0.8)
    assert out["reached"]
    assert out["epochs_to_target"] == 3 + 2 + 2
    assert out["seconds_to_target"] == pytest.approx(7.0 + 3.0 + 7.0)
    assert out["total_epochs"] == 8
    assert out["total_seconds"] == pytest.approx(7.0 + 3.0 + 10.0)
    assert out["stopped_early"] == 1
    assert out["best_val_acc"] == 0.95


def test_compute_until_unreached_target_counts_everything():
    from search_efficiency import compute_until

    trials = [_trial(1, [0.2, float("nan")], 1.0), _trial(2, [0.5], 4.0)]
    out = compute_until(trials, target=0.9)
    assert not out["reached"]
    assert out["epochs_to_target"] == out["total_epochs"] == 3
    assert out["seconds_to_target"] == pytest.approx(3.0 + 5.0)
    assert out["best_val_acc"] == 0.5


def test_slope_is_the_least_squares_slope():
    from memory import slope

    xs = [1.0, 2.0, 4.0]
    ys = [3.0 * x + 1.0 for x in xs]
    assert slope(xs, ys) == pytest.approx(3.0)
    assert slope([1.0, 2.0, 3.0], [1.0, 0.0, 2.0]) == pytest.approx(0.5)


def test_teacher_seconds_replaces_the_first_epoch_by_the_median():
    from teacher_reuse import teacher_seconds

    results = [{"stage": "teacher", "time_this_iter_s": 9.0},  # start-up included
               {"stage": "teacher", "time_this_iter_s": 1.0},
               {"stage": "teacher", "time_this_iter_s": 3.0},
               {"stage": "teacher", "time_this_iter_s": 2.0},
               {"stage": "student", "time_this_iter_s": 5.0}]
    assert teacher_seconds(results) == pytest.approx(4 * 2.0)


# --- the scripts ----------------------------------------------------------------------------


def test_data_path_quick_serves_the_same_samples_from_cache_and_files(tmp_path):
    out = run_script("data_path", tmp_path, "--quick")
    loader = {r["path"]: r for r in out["results"]["loader"]}
    assert set(loader) == {"cache", "on the fly"}
    assert loader["cache"]["samples_per_pass"] == loader["on the fly"]["samples_per_pass"] > 0
    delta = loader["on the fly"]["max_abs_delta_vs_cache"]
    assert delta["frames"] == 0.0 and delta["label"] == 0.0  # same clips, same TSN indices
    assert delta["sensors"] <= 2.0 ** -11  # GAF in [0, 1]: only the cache's float16 rounding
    for row in out["results"]["student_stage"]:
        assert 0.0 < row["data_wait_s"] < row["wall_s"]
    trial = out["results"]["trial"]
    parts = sum(v for k, v in trial.items() if k != "trial wall time")
    assert parts == pytest.approx(trial["trial wall time"])


def test_memory_quick_reads_the_whole_cache_through_the_maps(tmp_path):
    out = run_script("memory", tmp_path, "--quick", "--subjects", "2")
    (size,) = out["results"]["sizes"]
    scan = size["scan"]
    caches = list((tmp_path / "memory" / "data").glob("*/.sakdn-cache/*/frames.npy"))
    assert len(caches) == 1
    frames = np.load(caches[0])  # read independently, into memory
    assert scan["checksum"] == int(frames.sum(dtype=np.uint64))
    assert size["cache_mb"] > 0
    assert scan["touched"]["RssFile"] >= scan["before"]["RssFile"]
    assert size["trial"]["after"]["VmHWM"] >= size["trial"]["after"]["VmRSS"] > 0


def test_gaf_throughput_runs_on_a_few_signals(tmp_path):
    cmd = [sys.executable, str(BENCH / "gaf_throughput.py"), "--recordings", "8", "--sizes",
           "16", "--repeats", "1", "--no-pyts"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sakdn sensor_images" in done.stdout and "numpy copy" in done.stdout


@pytest.mark.slow
def test_search_efficiency_quick_runs_three_searches(tmp_path):
    out = run_script("search_efficiency", tmp_path, "--quick", timeout=600)
    searches = {s["method"]: s for s in out["results"]["searches"]}
    assert set(searches) == {"no pruning", "Optuna median", "Tune ASHA"}
    assert searches["no pruning"]["total_epochs"] == 3 * 3  # nothing stopped early
    assert searches["no pruning"]["stopped_early"] == 0
    for s in searches.values():
        assert s["trials"] == 3
        assert s["total_epochs"] <= 9


@pytest.mark.slow
def test_teacher_reuse_quick_trains_teachers_once_with_the_store(tmp_path):
    out = run_script("teacher_reuse", tmp_path, "--quick", timeout=600)
    store, no_store = out["results"]["searches"]
    assert out["results"]["same_configs"] == 2  # both trials are the sampler's random start-up
    assert store["teacher_sets_trained"] == 1 and store["store_hits"] == 1
    assert no_store["teacher_sets_trained"] == no_store["trials"] == 2


@pytest.mark.slow
def test_orchestration_quick_times_both_sides(tmp_path):
    out = run_script("orchestration", tmp_path, "--quick", timeout=600)
    res = out["results"]
    assert len(res["tune"]["train_s"]) == len(res["loop"]["train_s"]) == 2
    assert res["tune"]["wall_s"] > sum(res["tune"]["train_s"])
    assert res["gap_median_s"] > 0
