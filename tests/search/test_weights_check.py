"""The search driver resolves every weights file a trial can load before any trial starts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import ExperimentConfig
from sakdn.errors import ConfigError
from sakdn.search import prepare as prep
from sakdn.search.space import parse_space
from tests.data.fixtures import write_utd
from tests.models.fixtures import IMAGENET_FILES
from tests.search.test_dataset_searches import CASES, CLASSES, TINY, _experiment


LR_ONLY = parse_space({"student.lr": {"loguniform": [1.0e-4, 1.0e-2]}})


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _pretrained(**overrides) -> ExperimentConfig:
    return ExperimentConfig().replace({
        "teacher.backbone": "vgg16_bn", "teacher.weights": "imagenet",
        "student.backbone": "googlenet", "student.weights": "imagenet", **overrides})


def test_missing_file_fails_with_the_backbone_the_file_and_the_command(torch_home) -> None:
    with pytest.raises(ConfigError) as err:
        prep.check_weights(_pretrained(), LR_ONLY, log=lambda m: None)
    text = str(err.value)
    assert err.value.key == "teacher.weights" and "vgg16_bn" in text
    assert str(torch_home / IMAGENET_FILES["vgg16_bn"]) in text
    assert f"sakdn weights fetch --backbone vgg16_bn --dir {torch_home}" in text


def test_every_sampled_backbone_is_checked_and_the_directory_pinned(torch_home, monkeypatch):
    checked: list[tuple[str, str, Path]] = []
    monkeypatch.setattr(prep, "verify", lambda r: checked.append((r.key, r.backbone, r.path)))
    space = parse_space({"student.backbone": {"choice": ["resnet18", "googlenet"]},
                         "student.lr": {"loguniform": [1.0e-4, 1.0e-2]}})
    out = prep.check_weights(_pretrained(), space, log=lambda m: None)
    assert out.train.weights_dir == str(torch_home)  # what trials will read
    assert sorted(checked) == sorted([
        ("teacher.weights", "vgg16_bn", torch_home / IMAGENET_FILES["vgg16_bn"]),
        ("student.weights", "googlenet", torch_home / IMAGENET_FILES["googlenet"]),
        ("student.weights", "resnet18", torch_home / IMAGENET_FILES["resnet18"]),
    ])


def test_a_sampled_backbone_without_imagenet_weights_is_refused(torch_home, monkeypatch):
    monkeypatch.setattr(prep, "verify", lambda r: None)
    space = parse_space({"student.backbone": {"choice": ["small_cnn", "googlenet"]}})
    with pytest.raises(ConfigError, match="small_cnn has no ImageNet weights"):
        prep.check_weights(_pretrained(), space, log=lambda m: None)


def test_random_initialisation_needs_no_check(torch_home) -> None:
    config = ExperimentConfig()
    assert prep.check_weights(config, LR_ONLY, log=lambda m: None) == config


def test_a_search_with_an_unstaged_file_fails_before_any_trial(tmp_path: Path) -> None:
    """The real CLI on a UTD-MHAD fixture tree, teachers from ImageNet, an empty torch cache."""
    case = CASES["utd_mhad"]
    root = tmp_path / "data" / "utd"
    write_utd(root, subjects=(1, 2, 3))
    vectors = tmp_path / "one_hot.npy"
    np.save(vectors, np.eye(CLASSES["utd_mhad"], dtype=np.float32))
    experiment = _experiment(case, tmp_path)
    overrides = {**TINY, "data.root": root, "semantics.path": vectors,
                 "train.output_dir": tmp_path / "runs", "teacher.backbone": "vgg16_bn",
                 "teacher.weights": "imagenet", "student.weights": ""}
    command = [sys.executable, "-m", "sakdn.cli", "search", str(experiment),
               *[x for k, v in overrides.items() for x in ("--set", f"{k}={v}")]]
    torch_home = tmp_path / "torch"
    env = {**os.environ, "TORCH_HOME": str(torch_home), "RAY_ADDRESS": "",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="skw", dir="/tmp")}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    log = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 2, log
    errors = [line for line in done.stderr.splitlines() if line.startswith("sakdn: error:")]
    assert len(errors) == 1, log
    expected = torch_home / "hub" / "checkpoints" / IMAGENET_FILES["vgg16_bn"]
    assert "teacher.weights = 'imagenet'" in errors[0] and "vgg16_bn" in errors[0]
    assert str(expected) in errors[0]
    assert f"sakdn weights fetch --backbone vgg16_bn --dir {expected.parent}" in errors[0]
    # nothing started: no data prepared, no MLflow store, no Tune state, no trial
    assert not (root / ".sakdn-cache").exists(), log
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*")), log
    assert "preparing data" not in done.stdout
