"""``sakdn ablate`` end to end on a tiny configuration: the grid runs as trials, each seed's
variants share one teacher set, the table's statistics are those of the runs' own values, and
``--resume`` continues a killed ablation without repeating a finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sakdn import ablation, stats
from sakdn.errors import ConfigError
from tests.tiny import REPO, SMOKE
from tests.processes import kill_processes_under
from tests.search.conftest import process_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARIANTS = ["CE + ST", "full SAKDN"]  # + CE only and the control: 4 variants


def _overrides(tiny_root: Path, tmp_path: Path) -> list[str]:
    return [f"data.root={tiny_root}", f"search.storage_path={tmp_path / 'store'}",
            "search.max_concurrent_trials=2"]


def _children(store: Path, name: str):
    from sakdn import tracking as tr

    mlflow = tr.client(f"sqlite:///{store / 'mlflow.db'}")
    return tr.children(mlflow, tr.find_parent(mlflow, name))


@pytest.mark.timeout(1200)
def test_an_ablation_runs_the_grid_shares_teachers_and_tables_its_runs(
    tiny_root, tmp_path, search_env
) -> None:
    from sakdn.search.ablate import run_ablation

    overrides = _overrides(tiny_root, tmp_path)
    table = run_ablation(SMOKE, seeds=2, variants=VARIANTS, overrides=overrides)
    store = tmp_path / "store"
    name = "synthetic_smoke_ablation"
    runs = _children(store, name)
    assert len(runs) == 8 and all(r.data.tags["sakdn.state"] == "COMPLETE" for r in runs)
    # every seed trained one teacher set; its other variants loaded it from the store
    events = [json.loads(x) for x in
              (store / name / "teacher_store" / "events.jsonl").read_text().splitlines()]
    assert sorted(e["hit"] for e in events) == [False] * 2 + [True] * 6
    assert len({e["key"] for e in events}) == 2  # one teacher set per seed
    # the table's statistics are the paired statistics of the runs' own test accuracies
    by = {(r.data.params["train.label"], int(r.data.params["train.seed"])):
          r.data.metrics["student/test_acc"] for r in runs}
    rows = {r.variant: r for r in table.rows}
    assert table.seeds == [0, 1] and set(rows) == {"CE only", *VARIANTS, "control"}
    for variant in (*VARIANTS, "control"):
        expected = stats.paired([by[(variant, s)] for s in (0, 1)],
                                [by[("CE only", s)] for s in (0, 1)])
        got = rows[variant].comparison
        assert (got.mean, got.wins, got.n) == (expected.mean, expected.wins, 2)
    for r in runs:  # the validation-chosen model was tested; the label names the variant
        assert {"student/test_acc", "student/best_val_acc", "student/val_acc_last5"} <= set(
            r.data.metrics)
        assert r.data.params["train.evaluate_test"] == "True"
    out = store / name / "ablation"
    assert {p.name for p in out.iterdir()} >= {"ablation.csv", "ablation_summary.csv",
                                              "ablation.html", "ablation.txt"}
    assert "noise floor" in (out / "ablation.txt").read_text()
    # nothing left to run: a resume adds no trial and gives the same table
    again = run_ablation(SMOKE, seeds=2, variants=VARIANTS, overrides=overrides, resume=True)
    assert len(_children(store, name)) == 8
    assert ablation.to_csv(again) == ablation.to_csv(table)


def test_the_ablation_refuses_search_keys_it_sets_itself(tiny_root, tmp_path) -> None:
    from sakdn.search.ablate import ablation_files

    with pytest.raises(ConfigError, match="set by sakdn ablate"):
        ablation_files(SMOKE, 2, None, [*_overrides(tiny_root, tmp_path),
                                        "search.pruner=median"])
    with pytest.raises(ConfigError, match="--seeds"):
        ablation_files(SMOKE, 1, None, _overrides(tiny_root, tmp_path))


@pytest.mark.timeout(1500)
def test_a_killed_ablation_resumes_without_repeating_finished_runs(tiny_root, tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="ska", dir="/tmp"))
    store = tmp_path / "store"
    command = [sys.executable, "-m", "sakdn.cli", "ablate", str(SMOKE), "--seeds", "2",
               "--variants", "full SAKDN",
               *[x for item in _overrides(tiny_root, tmp_path) for x in ("--set", item)]]
    name = "synthetic_smoke_ablation"
    try:
        with open(tmp_path / "first.log", "w") as out:
            driver = subprocess.Popen(command, cwd=REPO, env=process_env(ray_tmp), stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.time() + 900
            while True:  # kill once two runs are complete and the grid is not
                done = [r for r in _safe_children(store, name)
                        if r.data.tags.get("sakdn.state") == "COMPLETE"]
                if len(done) >= 2:
                    break
                assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.time() < deadline, "no run completed in time"
                time.sleep(1)
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            kill_processes_under(str(ray_tmp))
        finished = {r.info.run_id: r.data.metrics["student/test_acc"] for r in done}
        assert len(finished) < 6
        resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=process_env(ray_tmp),
                                 capture_output=True, text=True, timeout=1200)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        runs = _children(store, name)
        labels = [(r.data.params["train.label"], r.data.params["train.seed"]) for r in runs]
        assert len(runs) == 6 and len(set(labels)) == 6  # 3 variants × 2 seeds, none twice
        assert all(r.data.tags["sakdn.state"] == "COMPLETE" for r in runs)
        for run_id, value in finished.items():  # a run finished before the kill kept its result
            assert next(r for r in runs if r.info.run_id == run_id).data.metrics[
                "student/test_acc"] == value
        assert "noise floor" in resumed.stdout
    finally:
        kill_processes_under(str(ray_tmp))


def _safe_children(store: Path, name: str):
    try:
        return _children(store, name)
    except Exception:  # the store or the parent run does not exist yet
        return []
