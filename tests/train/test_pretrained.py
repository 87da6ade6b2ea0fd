"""Training from staged ImageNet weights: the student's frames follow the weights'
normalisation, models load from ``train.weights_dir`` and nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sakdn.data.video import IMAGENET_MEAN, IMAGENET_STD, normalize_frames, tsn_indices
from sakdn.errors import ConfigError
from sakdn.train import load_student, train
from sakdn.train.attention import gsdm_plan
from sakdn.train.data import build_data, clip_dataset
from sakdn.train.loop import RunContext
from sakdn.train.student_stage import StudentStage
from sakdn.train.teacher_stage import build_teachers
from tests.models.fixtures import IMAGENET_FILES, write_imagenet_file
from tests.train.test_train import quiet, tiny_config


@pytest.fixture
def no_download(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _expected_frames(dataset, i: int, mean, std) -> np.ndarray:
    row = dataset.rows[i]
    clip = dataset.data.clip(row)
    idx = tsn_indices(len(clip), dataset.segments, train=False)
    return normalize_frames(np.asarray(clip[idx]), mean, std)


def test_student_frames_follow_the_weights(tiny_root, tmp_path, no_download) -> None:
    scratch = tiny_config(tiny_root, tmp_path)
    bundle = build_data(scratch, log=quiet)
    plain = clip_dataset(scratch, bundle, bundle.val)
    assert (plain.mean, plain.std) == (IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(plain[0]["frames"].numpy(),
                               _expected_frames(plain, 0, IMAGENET_MEAN, IMAGENET_STD))

    pretrained = tiny_config(tiny_root, tmp_path, **{
        "student.backbone": "googlenet", "student.weights": "imagenet",
        "train.weights_dir": str(tmp_path / "none-needed")})
    dataset = clip_dataset(pretrained, bundle, bundle.val)  # normalisation needs no file
    assert (dataset.mean, dataset.std) == ((0.5,) * 3, (0.5,) * 3)
    np.testing.assert_allclose(dataset[0]["frames"].numpy(),
                               _expected_frames(dataset, 0, (0.5,) * 3, (0.5,) * 3))
    # the preprocessing cache (uint8 frames) is the same entry either way
    assert build_data(pretrained, log=quiet).data.path == bundle.data.path


def test_student_stage_starts_from_the_staged_file(tiny_root, tmp_path, no_download) -> None:
    weights_dir = tmp_path / "weights"
    _, state = write_imagenet_file("resnet18", weights_dir, seed=4)
    config = tiny_config(tiny_root, tmp_path, **{
        "student.backbone": "resnet18", "student.weights": "imagenet",
        "train.weights_dir": str(weights_dir)})
    bundle = build_data(config, log=quiet)
    ctx = RunContext(torch.device("cpu"), False, False, 0, False)
    stage = StudentStage(config, bundle, ctx, build_teachers(config, bundle), gsdm_plan(config))
    assert torch.equal(stage.model.backbone.stages[0][0].weight, state["conv1.weight"])
    assert torch.equal(stage.model.backbone.stages[4][1].bn2.running_var,
                       state["layer4.1.bn2.running_var"])


def test_missing_staged_file_stops_training_naming_it(tiny_root, tmp_path, no_download) -> None:
    config = tiny_config(tiny_root, tmp_path, **{
        "teacher.backbone": "resnet18", "teacher.weights": "imagenet",
        "train.weights_dir": str(tmp_path / "empty")})
    with pytest.raises(ConfigError) as err:
        train(config, workdir=tmp_path / "run", log=quiet)
    assert err.value.key == "teacher.weights"
    assert str(tmp_path / "empty" / IMAGENET_FILES["resnet18"]) in str(err.value)
    assert f"sakdn weights fetch --backbone resnet18 --dir {tmp_path / 'empty'}" in str(err.value)


def test_a_run_from_staged_weights_reloads_without_them(tiny_root, tmp_path, no_download) -> None:
    weights_dir = tmp_path / "weights"
    write_imagenet_file("resnet18", weights_dir, seed=2)
    config = tiny_config(tiny_root, tmp_path, **{
        "teacher.epochs": 1, "student.epochs": 1, "student.backbone": "resnet18",
        "student.weights": "imagenet", "student.partial_bn": True,
        "train.weights_dir": str(weights_dir)})
    result = train(config, workdir=tmp_path / "run", log=quiet)
    assert 0.0 <= result.metrics["student/val_acc"] <= 1.0
    for f in weights_dir.iterdir():
        f.unlink()
    model, saved, _ = load_student(result.student_path)
    assert saved.student.weights == "imagenet"
    assert model(torch.zeros(1, 2, 3, 32, 32)).logits.shape == (1, 3)
