"""``sakdn train --from-best`` registers a model that loads without unpickling code.

A finished search of one completed trial (the smoke configuration on the tiny dataset) is
written with the tracking functions the search layer records with, so no Ray search has to run
first; the real CLI then trains its final model in a subprocess, whose whole terminal output is
read. The registered version is loaded back through ``mlflow`` (the PyTorch flavour and pyfunc)
with pickle deserialisation refused, and predicts what the trained student predicts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.search.conftest import process_env
from tests.tiny import REPO, tiny_config

pytestmark = pytest.mark.slow  # a real (tiny) final training in a subprocess

ACC = "student/best_val_acc"
PICKLE_WARNING = "Pickle or CloudPickle"  # MLflow's: "... can execute arbitrary code ..."


def _recorded_search(tmp: Path, flat: dict, name: str) -> str:
    """A finished search ``name`` whose one trial completed with ``flat``; returns its URI."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from sakdn import tracking as tr
    from sakdn.names import State, Tag

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = tr.ensure_experiment(client, "final-test", str(tmp / "artifacts"))
    parent, _ = tr.open_parent(client, experiment, name, flat,
                               {Tag.METRIC: ACC, Tag.MODE: "max"})
    trial = tr.trial_resolver(tr.SearchTracking(uri, experiment, parent, name), "t0", 0)(client)
    tr.log_batch(client, trial, params=flat, metrics=[Metric(ACC, 0.5, 0, 3)])
    tr.finish_run(client, trial, State.COMPLETE)
    tr.finish_run(client, parent, State.COMPLETE)
    return uri


@pytest.fixture(scope="module")
def final(tiny_root, tmp_path_factory) -> dict:
    """The CLI's final training of the recorded search: its URI, output and model name."""
    tmp = tmp_path_factory.mktemp("final")
    uri = _recorded_search(tmp, tiny_config(tiny_root, tmp).to_flat(), "s")
    done = subprocess.run(
        [sys.executable, "-m", "sakdn.cli", "train", "--from-best", "s", "--tracking-uri", uri,
         "--workdir", str(tmp / "final"), "--model-name", "tiny", "--set", "student.epochs=1"],
        cwd=tmp, env={**process_env(tmp / "ray"), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return {"uri": uri, "output": output, "model": "models:/tiny/1", "tmp": tmp}


def test_train_from_best_prints_no_pickle_warning(final) -> None:
    assert "registered as models:/tiny/1" in final["output"]  # the output was read whole
    assert PICKLE_WARNING not in final["output"]
    assert "arbitrary code" not in final["output"]


def test_the_registered_model_predicts_what_the_trained_student_predicts(
    final, monkeypatch
) -> None:
    import mlflow
    import numpy as np
    import torch
    from mlflow import MlflowClient

    from sakdn.train import load_student

    mlflow.set_tracking_uri(final["uri"])
    version = MlflowClient(final["uri"]).get_model_version("tiny", "1")
    student, config, meta = load_student(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="models/student.pt",
        dst_path=str(final["tmp"] / "download")))
    assert meta["final"] is True
    segments, size = config.student.segments, config.data.frame_size
    frames = torch.randn(3, segments, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = student(frames).logits  # (3, K); the input example had a batch of 2
    assert not torch.allclose(expected[0], expected[1])  # a comparison that can fail

    # MLflow refuses any pickle payload now: the load itself shows the format is pickle-free
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    module = mlflow.pytorch.load_model(final["model"])
    with torch.no_grad():
        torch.testing.assert_close(module(frames), expected, rtol=1e-5, atol=1e-5)
    pyfunc = mlflow.pyfunc.load_model(final["model"])
    predicted = pyfunc.predict(frames.numpy())
    np.testing.assert_allclose(predicted, expected.numpy(), rtol=1e-5, atol=1e-5)

    recorded = pyfunc.metadata
    assert recorded.metadata["class_names"] == meta["class_names"]
    assert set(recorded.metadata["normalization"]) == {"mean", "std"}
    assert recorded.signature.inputs.inputs[0].shape == (-1, segments, 3, size, size)
    assert recorded.signature.outputs.inputs[0].shape == (-1, len(meta["class_names"]))
    requirements = Path(mlflow.pyfunc.get_model_dependencies(final["model"])).read_text()
    assert sorted(r.split("==")[0] for r in requirements.split()) == ["mlflow", "torch"]
