"""A weights directory as ``sakdn weights fetch`` leaves it, written without network.

Each file is the state dict of a randomly initialised torchvision model under the name its
ImageNet weights' URL gives (``vgg16_bn-6c64b313.pth``). Every floating-point tensor is redrawn
at random (a fresh model's BatchNorm statistics are 0 and 1, the same as an untouched backbone's,
so they would prove nothing). VGG16-BN's classifier (120 M parameters, 480 MB) is left out: the
backbone keeps only ``features``. These files cannot match the SHA-256 prefix in their names:
the model builder loads them (it checks keys and shapes); ``weights.verify`` refuses them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import vgg


# The file names torchvision's ImageNet weights download to (the last part of their URLs).
IMAGENET_FILES = {
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "googlenet": "googlenet-1378be20.pth",
}


def native_model(backbone: str) -> nn.Module:
    """The torchvision model, randomly initialised; for VGG16-BN its ``features`` only."""
    if backbone == "vgg16_bn":
        model = nn.Module()
        model.features = vgg.make_layers(vgg.cfgs["D"], batch_norm=True)
        return model
    kwargs = {"init_weights": True} if backbone == "googlenet" else {}
    return torchvision.models.get_model(backbone, weights=None, **kwargs)


def random_native_state(backbone: str, seed: int = 0) -> dict[str, Tensor]:
    """A randomly initialised torchvision model's state dict, every float tensor random."""
    torch.manual_seed(seed)
    state = native_model(backbone).state_dict()
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith("running_var"):
            out[k] = torch.rand_like(v) + 0.5  # a variance: positive
        else:
            out[k] = torch.randn_like(v) * 0.1
    return out


def write_imagenet_file(backbone: str, directory: Path, seed: int = 0,
                        state: dict[str, Tensor] | None = None) -> tuple[Path, dict[str, Tensor]]:
    """Write ``state`` (default: :func:`random_native_state`) under the expected name."""
    state = random_native_state(backbone, seed) if state is None else state
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / IMAGENET_FILES[backbone]
    torch.save(state, path)
    return path, state
