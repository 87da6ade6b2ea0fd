"""``sakdn search`` end to end on a fixture tree of each real dataset.

Each test writes a small tree in the dataset's official layout and file formats
(``tests/data/fixtures.py``: UTD-MHAD ``.mat`` + MJPEG ``.avi``, Berkeley-MHAD Shimmer text +
Bayer PGM frame folders, MMAct CSVs + mp4 clips, with their quirks), takes the shipped
``experiments/<dataset>.yaml`` as it is, appends a ``search:`` section (the shipped files are
training configurations only) and shrinks only the sizes with ``--set``: small_cnn backbones
from scratch, 16-px GAF images, 32-px frames, 1 teacher + 2 student epochs, one-hot class
vectors instead of GloVe. The real CLI then runs a two-trial search in a subprocess, with
embedded loopback Ray and SQLite MLflow / Optuna stores in ``tmp_path``.

What each test proves: the exit status is 0; MLflow holds one FINISHED parent run and two
FINISHED child runs with ``student/val_acc`` and the dataset's per-sensor teacher metrics;
the preprocessing cache was built from that dataset with the samples the tree should yield;
the child runs' params name the dataset, its protocol and the shipped settings that were not
overridden.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.data.fixtures import write_berkeley, write_mmact, write_utd
from tests.processes import kill_processes_under
from tests.search.conftest import SMOKE_SPACE, process_env
from tests.tiny import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

TRIALS = 2
TEACHER_EPOCHS, STUDENT_EPOCHS = 1, 2
GAF_SIZE, FRAME_SIZE = 16, 32

# The sizes that make a search fit a CPU test; every other key keeps the shipped value.
TINY = {
    "data.frame_size": FRAME_SIZE,
    "data.num_workers": 0,
    "gaf.image_size": GAF_SIZE,
    "semantics.provider": "matrix",
    "teacher.backbone": "small_cnn",
    "teacher.weights": "",  # the shipped files start from ImageNet, which small_cnn has not
    "teacher.width": 4,
    "teacher.epochs": TEACHER_EPOCHS,
    "teacher.batch_size": 4,
    "student.backbone": "small_cnn",
    "student.weights": "",
    "student.width": 4,
    "student.segments": 3,
    "student.epochs": STUDENT_EPOCHS,
    "student.batch_size": 4,
    "train.num_threads": 1,
}

# datasets.md: the official class counts and the sensors each dataset's teachers see.
CLASSES = {"utd_mhad": 27, "berkeley_mhad": 11, "mmact": 35}
SENSORS = {
    "utd_mhad": ("acc", "gyro"),
    "berkeley_mhad": tuple(f"shimmer{h:02d}" for h in range(1, 7)),
    "mmact": ("acc_phone", "acc_watch", "gyro", "orientation"),
}


@dataclass(frozen=True)
class Case:
    experiment: str  # file name under experiments/
    dataset: str
    protocol: str
    write: Callable[[Path], int]  # writes the tree, returns the number of usable samples


def _utd(root: Path) -> int:
    # subjects 1, 3 train (one of them held out for validation), 2 test
    tree = write_utd(root, subjects=(1, 2, 3))
    return len(tree.ids)


def _berkeley(root: Path) -> int:
    # subjects 1, 2 train (one held out for validation), 8 test; S08 A01 R02 lacks its
    # Shimmer files, so its camera views are skipped
    tree = write_berkeley(root, subjects=(1, 2, 8))
    return sum(1 for _, _, rec in tree.views if rec in tree.with_shimmers)


def _mmact(root: Path) -> int:
    # subjects 1, 2 (and 14, the Carrying_light clip) train, 17 test; the clips of the
    # recording with an empty gyro CSV and of the one without acc_watch are skipped
    tree = write_mmact(root, subjects=(1, 2, 17))
    lacking = {tree.empty[1], tree.missing_watch}
    return sum(1 for n, _, k, m, action in tree.clips if (n, k, m, action) not in lacking)


CASES = {
    "utd_mhad": Case("utd-mhad_cross-subject.yaml", "utd_mhad", "cross_subject", _utd),
    "berkeley_mhad": Case("berkeley-mhad_cross-subject.yaml", "berkeley_mhad",
                          "cross_subject", _berkeley),
    "mmact": Case("mmact_cross-subject.yaml", "mmact", "cross_subject", _mmact),
}


def _experiment(case: Case, tmp_path: Path) -> Path:
    """The shipped experiment file, byte for byte, with a two-trial ``search:`` section."""
    shipped = (REPO / "experiments" / case.experiment).read_text()
    assert "\nsearch:" not in shipped  # else this section would be a second one
    search = f"""
