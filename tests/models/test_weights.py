"""Pretrained weights: ``imagenet`` through torchvision's weights API, offline, from a staged
weights directory that each test writes itself (``tests/models/fixtures.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from sakdn.config import StudentConfig, TeacherConfig
from sakdn.data.video import IMAGENET_MEAN, IMAGENET_STD, normalize_frames
from sakdn.errors import ConfigError
from sakdn.models import weights as w
from sakdn.models.backbones import BACKBONES, build_backbone, list_backbones
from sakdn.models.student import Student
from sakdn.models.teacher import TeacherEnsemble
from tests.models.fixtures import IMAGENET_FILES, native_model, write_imagenet_file

PRETRAINED = [name for name in list_backbones() if name in w.IMAGENET_WEIGHTS]
SIDE = {"vgg16_bn": 32, "resnet18": 64, "googlenet": 32}  # quick input sides that work
HEADS = ("classifier.", "fc.", "aux1.", "aux2.")  # torchvision layers no stage keeps


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch cache: ``$TORCH_HOME/hub/checkpoints`` is the default weights dir."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def no_download(monkeypatch) -> None:
    """Any download attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_every_torchvision_backbone_has_imagenet_weights() -> None:
    with_native = {name for name, build in BACKBONES.items() if build(4).native is not None}
    assert set(PRETRAINED) == with_native == set(IMAGENET_FILES)
    assert "small_cnn" not in w.IMAGENET_WEIGHTS


@pytest.mark.parametrize("name", PRETRAINED)
def test_imagenet_resolves_to_torchvision_file_name(name: str, torch_home: Path) -> None:
    resolved = w.resolve(name, "imagenet", "teacher.weights")
    assert resolved.path == torch_home / IMAGENET_FILES[name]
    explicit = w.resolve(name, w.IMAGENET_WEIGHTS[name], "teacher.weights", "/shared/w")
    assert explicit.path == Path("/shared/w") / IMAGENET_FILES[name]
    assert explicit.enum_name == w.IMAGENET_WEIGHTS[name]


