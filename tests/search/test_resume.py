"""Kill the search driver mid-way (SIGKILL to its process group), resume, and check that the
search ends with exactly ``num_samples`` trials in the study and in MLflow, none twice and
none RUNNING."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.processes import kill_processes_under, wait_while_running
from tests.search.conftest import process_env
from tests.studies import trial_states
from tests.tiny import REPO, SMOKE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLES = 4


def _states(storage: str, name: str) -> list[str]:
    return trial_states(Path(storage.removeprefix("sqlite:///")), name)


@pytest.mark.timeout(1200)
def test_a_killed_driver_resumes_to_exactly_num_samples_trials(
    smoke_overrides, tmp_path: Path
) -> None:
    import optuna
    from mlflow import MlflowClient

    ray_tmp = Path(tempfile.mkdtemp(prefix="skr", dir="/tmp"))  # short: Ray's socket paths
    store = tmp_path / "store"
    storage = f"sqlite:///{store / 'optuna.db'}"
    command = [sys.executable, "-m", "sakdn.cli", "search", str(SMOKE),
               *[x for item in smoke_overrides for x in ("--set", item)],
               "--set", f"search.num_samples={SAMPLES}"]
    log = tmp_path / "first.log"
    try:
        with open(log, "w") as out:
            driver = subprocess.Popen(command, cwd=REPO, env=process_env(ray_tmp), stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            wait_while_running(driver, lambda: "COMPLETE" in _states(storage, "synthetic_smoke"),
                               log)
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        kill_processes_under(str(ray_tmp))
        before = _states(storage, "synthetic_smoke")
        assert "COMPLETE" in before and len(before) < SAMPLES + 1

        resumed = subprocess.run(command + ["--resume"], cwd=REPO, env=process_env(ray_tmp),
                                 capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    finally:
        kill_processes_under(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)

    study = optuna.load_study(study_name="synthetic_smoke", storage=storage)
    assert len(study.trials) == SAMPLES
    assert all(t.state.is_finished() and t.state.name != "FAIL" for t in study.trials)
    tune_ids = [t.user_attrs["tune_trial_id"] for t in study.trials]
    assert len(set(tune_ids)) == SAMPLES
    # the sampler was not replayed: every trial has its own configuration
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == SAMPLES

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("sakdn.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sakdn.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == SAMPLES
    assert sorted(int(c.data.tags["sakdn.optuna_trial"]) for c in children) == list(range(SAMPLES))
    assert {c.data.tags["sakdn.tune_trial_id"] for c in children} == set(tune_ids)
    assert all(r.info.status != "RUNNING" for r in runs)
    assert all(c.data.tags["sakdn.state"] == "COMPLETE" for c in children)
    for child in children:  # a resumed trial continued its run: no step logged twice
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "student/val_acc")]
        assert sorted(steps) == sorted(set(steps)) and steps
