"""The benchmark scripts run in their smallest mode and report what they claim to measure.

Fast: ``data_path.py --quick`` and ``memory.py --quick`` (seconds), the GAF benchmark on a few
signals, and the benchmarks' pure bookkeeping on hand-made inputs. The four that run searches
(``search_efficiency``, ``teacher_reuse``, ``orchestration``, ``search_payoff``) start Ray and
take a minute or more each even in ``--quick`` mode: marked slow.
"""

from __future__ import annotations

import json
import math
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


def test_search_efficiency_on_the_main_data_keeps_the_files_data_and_epochs(monkeypatch, tmp_path):
    import search_efficiency as se

    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--data", "main"])
    main = se.parse_args()
    keys = se.overrides(main, se.dataset(main), tmp_path, {})
    assert se.dataset(main) is None
    assert not {"data.root", "data.frame_size", "teacher.epochs", "student.epochs"} & set(keys)
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py"])  # the small dataset
    small = se.parse_args()
    keys = se.overrides(small, tmp_path / "small", tmp_path, {})
    assert keys["data.root"] == tmp_path / "small" and keys["data.frame_size"] == 32
    assert (keys["teacher.epochs"], keys["student.epochs"]) == (4, 10)


def test_compute_until_unreached_target_counts_everything():
    from search_efficiency import compute_until

    trials = [_trial(1, [0.2, float("nan")], 1.0), _trial(2, [0.5], 4.0)]
    out = compute_until(trials, target=0.9)
    assert not out["reached"]
    assert out["epochs_to_target"] == out["total_epochs"] == 3
    assert out["seconds_to_target"] == pytest.approx(3.0 + 5.0)
    assert out["best_val_acc"] == 0.5


def test_hits_per_search_and_the_oracle_bound():
    from search_efficiency import compute_until, oracle_epochs

    trials = [_trial(1, [0.2, 0.3, 0.4, 0.5], 1.0),      # never reaches: the oracle stops it at 2
              _trial(2, [0.3, 0.9, 0.95, 0.9], 1.0),     # reaches at its epoch 2
              _trial(3, [0.2, 0.2, 0.85, 0.9], 1.0)]     # reaches at its epoch 3
    out = compute_until(trials, target=0.8)
    assert out["hits"] == 2
    assert out["epochs_per_hit"] == pytest.approx(12 / 2)
    assert out["epochs_to_target"] == 4 + 2
    curves = [[r["student/val_acc"] for r in t["results"][1:]] for t in trials]
    assert oracle_epochs(curves, target=0.8, epoch=2) == 2 + 2
    assert math.isnan(oracle_epochs(curves[:1], target=0.8, epoch=2))  # no hit to reach


def test_epoch_seconds_count_the_summary_report_as_a_median_epoch():
    from search_efficiency import epoch_seconds

    trial = _trial(1, [0.1, 0.2, 0.3, 0.4], 1.0)
    for r, t in zip(trial["results"][1:], [1.0, 3.0, 2.0, 40.0]):
        r["time_this_iter_s"] = t
    assert epoch_seconds(trial) == [1.0, 3.0, 2.0, 2.0]
    trial["results"][-1].pop("completed")  # stopped early: its last report is a plain epoch
    assert epoch_seconds(trial) == [1.0, 3.0, 2.0, 40.0]


def test_replay_prunes_curves_that_separate_early_and_keeps_every_hit():
    import optuna
    from search_efficiency import _asha_setting, _optuna_setting, replay

    good = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]  # apart from the first epoch on, reaches the target
    bad = [0.25] * 6
    pool = [good] * 6 + [bad] * 6
    settings = {
        "none": lambda curves: [len(c) for c in curves],
        "median": _optuna_setting(lambda: optuna.pruners.MedianPruner(
            n_startup_trials=1, n_warmup_steps=1)),
        "asha": _asha_setting(1, 2),
    }
    rows = {r["setting"]: r for r in replay(pool, settings, target=1.0, trials=12, orders=20,
                                            oracle_epoch=1)}
    assert rows["none"]["per_hit"] == 1.0 and rows["none"]["whole"] == 1.0
    assert rows["none"]["best_of_same_level"] == 1.0 and rows["none"]["best_lost"] == 0
    for name in ("median", "asha"):
        assert rows[name]["reached"] == 20  # no order lost its hits
        assert rows[name]["per_hit"] < 0.8 and rows[name]["whole"] < 0.8
        assert rows[name]["best"] == 1.0
        assert rows[name]["best_lost"] == 0  # the unpruned best is reached in every order
        assert rows[name]["best_of_whole"] <= rows["none"]["best_of_whole"]
        assert rows[name]["best_of_same_level"] <= 1.0
        # foresight at epoch 1 is a bound no rule acting at epoch 1 or later can beat
        assert rows[name]["best_oracle"] <= rows[name]["best_of_same_level"]


def test_replay_pruners_can_decide_on_another_signal_than_the_hits():
    from search_efficiency import _asha_setting, replay

    good, bad = [0.25, 0.25, 1.0, 1.0], [0.25] * 4  # accuracy: alike until epoch 3
    good_seen, bad_seen = [0.4, 0.5, 0.9, 0.9], [0.3] * 4  # apart from epoch 1 on
    pool, seen = [good] * 4 + [bad] * 8, [good_seen] * 4 + [bad_seen] * 8
    settings = {"none": lambda curves: [len(c) for c in curves], "asha": _asha_setting(1, 2)}
    on_acc, on_seen = ({r["setting"]: r for r in replay(
        pool, settings, target=1.0, trials=12, orders=20, signals=signals)}["asha"]
        for signals in (None, seen))
    assert on_acc["whole"] == 1.0  # ties at chance: nothing to decide on
    assert on_seen["whole"] < 1.0 and on_seen["best_lost"] == 0 and on_seen["reached"] == 20


