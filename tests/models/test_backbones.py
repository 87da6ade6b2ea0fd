"""Backbone registry: every registered network is tested the day it is added."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sakdn.errors import ConfigError
from sakdn.models.backbones import BACKBONES, build_backbone, list_backbones

# Independent expectations: (channels per stage, stride per stage, test input side).
# vgg16_bn and googlenet are tested at 32×32 to stay quick.
EXPECTED = {
    "small_cnn": ((8, 16, 32, 64, 64), (2, 4, 8, 16, 32), 64),
    "vgg16_bn": ((64, 128, 256, 512, 512), (2, 4, 8, 16, 32), 32),
    "resnet18": ((64, 64, 128, 256, 512), (2, 4, 8, 16, 32), 64),
    "googlenet": ((192, 480, 512, 832, 1024), (4, 8, 16, 16, 32), 32),
}


def test_every_registered_backbone_has_an_expectation() -> None:
    assert set(list_backbones()) == set(EXPECTED) == set(BACKBONES)


def test_the_config_offers_registered_backbones_only() -> None:
    import dataclasses

    from sakdn.config import StudentConfig, TeacherConfig

    for section in (TeacherConfig, StudentConfig):
        choices = {f.name: f.metadata for f in dataclasses.fields(section)}["backbone"]["choices"]
        assert set(choices) <= set(BACKBONES)


@pytest.mark.parametrize("name", list_backbones())
def test_stage_shapes(name: str) -> None:
    channels, strides, side = EXPECTED[name]
    net = build_backbone(name, width=8).eval()
    with torch.no_grad():
        maps = net.forward_intermediates(torch.randn(2, 3, side, side))
    assert len(maps) == 5
    assert net.channels == channels
    for m, c, s in zip(maps, channels, strides):
        assert m.shape == (2, c, side // s, side // s)
    with torch.no_grad():
        assert torch.equal(
            net(torch.zeros(1, 3, side, side)),
            net.forward_intermediates(torch.zeros(1, 3, side, side))[-1],
        )


@pytest.mark.parametrize("name", list_backbones())
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    side = EXPECTED[name][2]
    net = build_backbone(name, width=4).train()
    maps = net.forward_intermediates(torch.randn(2, 3, side, side))
    assert all(torch.isfinite(m).all() for m in maps)
    sum(m.pow(2).mean() for m in maps).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", list_backbones())
def test_min_size_input_works(name: str) -> None:
    net = build_backbone(name, width=4).eval()
    side = net.min_size
    with torch.no_grad():
        maps = net.forward_intermediates(torch.randn(1, 3, side, side))
    assert all(m.shape[-1] >= 1 for m in maps)


def test_small_cnn_width_sets_channels() -> None:
    assert build_backbone("small_cnn", width=5).channels == (5, 10, 20, 40, 40)


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_backbone("alexnet", key_prefix="teacher.")
    assert err.value.key == "teacher.backbone"
    for name in list_backbones():
        assert name in str(err.value)


def test_own_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    src = build_backbone("small_cnn", width=4)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    dst = build_backbone("small_cnn", width=4, weights=str(path))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_torchvision_state_dict_loads_into_resnet18(tmp_path) -> None:
    torch.manual_seed(3)
    native = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    native.fc = torch.nn.Linear(512, 7)  # a fine-tuned classifier: not part of the backbone
    torch.save(native.state_dict(), path)
    net = build_backbone("resnet18", weights=str(path))
    assert torch.equal(net.stages[0][0].weight, native.conv1.weight)
    assert torch.equal(net.stages[4][1].bn2.running_var, native.layer4[1].bn2.running_var)


def test_wrong_weights_raise_config_error(tmp_path) -> None:
    other = tmp_path / "other.pt"
    torch.save(build_backbone("small_cnn", width=4).state_dict(), other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [
        ("small_cnn", 8, other),  # same keys, wrong shapes
        ("resnet18", 16, other),  # different architecture
        ("small_cnn", 4, garbage),
        ("small_cnn", 4, tmp_path / "missing.pt"),
    ]
    for name, width, path in cases:
        with pytest.raises(ConfigError) as err:
            build_backbone(name, width=width, weights=str(path), key_prefix="student.")
        assert err.value.key == "student.weights"
        assert str(path) in str(err.value)


def test_torchvision_file_with_wrong_shapes_names_the_tensor(tmp_path) -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad_resnet18.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="layer2.0.conv1.weight"):
        build_backbone("resnet18", weights=str(path))
