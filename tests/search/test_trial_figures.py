"""The figure task a search's driver starts for each completed trial (``draw_and_log``), run
directly on a trained tiny run: it draws into the run's directory and logs to the run its
MLflow spool names, or draws the files only when there is no tracking."""

from __future__ import annotations

import json
import os

import pytest

from sakdn.figures import FIGURES
from sakdn.search.trial_figures import draw_and_log
from sakdn.train import train
from tests.tiny import tiny_config


@pytest.fixture(scope="module")
def run_dir(tiny_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trial_figures")
    train(tiny_config(tiny_root, tmp, **{"teacher.width": 8, "student.width": 8}),
          workdir=tmp / "run", log=lambda m: None)
    return tmp / "run"


def _at_normal_priority(function, *args):
    """Run ``function`` in a child process (it lowers its own priority for good)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, json.dumps(function(*args)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        out = handle.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_without_tracking_the_figures_are_drawn_into_the_run(run_dir) -> None:
    drawn = _at_normal_priority(draw_and_log, str(run_dir), str(run_dir / "spool.json"), None, 0.0)
    assert drawn == len(FIGURES)
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == sorted(FIGURES)


def test_the_figures_reach_the_run_the_trial_spool_names(run_dir, tmp_path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("t", str(tmp_path / "artifacts")))
    spool = tmp_path / "mlflow_spool.json"  # as the trial leaves it: its run id, nothing pending
    spool.write_text(json.dumps({"run_id": run.info.run_id, "high_step": 3, "ops": []}))
    assert _at_normal_priority(draw_and_log, str(run_dir), str(spool), uri, 10.0) == len(FIGURES)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert logged == {f"figures/{name}" for name in FIGURES}
    assert json.loads(spool.read_text())["ops"] == []  # nothing left for the closing sweep