def test_rank_agreement_per_epoch():
    from search_efficiency import rank_agreement

    pool = [[0.1, 0.2, 0.9], [0.2, 0.1, 0.5], [0.3, 0.0, 0.7]]  # best: 0.9, 0.5, 0.7
    signals = [[0.0, 3.0, 1.0], [1.0, 1.0, 2.0], [2.0, 2.0, 3.0]]
    rho = rank_agreement(pool, signals)
    assert rho == pytest.approx([-0.5, 1.0, -0.5])
    assert rank_agreement(pool, pool)[-1] == pytest.approx(1.0)
    tied = [[0.125, 3.0], [0.125, 1.0], [0.125, 2.0]]  # epoch 1: every trial at chance
    rho = rank_agreement(pool, tied)
    assert rho[0] != rho[0] and rho[1] == pytest.approx(1.0)


def test_to_unpruned_best_shares_of_the_whole_and_of_the_same_level():
    from search_efficiency import to_unpruned_best

    base = [[0.2, 0.4, 0.3], [0.3, 0.6, 0.5]]  # best 0.6; 0.55 first reached at epoch 3 + 2
    pruned = [[0.2], [0.58, 0.6]]  # the first trial stopped after 1 epoch: reaches at 1 + 1
    out = to_unpruned_best(pruned, base, epsilon=0.05)
    assert out["level"] == pytest.approx(0.55)
    assert (out["epochs"], out["base_epochs"], out["base_whole"]) == (2, 5, 6)
    assert out["of_whole"] == pytest.approx(2 / 6)
    assert out["of_same_level"] == pytest.approx(2 / 5)
    exact = to_unpruned_best(base, base, epsilon=0.0)  # its own best, to the float
    assert exact["epochs"] == 5 and exact["of_same_level"] == 1.0
    lost = to_unpruned_best([[0.2], [0.5, float("nan")]], base, epsilon=0.05)
    assert math.isnan(lost["epochs"]) and math.isnan(lost["of_whole"])


def test_against_unpruned_best_pairs_each_search_with_its_seeds_unpruned_search():
    from search_efficiency import BASE, against_unpruned_best

    rows = [{"method": BASE, "seed": 0, "curves": [[0.1, 0.9]]},
            {"method": BASE, "seed": 1, "curves": [[0.1, 0.2], [0.3, 0.5]]},
            {"method": "pruned", "seed": 1, "curves": [[0.1], [0.5]]},
            {"method": "pruned", "seed": 2, "curves": [[0.9]]}]  # no unpruned search: left out
    pairs = {(p["method"], p["seed"]): p for p in against_unpruned_best(rows, epsilon=0.0)}
    assert set(pairs) == {(BASE, 0), (BASE, 1), ("pruned", 1)}
    assert pairs[("pruned", 1)]["level"] == 0.5
    assert pairs[("pruned", 1)]["of_same_level"] == pytest.approx(2 / 4)
    assert pairs[(BASE, 0)]["of_whole"] == 1.0


def test_slope_is_the_least_squares_slope():
    from memory import slope

    xs = [1.0, 2.0, 4.0]
    ys = [3.0 * x + 1.0 for x in xs]
    assert slope(xs, ys) == pytest.approx(3.0)
    assert slope([1.0, 2.0, 3.0], [1.0, 0.0, 2.0]) == pytest.approx(0.5)


def test_stage_seconds_leave_out_the_start_up_and_the_summary():
    from teacher_reuse import stage_seconds

    results = [{"stage": "teacher", "time_this_iter_s": 9.0},  # start-up included
               {"stage": "teacher", "time_this_iter_s": 1.0},
               {"stage": "teacher", "time_this_iter_s": 3.0},
               {"stage": "teacher", "time_this_iter_s": 2.0},
               {"stage": "student", "time_this_iter_s": 5.0},
               {"stage": "student", "time_this_iter_s": 7.0},
               {"stage": "student", "time_this_iter_s": 30.0}]  # the run's summary included
    assert stage_seconds(results, "teacher") == pytest.approx(4 * 2.0)
    assert stage_seconds(results, "student") == pytest.approx(3 * 6.0)


def test_excess_optimism_takes_away_the_start_points_own_gap():
    from search_payoff import excess_optimism

    # chosen: 0.60 on validation, 0.75 on test (-0.15); start: 0.40 and 0.65 (-0.25), so the
    # selection added +0.10 on top of what the final training set and split do alone
    row = {"optimism": 0.60 - 0.75, "val_start": 0.40, "test_start": 0.65}
    assert excess_optimism(row) == pytest.approx(0.10)
    assert excess_optimism({**row, "val_start": None}) is None


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
    searches = {s["method"].split(" (")[0]: s for s in out["results"]["searches"]}
    assert set(searches) == {"no pruning", "Optuna median", "Tune ASHA"}
    assert searches["no pruning"]["total_epochs"] == 3 * 3  # nothing stopped early
    assert searches["no pruning"]["stopped_early"] == 0
    for s in searches.values():
        assert s["trials"] == 3
        assert s["total_epochs"] <= 9
        assert len(s["curves"]) == 3 and sum(map(len, s["curves"])) == s["total_epochs"]
        # the oracle stops only trials that never reach the target: never worse than the search
        assert not s["oracle_epochs"] > s["epochs_to_target"]
    pairs = {p["method"].split(" (")[0]: p for p in out["results"]["to_unpruned_best"]}
    assert set(pairs) == set(searches)
    assert pairs["no pruning"]["of_same_level"] == 1.0  # its own best, by its own epochs
    assert pairs["no pruning"]["base_whole"] == 9