search:
  space: {SMOKE_SPACE}
  metric: student/best_val_acc
  mode: max
  num_samples: {TRIALS}
  max_concurrent_trials: 2
  resources: {{cpu: 1, gpu: 0}}
  sampler: random
  pruner: none
  seed: 0
  storage_path: {tmp_path / 'store'}
  experiment_name: sakdn-{case.dataset}
  flush_timeout_s: 30
"""
    path = tmp_path / case.experiment
    path.write_text(shipped.rstrip("\n") + "\n" + search)
    return path


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_search_runs_on_a_fixture_tree_of_the_dataset(
    name: str, search_env, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    case = CASES[name]
    root = tmp_path / "data" / name
    expected_samples = case.write(root)
    vectors = tmp_path / "one_hot.npy"
    np.save(vectors, np.eye(CLASSES[case.dataset], dtype=np.float32))
    experiment = _experiment(case, tmp_path)
    overrides = {**TINY, "data.root": root, "semantics.path": vectors,
                 "train.output_dir": tmp_path / "runs"}
    command = [sys.executable, "-m", "sakdn.cli", "search", str(experiment),
               *[x for k, v in overrides.items() for x in ("--set", f"{k}={v}")]]

    ray_tmp = Path(tempfile.mkdtemp(prefix="skd", dir="/tmp"))  # short: Ray's socket paths
    try:
        done = subprocess.run(command, cwd=tmp_path, env=process_env(ray_tmp),
                              capture_output=True, text=True, timeout=540)
    finally:
        kill_processes_under(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = done.stdout[-6000:] + done.stderr[-6000:]
    assert done.returncode == 0, log

    # --- the preprocessing cache: built from this dataset's tree ------------------------
    manifests = [json.loads(p.read_text()) for p in (root / ".sakdn-cache").glob("*/manifest.json")]
    assert len(manifests) == 1, log  # the smoke space changes no preprocessing key
    manifest = manifests[0]
    assert manifest["dataset"] == case.dataset and manifest["root"] == str(root.resolve())
    assert manifest["sensor_names"] == list(SENSORS[case.dataset])
    assert len(manifest["class_names"]) == CLASSES[case.dataset]
    assert (manifest["spec"]["image_size"], manifest["spec"]["frame_size"]) == \
        (GAF_SIZE, FRAME_SIZE)
    assert manifest["counts"]["samples"] == expected_samples and not manifest["skipped"]
    frames = np.load(root / ".sakdn-cache" / manifest["key"] / "frames.npy", mmap_mode="r")
    assert frames.shape[1:] == (FRAME_SIZE, FRAME_SIZE, 3) and frames.any()

    # --- MLflow: one finished parent, one finished child per trial ----------------------
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"sakdn-{case.dataset}")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sakdn.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sakdn.role") == "trial"]
    assert len(parents) == 1 and len(runs) == 1 + TRIALS, log
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sakdn.search"] == experiment.stem
    assert parent.data.metrics["trials/complete"] == TRIALS
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["sakdn.optuna_trial"]) for c in children) == \
        list(range(TRIALS))

    shipped = _shipped_flat(case)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["sakdn.state"] == "COMPLETE"
        params = child.data.params
        assert (params["data.dataset"], params["data.protocol"]) == (case.dataset, case.protocol)
        assert params["data.root"] == str(root)
        # the shipped settings the test did not shrink reach every trial
        kept = {k: v for k, v in shipped.items()
                if k not in overrides and k not in _sampled() and not k.startswith("train.")}
        assert {k: params[k] for k in kept} == {k: str(v) for k, v in kept.items()}
        history = client.get_metric_history(child.info.run_id, "student/val_acc")
        assert sorted(m.step for m in history) == list(range(1, STUDENT_EPOCHS + 1))
        assert all(0.0 <= m.value <= 1.0 for m in history)
        teacher = {f"teacher/val_acc_{s}" for s in SENSORS[case.dataset]}
        assert teacher <= set(child.data.metrics), sorted(child.data.metrics)


def _shipped_flat(case: Case) -> dict:
    from sakdn.config import load_config

    return load_config(REPO / "experiments" / case.experiment).to_flat()


def _sampled() -> set[str]:
    from sakdn.search.space import load_space

    return {param.key for param in load_space(str(SMOKE_SPACE))}
