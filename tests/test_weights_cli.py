"""``sakdn weights fetch`` (downloads replaced by a stand-in: no network) and ``sakdn train``'s
first-use fetch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from sakdn.cli import main
from tests.models.fixtures import IMAGENET_FILES


class FakeDownload:
    """``torch.hub.download_url_to_file`` stand-in: writes a random model's state dict."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.urls: list[str] = []
        self.fail = fail

    def __call__(self, url, dst, hash_prefix=None, progress=True) -> None:
        self.urls.append(url)
        if self.fail:
            raise self.fail
        name = Path(dst).name.split("-")[0]
        kwargs = {"init_weights": True} if name == "googlenet" else {}
        torch.save(torchvision.models.get_model(name, weights=None, **kwargs).state_dict(), dst)


def test_fetch_help_documents_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["weights", "fetch", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--backbone NAME", "--dir DIR", "--weights NAME", "train.weights_dir",
                     "TORCH_HOME", "vgg16_bn, resnet18, googlenet", "docs/weights.md"):
        assert fragment in text


def test_fetch_stages_the_named_backbones_into_dir(tmp_path: Path, monkeypatch, capsys) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    out = tmp_path / "weights"
    assert main(["weights", "fetch", "--backbone", "resnet18", "--backbone", "googlenet",
                 "--dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [IMAGENET_FILES["resnet18"], IMAGENET_FILES["googlenet"]])
    assert [u.rsplit("/", 1)[1] for u in fake.urls] == [
        IMAGENET_FILES["resnet18"], IMAGENET_FILES["googlenet"]]
    assert str(out / IMAGENET_FILES["resnet18"]) in capsys.readouterr().out


def test_fetch_defaults_to_every_backbone_and_torch_cache(tmp_path, monkeypatch) -> None:
    fake = FakeDownload(fail=OSError("network unreachable"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["weights", "fetch"]) == 2  # fails at the first, naming it
    assert fake.urls == ["https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"]


@pytest.mark.parametrize("argv, fragment", [
    (["--backbone", "small_cnn"], "--backbone = 'small_cnn': has no ImageNet weights"),
    (["--weights", "w.pt"], "--weights = 'w.pt'"),
    (["--backbone", "resnet18", "--weights", "VGG16_BN_Weights.IMAGENET1K_V1"],
     "not torchvision weights of resnet18"),
])
def test_fetch_refuses_what_it_cannot_fetch(argv, fragment, capsys) -> None:
    assert main(["weights", "fetch", *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_a_run_fetches_missing_weights_on_first_use(tmp_path, monkeypatch) -> None:
    from sakdn.config import ExperimentConfig
    from sakdn.models.weights import prepare_weights

    fake = FakeDownload()
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = ExperimentConfig().replace({"student.backbone": "resnet18",
                                         "student.weights": "imagenet"})
    [resolved] = prepare_weights(config, download=True, log=lambda m: None)
    assert resolved.path == tmp_path / "torch" / "hub" / "checkpoints" / IMAGENET_FILES["resnet18"]
    assert resolved.path.is_file() and len(fake.urls) == 1


def test_train_without_network_stops_before_training(tmp_path, monkeypatch, capsys) -> None:
    fake = FakeDownload(fail=OSError("network unreachable"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main(["train", "--set", "student.backbone=resnet18", "--set",
                 "student.weights=imagenet", "--set", f"train.output_dir={tmp_path / 'run'}"])
    assert code == 2 and len(fake.urls) == 1
    err = capsys.readouterr().err
    assert "network unreachable" in err and "sakdn weights fetch --backbone resnet18" in err
    assert not (tmp_path / "run").exists()