@pytest.mark.slow
def test_teacher_reuse_quick_trains_teachers_once_with_the_store(tmp_path):
    out = run_script("teacher_reuse", tmp_path, "--quick", timeout=600)
    searches = {s["search"]: s for s in out["results"]["searches"]}
    assert out["results"]["same_configs"] == 2  # both trials are the sampler's random start-up
    assert out["results"]["same_results"] == 2  # wherever teachers and outputs came from
    no_store = searches["no store"]
    assert no_store["teacher_sets_trained"] == no_store["trials"] == 2
    for name in ("store, teachers", "store + outputs"):
        assert searches[name]["teacher_sets_trained"] == 1 and searches[name]["store_hits"] == 1
    assert searches["store, teachers"]["output_hits"] == 0
    # the quick space keeps one batch size: the second trial reads what the first computed
    outputs = searches["store + outputs"]
    assert outputs["output_hits"] == outputs["output_misses"] > 0


@pytest.mark.slow
def test_orchestration_quick_times_both_sides(tmp_path):
    out = run_script("orchestration", tmp_path, "--quick", timeout=600)
    res = out["results"]
    assert len(res["tune"]["train_s"]) == len(res["loop"]["train_s"]) == 2
    assert res["tune"]["wall_s"] > sum(res["tune"]["train_s"])
    assert res["gap_median_s"] > 0


@pytest.mark.slow
def test_search_payoff_quick_pairs_the_chosen_with_the_starting_configuration(tmp_path):
    out = run_script("search_payoff", tmp_path, "--quick", "--folds", "1", "2",
                     "--search-seeds", "0", "--train-seeds", "0", "1", timeout=900)
    rows = out["results"]
    assert [(r["folds"], r["search_seed"]) for r in rows] == [(1, 0), (2, 0)]
    for r in rows:
        # the same starting runs pair with every search, seed by seed
        assert r["start"] == rows[0]["start"] and len(r["chosen"]) == 2
        assert r["diff"] == pytest.approx(np.mean(np.subtract(r["chosen"], r["start"])))
        assert r["optimism"] == pytest.approx(r["val_estimate"] - np.mean(r["chosen"]))
        assert all(0.0 <= x <= 1.0 for x in r["chosen"] + r["start"])
        # trial 0 is the start point, never pruned: its validation value is the table's
        assert r["val_start"] is not None and r["origin"] in ("given", "startup", "guided")
    # the tables again from the JSON, reading nothing but the file (and, for rows of an older
    # script without origin and start point, the searches' Optuna studies)
    json_path = tmp_path / "search_payoff.json"
    payload = json.loads(json_path.read_text())
    for r in payload["results"]:
        del r["origin"], r["val_start"], r["trials"], r["complete"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(payload))
    again = subprocess.run([sys.executable, str(BENCH / "search_payoff.py"), "--tables",
                            str(json_path), str(older)], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = [[c.strip() for c in x.strip("|").split("|")] for x in again.stdout.splitlines()
            if x.startswith("|") and not x.startswith("|-")]
    searches = [r for r in rows if len(r) == 14 and r[0] != "folds"]
    assert [r[:2] for r in searches] == [["1", "0"], ["2", "0"]] * 2  # both files' rows
    assert searches[:2] == searches[2:]  # the studies gave back what the newer rows carry
    assert searches[0][5] not in ("—", "?") and "(" in searches[0][3]
    from search_payoff import excess_optimism

    # the excess column is the row's optimism beyond the start point's own gap
    assert [r[13] for r in searches[:2]] == [f"{excess_optimism(r):+.3f}" for r in out["results"]]


def test_replay_on_a_signal_an_old_run_did_not_record_names_the_file(tmp_path, monkeypatch):
    import search_efficiency as se

    old = tmp_path / "old.json"  # a run of an earlier version: accuracy curves only
    old.write_text(json.dumps({"args": {"target": 0.5, "trials": 2}, "results": {"searches": [
        {"method": se.BASE, "seed": 0, "curves": [[0.1, 0.6], [0.2, 0.3]]}]}}))
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--replay", str(old),
                                      "--decide-on", "student/val_p_true"])
    with pytest.raises(SystemExit, match=r"old\.json: no student/val_p_true curves recorded"):
        se.print_replay(str(old), se.parse_args())


def test_replay_of_hyperband_is_the_same_every_time():
    import optuna
    from search_efficiency import _optuna_setting, replay

    pool = [[0.1 * ((i * 7 + e * 3) % 10) for e in range(9)] for i in range(12)]
    settings = {"none": lambda curves: [len(c) for c in curves],
                "hyperband": _optuna_setting(lambda: optuna.pruners.HyperbandPruner(
                    min_resource=1, max_resource=9, reduction_factor=3))}
    first, again = (replay(pool, settings, target=0.9, trials=12, orders=20) for _ in range(2))
    assert first == again


def test_the_late_mean_objective_is_known_only_at_a_trial_s_end():
    from search_efficiency import _first_hit, late_curve

    curve = [0.1, 0.9, 0.2, 0.4, 0.4, 0.4, 0.6]
    late = late_curve(curve)
    assert late[:-1] == pytest.approx([float("nan")] * 6, nan_ok=True)
    assert late[-1] == pytest.approx((0.2 + 0.4 + 0.4 + 0.4 + 0.6) / 5)
    assert late_curve([0.3, 0.5])[-1] == pytest.approx(0.4)  # fewer epochs than five
    # the best epoch (0.9) is no hit; a trial pruned before its end never hits
    assert _first_hit([late], [7], 0.5) != _first_hit([late], [7], 0.5)
    assert _first_hit([late, late], [3, 7], 0.4) == 10.0


