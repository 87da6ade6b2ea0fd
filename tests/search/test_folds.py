"""Cross-validated trials in a real search: each trial trains once per fold of the training
subjects, its per-fold values reach Optuna (one step per fold) and MLflow, a Wilcoxon pruner
stops a trial that is worse fold by fold, and a killed search resumes without training a
finished fold again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sakdn.figures import FIGURES
from tests.processes import kill_processes_under, wait_while_running
from tests.search.conftest import process_env
from tests.tiny import REPO, SMOKE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

SPACE = "student.lr: {choice: [0.01, 1.0e-7]}\n"


def _overrides(tiny_root: Path, tmp_path: Path, **search) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    keys = {"search.space": space, "search.storage_path": tmp_path / "store",
            "search.name": "folds", "search.folds": 2, "search.num_samples": 2,
            "search.max_concurrent_trials": 1, "search.sampler": "random",
            "search.points_to_evaluate": "[{student.lr: 0.01}, {student.lr: 1.0e-7}]", **search}
    return [f"data.root={tiny_root}", *(f"{k}={v}" for k, v in keys.items())]


def _study(tmp_path: Path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"
    return optuna.load_study(study_name="folds", storage=storage)


def test_a_worse_trial_is_pruned_fold_by_fold_with_its_folds_in_optuna_and_mlflow(
    tiny_root, tmp_path, search_env
) -> None:
    from mlflow import MlflowClient

    from sakdn import tracking as tr
    from sakdn.search.run import run_search

    result = run_search(SMOKE, _overrides(
        tiny_root, tmp_path, **{"search.metric": "student/loss", "search.mode": "min",
                                "search.pruner": "wilcoxon",
                                "search.pruner_options": "{p_threshold: 0.5, n_startup_steps: 1}"}))
    good, bad = sorted(_study(tmp_path).trials, key=lambda t: t.number)
    assert good.params["student.lr"] == 0.01 and bad.params["student.lr"] == 1e-7
    assert good.state.name == "COMPLETE" and sorted(good.intermediate_values) == [0, 1]
    assert good.value == pytest.approx(sum(good.intermediate_values.values()) / 2)
    # the untrained student's loss is higher on both folds: Wilcoxon stops it at its second
    assert bad.state.name == "PRUNED" and sorted(bad.intermediate_values) == [0, 1]
    assert all(bad.intermediate_values[f] > good.intermediate_values[f] for f in (0, 1))
    client = MlflowClient(result.tracking_uri)
    runs = {r.data.tags["sakdn.optuna_trial"]: r for r in tr.children(
        client, client.get_run(result.parent_run_id))}
    for number, trial in (("0", good), ("1", bad)):
        for fold in (0, 1):  # each fold's epochs, at the stage's own epoch steps
            steps = [m.step for m in client.get_metric_history(runs[number].info.run_id,
                                                                f"fold{fold}/student/loss")]
            assert steps == [1, 2]
    assert runs["0"].data.metrics["student/loss"] == pytest.approx(good.value)
    figures = {a.path for a in client.list_artifacts(runs["0"].info.run_id, "figures")}
    assert figures == {f"figures/{name}" for name in FIGURES}  # the last fold's models
    assert (tmp_path / "store" / "folds" / "trials" / "00000" / "fold1" / "figures").is_dir()
    assert not client.list_artifacts(runs["1"].info.run_id, "figures")  # pruned: none drawn
    assert runs["1"].data.tags["sakdn.state"] == "PRUNED"
    assert runs["1"].info.run_name == "trial 1 (pruned)"
    from sakdn.search.final import best_of

    best = best_of("folds", tracking_uri=result.tracking_uri)  # what train --from-best trains
    assert best["config"]["student.lr"] == 0.01 and best["config"]["data.folds"] == 1
    folds = client.download_artifacts(result.parent_run_id, "search/folds.json")
    subjects = json.loads(Path(folds).read_text())
    assert sorted(s for fold in subjects.values() for s in fold) == [1, 3]  # training subjects


def test_a_killed_fold_search_resumes_without_training_a_finished_fold_again(
    tiny_root, tmp_path
) -> None:
    ray_tmp = Path(tempfile.mkdtemp(prefix="skf", dir="/tmp"))
    command = [sys.executable, "-m", "sakdn.cli", "search", str(SMOKE),
               *[x for o in _overrides(tiny_root, tmp_path, **{"search.pruner": "none",
                                                                "search.pruner_options": "{}",
                                                                "student.epochs": 4})
                 for x in ("--set", o)]]
    first_fold = tmp_path / "store" / "folds" / "trials" / "00000" / "fold0" / "fold.json"
    try:
        with open(tmp_path / "first.log", "w") as out:
            driver = subprocess.Popen(command, cwd=REPO, env=process_env(ray_tmp), stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            wait_while_running(driver, first_fold.exists, tmp_path / "first.log", poll=0.5)
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        kill_processes_under(str(ray_tmp))
        written = first_fold.stat().st_mtime_ns
        resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=process_env(ray_tmp),
                                 capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    finally:
        kill_processes_under(str(ray_tmp))
    trials = sorted(_study(tmp_path).trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(sorted(t.intermediate_values) == [0, 1] for t in trials)
    assert first_fold.stat().st_mtime_ns == written  # fold 0 of trial 0 was not trained again
    log = (first_fold.parent.parent / "trial.log").read_text()
    assert "fold 0 finished before" in log