def _tensor_matches(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor is one of the file's, and every kept file tensor is used once."""
    kept = {k: v for k, v in state.items()
            if not k.startswith(HEADS) and not k.endswith("num_batches_tracked")}
    mine = {k: v for k, v in backbone.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert len(mine) == len(kept)
    remaining = dict(kept)
    for key, value in mine.items():
        match = next((fk for fk, fv in remaining.items()
                      if fv.shape == value.shape and torch.equal(fv, value)), None)
        assert match is not None, f"{key} is none of the file's tensors"
        del remaining[match]


def _reference_features(name: str, ref: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's own forward path up to the last stage the backbone keeps."""
    if name == "vgg16_bn":
        return ref.features(x)
    if name == "resnet18":
        x = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        return ref.layer4(ref.layer3(ref.layer2(ref.layer1(x))))
    for m in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
              "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "maxpool4", "inception5a", "inception5b"):
        x = getattr(ref, m)(x)
    return x


@pytest.mark.parametrize("name", PRETRAINED)
@pytest.mark.parametrize("spec", ["imagenet", "enum"])
def test_imagenet_loads_exactly_the_cached_tensors(
    name: str, spec: str, torch_home: Path, no_download
) -> None:
    _, state = write_imagenet_file(name, torch_home, seed=11)
    weights = "imagenet" if spec == "imagenet" else w.IMAGENET_WEIGHTS[name]
    torch.manual_seed(0)
    net = build_backbone(name, weights=weights, key_prefix="teacher.").eval()
    _tensor_matches(net, state)

    ref = native_model(name).eval()
    ref.load_state_dict(state)
    x = torch.randn(2, 3, SIDE[name], SIDE[name])
    with torch.no_grad():
        assert torch.equal(net(x), _reference_features(name, ref, x))


def test_weights_dir_overrides_torch_cache(tmp_path: Path, torch_home: Path) -> None:
    _, state = write_imagenet_file("resnet18", tmp_path / "shared", seed=3)
    net = build_backbone("resnet18", weights="imagenet", weights_dir=str(tmp_path / "shared"))
    assert torch.equal(net.stages[0][0].weight, state["conv1.weight"])
    assert not torch_home.exists()


@pytest.mark.parametrize("name", PRETRAINED)
def test_offline_and_missing_names_the_file_and_the_fetch_command(
    name: str, torch_home: Path, no_download
) -> None:
    with pytest.raises(ConfigError) as err:
        build_backbone(name, weights="imagenet", key_prefix="student.")
    assert err.value.key == "student.weights"
    text = str(err.value)
    assert str(torch_home / IMAGENET_FILES[name]) in text
    assert f"sakdn weights fetch --backbone {name}" in text
    with pytest.raises(ConfigError) as err:
        build_backbone(name, weights="imagenet", weights_dir="/shared/weights")
    assert f"/shared/weights/{IMAGENET_FILES[name]}" in str(err.value)
    assert f"sakdn weights fetch --backbone {name} --dir /shared/weights" in str(err.value)


def test_wrong_shape_file_is_refused_with_the_key_that_does_not_fit(torch_home: Path) -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer3.1.bn2.running_var"] = torch.ones(7)
    path, _ = write_imagenet_file("resnet18", torch_home, state=state)
    with pytest.raises(ConfigError) as err:
        build_backbone("resnet18", weights="imagenet", key_prefix="student.")
    assert err.value.key == "student.weights"
    assert "layer3.1.bn2.running_var" in str(err.value) and str(path) in str(err.value)


def test_file_of_another_architecture_is_refused(torch_home: Path) -> None:
    _, state = write_imagenet_file("resnet18", torch_home)
    (torch_home / IMAGENET_FILES["resnet18"]).rename(torch_home / IMAGENET_FILES["googlenet"])
    with pytest.raises(ConfigError, match="missing keys"):
        build_backbone("googlenet", weights="imagenet")


def test_corrupt_cached_file_names_the_file(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    path = torch_home / IMAGENET_FILES["googlenet"]
    path.write_bytes(b"truncated download")
    with pytest.raises(ConfigError) as err:
        build_backbone("googlenet", weights="imagenet", key_prefix="student.")
    assert str(path) in str(err.value) and "sakdn weights fetch" in str(err.value)


def test_small_cnn_has_no_imagenet_weights() -> None:
    for spec in ("imagenet", "VGG16_BN_Weights.IMAGENET1K_V1"):
        with pytest.raises(ConfigError) as err:
            build_backbone("small_cnn", weights=spec, key_prefix="teacher.")
        assert err.value.key == "teacher.weights"
        assert "small_cnn has no ImageNet weights" in str(err.value)


@pytest.mark.parametrize("spec", ["ResNet18_Weights.IMAGENET1K_V1", "VGG16_BN_Weights.NOPE",
                                  "Nope_Weights.IMAGENET1K_V1"])
def test_torchvision_name_must_belong_to_the_backbone(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        w.resolve("vgg16_bn", spec, "teacher.weights")
    assert err.value.key == "teacher.weights"
    assert "VGG16_BN_Weights.IMAGENET1K_V1" in str(err.value)


def test_local_paths_are_not_torchvision_names(tmp_path: Path) -> None:
    assert w.is_torchvision("imagenet") and w.is_torchvision("GoogLeNet_Weights.IMAGENET1K_V1")
    for spec in ("", "w.pt", str(tmp_path / "imagenet.pth"), "runs/ResNet18_Weights.pt"):
        assert not w.is_torchvision(spec)
    resolved = w.resolve("resnet18", "runs/w.pt", "student.weights")
    assert resolved.path == Path("runs/w.pt") and not resolved.from_torchvision


# ------------------------------------------------------------------------------- checksums


def _named_by_hash(directory: Path, stem: str) -> Path:
    """A real state-dict file named ``<stem>-<its own sha256 prefix>.pth``."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "tmp.pth"
    torch.save({"x": torch.arange(5.0)}, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return tmp.rename(directory / f"{stem}-{prefix}.pth")


def _resolved(path: Path) -> w.ResolvedWeights:
    return w.ResolvedWeights("teacher.weights", "resnet18", "imagenet", path, str(path.parent),
                             "ResNet18_Weights.IMAGENET1K_V1")


def test_verify_checks_the_sha256_prefix_in_the_file_name(tmp_path: Path) -> None:
    path = _named_by_hash(tmp_path, "resnet18")
    w.verify(_resolved(path))  # matches
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as err:
        w.verify(_resolved(path))
    assert "corrupt" in str(err.value) and str(path) in str(err.value)
    assert f"sakdn weights fetch --backbone resnet18 --dir {tmp_path}" in str(err.value)


def test_verify_refuses_a_file_torchvision_did_not_write(torch_home: Path) -> None:
    """What the model builder accepts (right keys and shapes) is not what torchvision ships."""
    write_imagenet_file("resnet18", torch_home)
    resolved = w.resolve("resnet18", "imagenet", "student.weights")
    build_backbone("resnet18", weights="imagenet")  # loads: the builder does not hash
    with pytest.raises(ConfigError, match="SHA-256 starts"):
        w.verify(resolved)


def test_verify_of_missing_file_names_the_fetch_command(torch_home: Path) -> None:
    with pytest.raises(ConfigError, match="sakdn weights fetch --backbone googlenet"):
        w.verify(w.resolve("googlenet", "imagenet", "student.weights"))


def test_verify_reads_a_local_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(1)}, good)
    w.verify(w.resolve("resnet18", str(good), "student.weights"))
    with pytest.raises(ConfigError, match="file not found"):
        w.verify(w.resolve("resnet18", str(tmp_path / "missing.pt"), "student.weights"))


# ------------------------------------------------------------------------------- fetching


class FakeDownload:
    """Stands in for ``torch.hub.download_url_to_file``: records the call, writes a file."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail = fail

    def __call__(self, url, dst, hash_prefix=None, progress=True) -> None:
        self.calls.append((url, dst, hash_prefix))
        if self.fail:
            raise self.fail
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), dst)


def test_fetch_downloads_through_torchvision_with_the_hash_checked(
    tmp_path: Path, monkeypatch
) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    resolved = w.resolve("resnet18", "imagenet", "--weights", str(tmp_path / "w"))
    assert w.fetch(resolved, progress=False) == tmp_path / "w" / "resnet18-f37072fd.pth"
    url, dst, prefix = fake.calls[0]
    assert url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert dst == str(tmp_path / "w" / "resnet18-f37072fd.pth") and prefix == "f37072fd"


def test_fetch_keeps_a_verified_file_and_replaces_a_corrupt_one(
    tmp_path: Path, monkeypatch
) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    good = _named_by_hash(tmp_path, "resnet18")
    assert w.fetch(_resolved(good), log=lambda m: None) == good and not fake.calls
    bad = tmp_path / "resnet18-00000000.pth"
    bad.write_bytes(b"junk")
    messages: list[str] = []
    w.fetch(_resolved(bad), progress=False, log=messages.append)
    assert len(fake.calls) == 1 and "corrupt" in messages[0]
    assert torch.load(bad, weights_only=True)  # the download's file


def test_fetch_without_network_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    import urllib.error

    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        FakeDownload(fail=urllib.error.URLError("no route to host")))
    resolved = w.resolve("googlenet", "imagenet", "--weights", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        w.fetch(resolved, progress=False)
    text = str(err.value)
    assert "no route to host" in text and str(resolved.path) in text
    assert f"sakdn weights fetch --backbone googlenet --dir {tmp_path}" in text


# ------------------------------------------------------------------------------- models


def test_teacher_branches_all_start_from_the_file(torch_home: Path) -> None:
    _, state = write_imagenet_file("vgg16_bn", torch_home, seed=5)
    config = TeacherConfig(backbone="vgg16_bn", weights="imagenet", spamfm_stages="none")
    net = TeacherEnsemble(config, num_sensors=3, num_classes=4, semantic_dim=6, image_size=32)
    for branch in net.branches:
        _tensor_matches(branch.backbone, state)
    # parameters are not shared: each branch trains on its own
    ptrs = {b.backbone.stages[0][0].weight.data_ptr() for b in net.branches}
    assert len(ptrs) == 3


FIRST_BN = {"resnet18": "bn1", "googlenet": "conv1.bn"}  # the one BN partial BN leaves training


@pytest.mark.parametrize("name", sorted(FIRST_BN))
def test_partial_bn_with_pretrained_weights(name: str, torch_home: Path) -> None:
    assert name in StudentConfig.__dataclass_fields__["backbone"].metadata["choices"]
    _, state = write_imagenet_file(name, torch_home, seed=9)
    config = StudentConfig(backbone=name, weights="imagenet", segments=2, consensus="avg",
                           partial_bn=True)
    net = Student(config, num_classes=5, semantic_dim=6, frame_size=32).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first, rest = bns[0], bns[1:]
    # the first BN is the network's first (stem) BN, and it carries the file's statistics
    assert torch.equal(first.running_mean, state[f"{FIRST_BN[name]}.running_mean"])
    assert first.training and first.weight.requires_grad
    assert rest and all(not bn.training for bn in rest)
    assert all(not p.requires_grad for bn in rest for p in bn.parameters())
    file_vars = {id(bn): bn.running_var.clone() for bn in rest}
    assert all(any(torch.equal(v, s) for s in state.values() if s.shape == v.shape)
               for v in file_vars.values())  # pretrained statistics, not fresh ones (all 1)
    out = net(torch.randn(2, 2, 3, 32, 32))
    out.logits.sum().backward()
    assert not torch.equal(first.running_mean, state[f"{FIRST_BN[name]}.running_mean"])
    assert all(torch.equal(bn.running_var, file_vars[id(bn)]) for bn in rest)
    assert all(p.grad is None for bn in rest for p in bn.parameters())
    assert first.weight.grad is not None
    # the new fc on pretrained features starts at N(0, 0.001²)
    assert net.fc.weight.std().item() < 0.01 and not net.fc.bias.any()


def test_load_student_needs_no_weights_file(tmp_path: Path, torch_home: Path) -> None:
    from sakdn.config import ExperimentConfig
    from sakdn.train import checkpoint as ckpt
    from sakdn.train import load_student

    write_imagenet_file("resnet18", torch_home)
    config = ExperimentConfig().replace({
        "student.backbone": "resnet18", "student.weights": "imagenet", "student.segments": 2,
        "data.frame_size": 32,
    })
    net = Student(config.student, 3, 4, frame_size=32)
    path = ckpt.save_model(tmp_path / "student.pt", net, config,
                           {"class_names": ["a", "b", "c"], "semantic_dim": 4})
    for f in torch_home.iterdir():
        f.unlink()
    loaded, saved, _ = load_student(path)
    assert saved.student.weights == "imagenet"
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------- normalisation


def _frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn"])
def test_frames_follow_the_weights_transforms(name: str) -> None:
    mean, std = w.input_normalization(name, "imagenet")
    transforms = torchvision.models.get_weight(w.IMAGENET_WEIGHTS[name]).transforms()
    assert (list(mean), list(std)) == (list(transforms.mean), list(transforms.std))


def test_googlenet_frames_get_torchvisions_transform_input() -> None:
    """torchvision's pretrained GoogLeNet re-scales ImageNet-normalised input itself; the staged
    backbone skips that step, so the frames are normalised to what it produces."""
    frames = _frames()
    ours = normalize_frames(frames, *w.input_normalization("googlenet", "imagenet"))
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    t = weights.transforms()
    imagenet = normalize_frames(torch.from_numpy(frames), t.mean, t.std)
    ref = torchvision.models.googlenet(weights=None, transform_input=True, aux_logits=False,
                                       init_weights=True)
    torch.testing.assert_close(torch.from_numpy(ours), ref._transform_input(imagenet))


def test_scratch_and_local_weights_keep_the_default_normalisation(tmp_path: Path) -> None:
    assert w.input_normalization("googlenet", "") is None
    assert w.input_normalization("small_cnn", "") is None
    assert w.input_normalization("resnet18", str(tmp_path / "w.pt")) is None
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(ConfigError):
        w.input_normalization("googlenet", "VGG16_BN_Weights.IMAGENET1K_V1")