def test_replay_on_the_late_mean_objective_judges_hits_at_trial_ends(
    tmp_path, monkeypatch, capsys
):
    import search_efficiency as se

    lucky = [0.25, 0.25, 0.25, 0.9, 0.25, 0.25, 0.25, 0.25]  # one lucky epoch, else chance
    steady = [0.25, 0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6]
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"args": {"target": 0.55, "trials": 4}, "results": {"searches": [
        {"method": se.BASE, "seed": 0, "curves": [lucky, steady, lucky, [0.25] * 8]}]}}))
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--replay", str(run),
                                      "--objective", "last5", "--orders", "5"])
    se.print_replay(str(run), se.parse_args())
    out = capsys.readouterr().out
    assert "hits judged on mean of the last 5 epochs' student/val_acc" in out
    none = next(line for line in out.splitlines() if line.startswith("| none "))
    # only the steady trial reaches 0.55 on its late mean; on the best epoch the lucky did too
    assert "| 5/5 " in none and "0.580" in none



def test_replay_judges_hits_on_another_recorded_signal(tmp_path, monkeypatch, capsys):
    import search_efficiency as se

    acc = [[0.25, 0.6], [0.25, 0.3]]  # on accuracy the first trial is the best
    p_true = [[0.2, 0.3], [0.2, 0.7]]  # on the true-class probability the second
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"args": {"target": 0.5, "trials": 2}, "results": {"searches": [
        {"method": se.BASE, "seed": 0, "curves": acc,
         "signals": {"student/val_p_true": p_true, "student/val_loss": [[1, 1], [1, 1]]}}]}}))
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--replay", str(run),
                                      "--judge-on", "student/val_p_true", "--orders", "3"])
    se.print_replay(str(run), se.parse_args())
    out = capsys.readouterr().out
    assert "hits judged on best student/val_p_true" in out
    assert "pruners decide on student/val_p_true" in out  # by default, what the hits are on
    none = next(line for line in out.splitlines() if line.startswith("| none "))
    assert " 0.700 |" in none and "| 3/3 " in none  # the mean best is p_true's: 0.7 reached


def test_replay_of_a_fidelity_run_replays_one_training_seed_s_full_curves(
    tmp_path, monkeypatch, capsys
):
    import search_efficiency as se

    # seed 0: the first configuration reaches the target; seed 1: the second; low: never read
    full0 = [[0.25] * 19 + [0.8], [0.25] * 20]
    full1 = [[0.25] * 20, [0.25] * 19 + [0.9]]
    run = tmp_path / "fidelity.json"
    run.write_text(json.dumps({"benchmark": "fidelity_ranking",
                               "results": _fidelity_results(full0, full1, [[0.99] * 20] * 2)}))
    for seed, best in ((0, "0.800"), (1, "0.900")):
        monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--replay", str(run),
                                          "--replay-seed", str(seed), "--trials", "2",
                                          "--target", "0.7", "--orders", "3"])
        se.print_replay(str(run), se.parse_args())
        out = capsys.readouterr().out
        assert f"2 seed-{seed} full-fidelity curves" in out and "orders of 2 trials" in out
        none = next(line for line in out.splitlines() if line.startswith("| none "))
        assert f" {best} |" in none and "| 3/3 " in none
        # 20-epoch curves leave room for rungs at 8 and 10 (a second rung after each)
        assert "successive_halving min_resource 10, reduction_factor 2" in out
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--replay", str(run),
                                      "--replay-seed", "2"])
    with pytest.raises(SystemExit, match=r"fidelity\.json: no full-fidelity runs at training "
                                         r"seed 2"):
        se.print_replay(str(run), se.parse_args())


def test_replay_settings_add_late_first_rungs_only_for_long_trials():
    from search_efficiency import replay_settings

    short, long_ = replay_settings(15), replay_settings(30)
    assert not any("min_resource 8" in k or "grace_period 8" in k for k in short)
    assert {"ASHA grace_period 8, reduction_factor 3",
            "successive_halving min_resource 10, reduction_factor 2"} <= set(long_)
    assert set(short) < set(long_)


def _fidelity_results(full0, full1, low, seconds=(2.0, 1.0)):
    """Scripted runs: per configuration, a validation-accuracy curve per fidelity and seed."""
    def run(i, fidelity, seed, curve, s):
        return {"config": i, "fidelity": fidelity, "seed": seed,
                "student_epoch_s": [s] * len(curve),
                "curves": {"student/val_acc": curve, "student/val_p_true": [v / 2 for v in curve]}}
    runs = []
    for i, (a, b, c) in enumerate(zip(full0, full1, low)):
        runs += [run(i, "full", 0, a, seconds[0]), run(i, "full", 1, b, seconds[0]),
                 run(i, "student.segments=2", 0, c, seconds[1])]
    return {"configs": [{}] * len(full0), "fidelities": ["full", "student.segments=2"],
            "epochs": [1, 2, 9], "runs": runs, "wall_s": 1.0}


def test_fidelity_ranking_judges_every_signal_against_the_other_seed_s_objective():
    from fidelity_ranking import rows

    full1 = [[0.1, 0.2 + k / 10, 0.1] for k in range(5)]  # objectives 0.2 .. 0.6
    full0 = [[0.25 - k / 20, 0.3 + k / 10, 0.0] for k in range(5)]  # epoch 1 ranks backwards
    low = [[0.1, 0.4, 0.1], [0.1, 0.3, 0.1], [0.1, 0.5, 0.1], [0.1, 0.6, 0.1], [0.1, 0.7, 0.1]]
    out = {r["signal"]: r for r in rows(_fidelity_results(full0, full1, low))}
    ceiling = out["objective at seed 0 (full; the ceiling)"]
    assert ceiling["rho"] == pytest.approx(1.0) and ceiling["cost"] == 1.0
    first = out["student/val_acc at student epoch 1"]
    assert first["rho"] == pytest.approx(-1.0) and first["cost"] == pytest.approx(1 / 3)
    assert out["student/val_p_true at student epoch 2"]["rho"] == pytest.approx(1.0)
    assert not any("epoch 9" in s for s in out)  # past the curves' end: no row
    cheap = out["objective at student.segments=2"]
    # objectives 0.4 0.3 0.5 0.6 0.7: ranks 2 1 3 4 5, d = 1 -1 0 0 0: 1 - 6*2 / (5*24) = 0.9
    assert cheap["rho"] == pytest.approx(0.9)
    assert cheap["cost"] == pytest.approx(0.5)  # 1 s student epochs against 2 s
    # a fidelity with fewer epochs costs its epochs too: 2 of 3 epochs at half the seconds
    short = {r["signal"]: r for r in rows(_fidelity_results(full0, full1, [c[:2] for c in low]))}
    assert short["objective at student.segments=2"]["cost"] == pytest.approx(1 / 3)


def test_fidelity_ranking_reproducibility_of_each_candidate_objective_across_seeds():
    from fidelity_ranking import reproducibility

    full1 = [[0.1] * 4 + [0.2 + k / 10] + [0.1] * 5 for k in range(5)]  # best rises with k
    full0 = [[0.95 - k / 20] + [0.1] * 4 + [0.2 + k / 10] * 5 for k in range(5)]
    out = {r["objective"].split(" (")[0]: r["rho"]
           for r in reproducibility(_fidelity_results(full0, full1, full1))}
    # seed 0's best is its lucky first epoch (reversed); its late mean follows seed 1's best but
    # seed 1's late mean is flat (0.1 in every configuration): no ranking
    assert out["best student/val_acc"] == pytest.approx(-1.0)
    assert out["best student/val_p_true"] == pytest.approx(-1.0)
    assert math.isnan(out["mean student/val_acc of the last 5 epochs"])


def test_fidelity_ranking_compares_two_runs_of_the_same_configurations(tmp_path):
    from fidelity_ranking import reproducibility_change

    ups = [[0.1, 0.2 + k / 10] for k in range(6)]
    agree = _fidelity_results(ups, ups, ups)  # the two seeds rank alike: ρ = 1
    reverse = _fidelity_results(ups, ups[::-1], ups)  # they rank backwards: ρ = −1
    rows = {r["objective"].split(" (")[0]: r for r in reproducibility_change(agree, reverse, 200)}
    best = rows["best student/val_acc"]
    assert best["difference"] == pytest.approx(2.0) and best["low"] == pytest.approx(2.0)
    assert math.isnan(rows["student/test_acc of the kept model"]["difference"])  # not recorded
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"results": agree}))
    b.write_text(json.dumps({"results": reverse}))
    cmd = [sys.executable, str(BENCH / "fidelity_ranking.py"), "--from-json", str(a),
           "--against", str(b)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    *_, row = (x for x in done.stdout.splitlines()  # the change table comes last
               if x.startswith("| best student/val_acc (the main job's)"))
    assert [c.strip() for c in row.strip("|").split("|")][1:] == ["+2.00", "[+2.00, +2.00]"]
    # the objective's level, paired over configurations: the same values, other pairs
    assert "moves by +0.000 [" in done.stdout
    b.write_text(json.dumps({"results": {**reverse, "configs": [{"student.lr": 0.1}] * 6}}))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0 and "trained other configurations than" in done.stderr


def test_fidelity_ranking_quick_trains_every_configuration_at_each_fidelity_and_seed(tmp_path):
    # a --set value may hold commas, as sakdn's own --set allows
    out = run_script("fidelity_ranking", tmp_path, "--quick",
                     "--set", "teacher.spamfm_stages=conv5,fc1,fc2", timeout=300)["results"]
    configs = out["configs"]
    assert len(configs) == 4 and all("student.lr" in c for c in configs)  # the smoke space
    assert len({c["student.lr"] for c in configs}) == 4  # drawn, not one point four times
    assert out["fidelities"] == ["full", "student.segments=1"]
    runs = {(r["config"], r["fidelity"], r["seed"]) for r in out["runs"]}
    assert runs == {(i, f, s) for i in range(4) for f, s in
                    (("full", 0), ("full", 1), ("student.segments=1", 0))}
    for r in out["runs"]:
        assert len(r["curves"]["student/val_acc"]) == 3  # the quick mode's student epochs
        assert len(r["student_epoch_s"]) == 3 and min(r["student_epoch_s"]) > 0
        # the kept model also tested, to measure a larger held-out split's reproducibility
        assert 0.0 <= r["metrics"]["student/test_acc"] <= 1.0


def test_fidelity_ranking_draws_another_pool_at_another_sample_seed(monkeypatch):
    # a second pool of random configurations, to confirm on what was not selected on
    from fidelity_ranking import configurations, parse_args

    from sakdn.config import load_config

    base = load_config(REPO / "experiments" / "synthetic_search.yaml").to_flat()

    def pool(seed: int) -> list[dict]:
        monkeypatch.setattr(sys, "argv", ["fidelity_ranking.py", "--sample", "3",
                                          "--sample-seed", str(seed), "--low", "none"])
        args = parse_args()
        assert args.low == []  # 'none': the full fidelity only
        return configurations(args, base)

    first, again, other = pool(0), pool(0), pool(1)
    assert first == again and len(first) == 3
    assert all(a != b for a, b in zip(first, other))


def test_fidelity_ranking_refuses_a_bad_fidelity_key_before_training(tmp_path):
    cmd = [sys.executable, str(BENCH / "fidelity_ranking.py"), "--quick", "--workdir",
           str(tmp_path), "--low", "student.width=2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert "student.width = 2: must be >= 4" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_pruned_choice_takes_the_best_completed_trial_that_ended_within_the_budget():
    from pruned_choice import chosen_at

    curves = [[0.3] * 15, [0.9] * 5, [0.5] * 15, [0.6] * 10]
    complete = [True, False, True, True]  # trial 1 was pruned: its 0.9 is no choice
    values = [0.3, 0.9, 0.5, 0.6]
    assert chosen_at(curves, complete, values, 35) == (2, 35)
    assert chosen_at(curves, complete, values, 34) == (0, 20)  # trial 2 ends at 35
    assert chosen_at(curves, complete, values, math.inf) == (3, 45)
    assert chosen_at(curves, complete, values, 10) == (None, 0)
    assert chosen_at(curves, complete, [0.5, 0.9, 0.5, 0.2], math.inf) == (0, 45)  # tie: earlier


def test_replayed_choices_are_worth_what_the_other_seed_says():
    from pruned_choice import WHOLE, replay_choices
    from search_efficiency import random_orders

    curves = [[0.1, 0.5], [0.2, 0.9], [0.3, 0.6]]  # seed 0: configuration 1 looks best
    worth = [0.7, 0.4, 0.6]  # seed 1: it is the worst
    settings = {"none": lambda cs: [len(c) for c in cs],
                # stops configuration 1 after its first epoch, wherever it comes in the order
                "cut 1": lambda cs: [1 if c[1] == 0.9 else len(c) for c in cs],
                "cut all": lambda cs: [1] * len(cs)}
    rows = {(r["setting"], r["budget"]): r for r in replay_choices(
        curves, worth, settings, trials=3, orders=4, budgets=[0.5], epsilon=0.05)}
    assert rows["none", WHOLE]["delta"] == 0.0 and rows["none", WHOLE]["share"] == 1.0
    # without configuration 1 the choice is configuration 2 (0.6 at seed 0): worth 0.6 − 0.4
    assert rows["cut 1", WHOLE]["delta"] == pytest.approx(0.2)
    assert rows["cut 1", WHOLE]["within"] == 4
    # half the unpruned compute (3 of 6 epochs) holds one whole trial: the order's first
    first = [worth[pick[0]] - 0.4 for pick in random_orders(3, 3, 4)]
    assert rows["none", "50 %"]["delta"] == pytest.approx(sum(first) / 4)
    assert rows["none", "50 %"]["within"] == sum(d >= -0.05 for d in first)
    assert rows["cut all", WHOLE]["empty"] == 4  # nothing trained to its end: no choice
    assert math.isnan(rows["cut all", WHOLE]["delta"])


def test_a_screened_search_chooses_on_the_low_fidelity_and_pays_its_cheaper_epochs():
    from pruned_choice import WHOLE, chosen_at, replay_choices

    # an epoch at a quarter of the cost: 8 screen epochs spend 2 trial-epochs
    assert chosen_at([[0.2] * 8, [0.4] * 8], [True, True], [0.2, 0.4], 3, cost=0.25) == (0, 2)
    curves = [[0.1, 0.5], [0.2, 0.9], [0.3, 0.6]]  # full fidelity, seed 0: configuration 1
    screen = [[0.1, 0.8], [0.2, 0.3], [0.3, 0.4]]  # low fidelity, seed 0: configuration 0
    worth = [0.7, 0.4, 0.6]
    settings = {"none": lambda cs: [len(c) for c in cs]}
    rows = {(r["setting"], r["budget"]): r for r in replay_choices(
        curves, worth, settings, trials=3, orders=4, budgets=[0.5], epsilon=0.05,
        screen=screen, screen_cost=0.25)}
    whole = rows["none", WHOLE]
    # the screened search picks configuration 0 (worth 0.7) against the full search's 1 (0.4)
    assert whole["delta"] == pytest.approx(0.3) and whole["worth"] == pytest.approx(0.7)
    assert whole["share"] == pytest.approx(0.25)  # 6 screen epochs of 6 full ones, at 1/4
    assert whole["reference"] == pytest.approx(0.4)  # the full search's choice, as before
    assert rows["none", "50 %"]["delta"] == pytest.approx(0.3)  # all of it fits in half


def test_a_two_stage_search_trains_the_best_screened_in_full_and_chooses_among_them():
    from pruned_choice import WHOLE, two_stage_choices

    curves = [[0.1, 0.5], [0.2, 0.9], [0.3, 0.6], [0.1, 0.4]]  # full, seed 0: configuration 1
    screen = [[0.6, 0.0], [0.1, 0.9], [0.5, 0.2], [0.4, 0.95]]
    worth = [0.7, 0.4, 0.6, 0.3]
    # screened on their first epoch (0.6, 0.1, 0.5, 0.4): 0 and 2 go on, 2 is the better in full
    (row,) = two_stage_choices(curves, worth, screen, trials=4, orders=3, promote=2,
                               epsilon=0.05, screen_epochs=1, screen_cost=0.5)
    assert row["budget"] == WHOLE and row["orders"] == 3
    assert row["delta"] == pytest.approx(0.2) and row["worth"] == pytest.approx(0.6)
    assert row["reference"] == pytest.approx(0.4) and row["within"] == 3
    assert row["share"] == pytest.approx((4 * 1 * 0.5 + 2 * 2) / 8)  # four screens, two in full
    # screened on both epochs (0.6, 0.9, 0.5, 0.95): 3 and 1 go on, 1 is the unpruned choice
    (row,) = two_stage_choices(curves, worth, screen, 4, 3, 2, 0.05, None, 0.5)
    assert row["delta"] == pytest.approx(0.0) and row["share"] == pytest.approx(1.0)
    assert "screen, best 2 in full" in row["setting"]


def test_a_resampled_pool_s_searches_never_meet_one_configuration_twice():
    from search_efficiency import random_orders

    ids = [0, 0, 0, 1, 2, 2]  # a resampled pool: configuration 0 three times, 2 twice
    orders = random_orders(6, 3, 300, seed=1, ids=ids)
    assert all(sorted(ids[i] for i in o) == [0, 1, 2] for o in orders)  # each met once
    assert random_orders(6, 5, 10, ids=ids)[0].__len__() == 3  # only three to meet
    firsts = [ids[o[0]] for o in orders]
    assert firsts.count(0) > firsts.count(1)  # a repeated configuration is met first more often
    assert random_orders(6, 3, 4, seed=2) == random_orders(6, 3, 4, seed=2, ids=None)


def test_replays_pool_the_configurations_of_several_fidelity_runs(tmp_path):
    from fidelity_ranking import curves_of
    from pruned_choice import pooled_runs

    a = _fidelity_results([[0.1], [0.2], [0.3]], [[0.4]] * 3, [[0.5]] * 3)
    b = _fidelity_results([[0.6], [0.7]], [[0.8]] * 2, [[0.9]] * 2)
    b["runs"] = [r for r in b["runs"] if r["fidelity"] == "full"]
    b["fidelities"] = ["full"]
    for name, results in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"benchmark": "fidelity_ranking", "results": results}))
    pool = pooled_runs([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert len(pool["configs"]) == 5
    assert curves_of(pool, "full", 0, "student/val_acc") == [[0.1], [0.2], [0.3], [0.6], [0.7]]
    assert pool["fidelities"] == ["full"]  # b never trained the low fidelity
    assert {r["fidelity"] for r in pool["runs"]} == {"full"}


def test_replayed_choices_interval_comes_from_resampled_configurations():
    from pruned_choice import WHOLE, bootstrap_choices, replay_choices

    curves = [[0.1 * k, 0.1 * k + (0.3 if k == 2 else 0.0)] for k in range(6)]
    settings = {"none": lambda cs: [len(c) for c in cs],
                "first only": lambda cs: [len(cs[0])] + [1] * (len(cs) - 1)}
    same = bootstrap_choices(curves, [0.5] * 6, settings, 4, 10, [0.5], 0.02, draws=30)
    assert same["first only", WHOLE] == (0.0, 0.0)  # equal worth: every choice is as good
    worth = [0.1, 0.2, 0.0, 0.4, 0.5, 0.6]  # the lucky configuration 2 is worth least
    ci = bootstrap_choices(curves, worth, settings, 4, 10, [0.5], 0.02, draws=60)
    mean = next(r["delta"] for r in replay_choices(curves, worth, settings, 4, 10, [0.5], 0.02)
                if r["setting"] == "first only" and r["budget"] == WHOLE)
    low, high = ci["first only", WHOLE]
    assert low < mean < high and low < 0 < high  # the first trial may or may not beat the pick
    assert ci["none", WHOLE] == (0.0, 0.0)


def test_pruned_choice_replay_of_a_fidelity_run_prints_the_settings_choices(tmp_path):
    run = tmp_path / "fidelity.json"
    run.write_text(json.dumps({"benchmark": "fidelity_ranking", "results": _fidelity_results(
        [[0.25] * 14 + [0.3 + k / 50] for k in range(6)],
        [[0.25] * 14 + [0.5 - k / 50] for k in range(6)], [[0.2] * 15] * 6)}))
    cmd = [sys.executable, str(BENCH / "pruned_choice.py"), "--replay", str(run),
           "--trials", "4", "--orders", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    none = next(line for line in done.stdout.splitlines()
                if line.startswith("| none ") and "whole search" in line)
    assert "+0.000" in none and "| 3/3 " in none
    cmd[3] = str(tmp_path / "nothing.json")
    (tmp_path / "nothing.json").write_text(json.dumps({"benchmark": "search_efficiency"}))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0 and "nothing.json: not a fidelity_ranking.py output" in done.stderr
    cmd[3] = str(run)
    done = subprocess.run([*cmd, "--setting", "ASHA grace_period 99, reduction_factor 2"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0
    assert "--setting: no replayed setting 'ASHA grace_period 99" in done.stderr
    done = subprocess.run([*cmd, "--setting", "none", "--screen", "student.segments=2"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    # the low fidelity's epochs cost 1 s against the full ones' 2 s
    assert "at student.segments=2 (an epoch 50 % of a full one)" in done.stdout
    screened = next(line for line in done.stdout.splitlines()
                    if line.startswith("| none ") and "whole search" in line)
    assert [c.strip() for c in screened.split("|")][3] == "50 %"  # of the full search's
    done = subprocess.run([*cmd, "--setting", "none", "--screen", "student.segments=2",
                           "--promote", "2", "--screen-epochs", "5", "--bootstrap", "3"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    two = next(line for line in done.stdout.splitlines()
               if "two-stage: screen for 5 epochs, best 2 in full" in line)
    # 4 screens of 5 epochs at half the cost, 2 full trainings of 15: 40 of 60 epochs
    assert [c.strip() for c in two.split("|")][3] == "67 %"
    done = subprocess.run([*cmd, "--promote", "2"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode != 0 and "give --screen" in done.stderr
    done = subprocess.run([*cmd, "--screen", "data.frame_size=8"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0
    assert "has no low fidelity 'data.frame_size=8' (it has student.segments=2)" in done.stderr


def test_pruned_choice_pairs_each_choice_with_the_unpruned_whole_search_s_by_seed():
    from pruned_choice import WHOLE, comparisons
    from search_efficiency import BASE

    def choice(method, seed, budget, objectives):
        return {"method": method, "seed": seed, "budget": budget, "trial": 1, "share": 0.5,
                "value": 0.5, "fresh": {str(s): {"objective": v, "test": v - 0.1}
                                        for s, v in zip((1, 2, 3), objectives)}}
    results = {"train_seeds": [1, 2, 3], "epsilon": 0.02, "choices": [
        choice(BASE, 0, WHOLE, [0.40, 0.50, 0.45]), choice(BASE, 1, WHOLE, [0.30, 0.35, 0.40]),
        choice("pruned", 0, "50 %", [0.41, 0.51, 0.46]),  # +0.01 on every pair
        choice("pruned", 1, "50 %", [0.31, 0.36, 0.41]),
        choice("worse", 0, "50 %", [0.30, 0.50, 0.45]),
        choice("worse", 1, "50 %", [0.20, 0.35, 0.40]),
    ]}
    rows = {r["method"]: r for r in comparisons(results)}
    assert rows[BASE]["objective_diff"].mean == 0 and rows[BASE]["non_inferior"]  # itself
    pruned = rows["pruned"]["objective_diff"]
    assert pruned.n == 6 and pruned.mean == pytest.approx(0.01) and pruned.sd == pytest.approx(0)
    assert rows["pruned"]["non_inferior"] and rows["pruned"]["objective_by_search"].n == 2
    mean = (0.41 + 0.51 + 0.46 + 0.31 + 0.36 + 0.41) / 6
    assert rows["pruned"]["objective"] == pytest.approx(mean)
    worse = rows["worse"]["objective_diff"]
    assert worse.mean == pytest.approx(-0.2 / 6)
    by_search = rows["worse"]["objective_by_search"]  # each search's mean: -0.1/3 in both
    assert by_search.n == 2 and by_search.mean == pytest.approx(-0.1 / 3)
    assert by_search.ci_high < -0.02 and not rows["worse"]["non_inferior"]


def test_pruned_choice_refuses_a_study_that_is_not_the_recorded_run(tmp_path):
    import optuna
    from pruned_choice import searches
    from search_efficiency import BASE

    storage = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="none_r0", storage=f"sqlite:///{storage}",
                                direction="maximize")
    dist = {"student.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for value in (0.3, 0.5):
        study.add_trial(optuna.trial.create_trial(params={"student.lr": 1e-3}, distributions=dist,
                                                  value=value))
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"results": {"searches": [
        {"method": BASE, "repetition": 0, "seed": 0, "curves": [[0.1, 0.3], [0.2, 0.4]]}]}}))
    with pytest.raises(SystemExit, match=r"study none_r0 trial 1 has value 0.5, its curve in .*"
                                         r"run\.json a best of 0.4: not one run"):
        searches(str(run), str(storage))
    run.write_text(json.dumps({"results": {"searches": [
        {"method": BASE, "repetition": 0, "seed": 0, "curves": [[0.1, 0.3], [0.2, 0.5]]}]}}))
    (found,) = searches(str(run), str(storage))
    assert found["complete"] == [True, True] and found["params"][1] == {"student.lr": 1e-3}


def test_pruned_choice_retrains_each_chosen_configuration_at_the_fresh_seeds(tmp_path):
    import harness
    import optuna
    from search_efficiency import BASE

    storage = tmp_path / "optuna.db"
    dist = {"student.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    searches = []
    for name, method, lrs, states in (
            ("none_r0", BASE, (1e-3, 3e-3), ("COMPLETE", "COMPLETE")),
            ("optuna_r0", "Optuna median", (1e-3, 5e-3), ("COMPLETE", "PRUNED"))):
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{storage}")
        curves = []
        for i, (lr, state) in enumerate(zip(lrs, states)):
            curve = [0.2, 0.3 + i / 10] if state == "COMPLETE" else [0.9]
            study.add_trial(optuna.trial.create_trial(
                params={"student.lr": lr}, distributions=dist, value=max(curve),
                state=optuna.trial.TrialState[state]))
            curves.append(curve)
        searches.append({"method": method, "repetition": 0, "seed": 0, "curves": curves})
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"results": {"searches": searches}}))
    tiny = harness.tiny(tmp_path)
    out = run_script("pruned_choice", tmp_path, "--json-in", str(run), "--storage", str(storage),
                     "--experiment", str(REPO / "experiments" / "synthetic_smoke.yaml"),
                     "--set", f"data.root={tiny}", "--train-seeds", "1", "2",
                     "--budgets", "0.5", "--workers", "1")["results"]
    picked = {(c["method"], c["budget"]): c for c in out["choices"]}
    # unpruned: 4 trial-epochs in all; at 50 % only trial 0 has ended; whole: trial 1 (0.4)
    assert picked[BASE, "50 %"]["trial"] == 0 and picked[BASE, "whole search"]["trial"] == 1
    # the pruned search's trial 1 (0.9) was pruned: its choice is trial 0 at any budget
    assert picked["Optuna median", "whole search"]["trial"] == 0
    assert picked["Optuna median", "whole search"]["share"] == pytest.approx(3 / 4)
    same = picked[BASE, "50 %"]["fresh"]  # one configuration, trained once per seed
    assert same == picked["Optuna median", "whole search"]["fresh"]
    assert set(same) == {"1", "2"} and all(0 <= v["test"] <= 1 for v in same.values())


def test_pruned_choice_pools_runs_only_on_distinct_search_seeds_and_the_same_training_seeds():
    from pruned_choice import WHOLE, merged
    from search_efficiency import BASE

    def part(seed, train_seeds=(1, 2)):
        return {"train_seeds": list(train_seeds), "epsilon": 0.02, "wall_s": 10.0, "choices": [
            {"method": BASE, "seed": seed, "budget": WHOLE}]}
    both = merged([part(0), part(3)])
    assert [c["seed"] for c in both["choices"]] == [0, 3] and both["wall_s"] == 20.0
    with pytest.raises(SystemExit, match="a search seed appears in more than one run"):
        merged([part(0), part(0)])
    with pytest.raises(SystemExit, match="differ in --train-seeds or --epsilon"):
        merged([part(0), part(3, train_seeds=(1, 2, 3))])
