"""Registry of staged feature extractors: five conv stages whose outputs serve as attention maps.

Every backbone is cut into exactly five stages so that teachers (SPAMFM after conv1..conv5) and the
student (GSDM layer pairs 1..5) can address them by index. torchvision networks are built with
``weights=None``; initial weights (ImageNet from the weights directory, or a local state-dict
file: ``weights.py``) are then loaded into the stages, never downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from sakdn.errors import ConfigError
from sakdn.models.weights import ResolvedWeights, read_state_dict, resolve

NUM_STAGES = 5


class Backbone(nn.Module):
    """Five sequential stages; ``forward_intermediates`` returns every stage output.

    Attributes:
        name: registry name.
        stages: the five stage modules, applied in order (teachers fuse between them).
        channels: channel count of each stage output.
        min_size: smallest input side for which every stage output is at least 1×1.
    """

    def __init__(
        self, name: str, stages: list[nn.Module], channels: tuple[int, ...], min_size: int
    ) -> None:
        super().__init__()
        if len(stages) != NUM_STAGES or len(channels) != NUM_STAGES:
            raise ValueError(f"a backbone needs {NUM_STAGES} stages, got {len(stages)}")
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)
        self.min_size = min_size

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) → the five stage outputs, shallow to deep, each (B, C_i, H_i, W_i)."""
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


@dataclass
class _Parts:
    """What a registry builder returns: stages, their widths, and the torchvision model they
    were cut from (so that a torchvision-format state dict can be loaded into them)."""

    stages: list[nn.Module]
    channels: tuple[int, ...]
    min_size: int
    native: nn.Module | None = None


def _small_cnn(width: int) -> _Parts:
    """5 × [conv3×3, BN, ReLU, maxpool2]; widths w, 2w, 4w, 8w, 8w.

    ``ceil_mode`` pooling keeps every stage at least 1×1, so any input side works.
    """
    widths = (width, 2 * width, 4 * width, 8 * width, 8 * width)
    stages: list[nn.Module] = []
    c_in = 3
    for c_out in widths:
        stages.append(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            )
        )
        c_in = c_out
    return _Parts(stages, widths, min_size=1)


def _vgg16_bn(width: int) -> _Parts:
    """torchvision VGG16-BN ``features`` split after each of its five max-pools (Conv1_2 …
    Conv5_3 of the reference teacher; strides 2, 4, 8, 16, 32). ``width`` is ignored.

    Only the convolutional part is built (torchvision's ``make_layers`` with VGG's own
    initialisation): the 120 M-parameter classifier of ``vgg16_bn()`` would be discarded anyway.
    The parent module keeps torchvision's ``features.*`` key names for weight files.
    """
    from torchvision.models import vgg  # torchvision only for its backbones: ~1.3 s to import

    native = nn.Module()
    native.features = vgg.make_layers(vgg.cfgs["D"], batch_norm=True)
    for m in native.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    stages: list[nn.Module] = []
    current: list[nn.Module] = []
    for layer in native.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    return _Parts(stages, (64, 128, 256, 512, 512), min_size=32, native=native)


def _resnet18(width: int) -> _Parts:
    """torchvision ResNet-18: stem (conv1, bn1, relu; stride 2), max-pool + layer1 (stride 4),
    layer2, layer3, layer4 (stride 32). The max-pool goes with layer1 so that the five maps
    have five distinct resolutions. ``width`` is ignored."""
    from torchvision.models import resnet18

    n = resnet18(weights=None)
    stages: list[nn.Module] = [
        nn.Sequential(n.conv1, n.bn1, n.relu),
        nn.Sequential(n.maxpool, n.layer1),
        n.layer2,
        n.layer3,
        n.layer4,
    ]
    return _Parts(stages, (64, 64, 128, 256, 512), min_size=1, native=n)


def _googlenet(width: int) -> _Parts:
    """torchvision GoogLeNet (BN in every conv) as the stand-in for the reference BN-Inception.

    Stage ↔ reference student map pairing (strides for a 224 input in brackets):
    1. conv1 … conv3 (192 ch, /4)   ↔ BN-Inception conv2 (192 ch, /4)
    2. inception3a, 3b (480, /8)    ↔ inception_3c (/16 in BN-Inception: its 3c downsamples)
    3. inception4a … 4c (512, /16)  ↔ inception_4c (/16)
    4. inception4d, 4e (832, /16)   ↔ inception_5a (/32)
    5. inception5a, 5b (1024, /32)  ↔ inception_5b (/32)
    GSDM resizes maps to a common size, so the resolution differences of stages 2 and 4 only
    change the detail of the map, not its use. ``width`` is ignored.
    """
    from torchvision.models import googlenet

    n = googlenet(weights=None, aux_logits=False, init_weights=True)
    stages: list[nn.Module] = [
        nn.Sequential(n.conv1, n.maxpool1, n.conv2, n.conv3),
        nn.Sequential(n.maxpool2, n.inception3a, n.inception3b),
        nn.Sequential(n.maxpool3, n.inception4a, n.inception4b, n.inception4c),
        nn.Sequential(n.inception4d, n.inception4e),
        nn.Sequential(n.maxpool4, n.inception5a, n.inception5b),
    ]
    return _Parts(stages, (192, 480, 512, 832, 1024), min_size=15, native=n)


BACKBONES: dict[str, Callable[[int], _Parts]] = {
    "small_cnn": _small_cnn,
    "vgg16_bn": _vgg16_bn,
    "resnet18": _resnet18,
    "googlenet": _googlenet,
}


def list_backbones() -> list[str]:
    """The registered backbone names."""
    return list(BACKBONES)


def build_backbone(
    name: str, width: int = 16, weights: str = "", key_prefix: str = "", weights_dir: str = ""
) -> Backbone:
    """Build a registered backbone with its initial weights.

    Args:
        name: a key of ``BACKBONES``.
        width: base channel count (``small_cnn`` only).
        weights: "" (random initialisation), ``imagenet`` or a torchvision weights name (the
            file in ``weights_dir``; see ``weights.py``), or a local ``torch.save``-d state
            dict, either of this ``Backbone`` (keys ``stages.*``) or of the torchvision model it
            is cut from. Loaded with ``weights_only=True``; nothing is downloaded.
        key_prefix: config section prefix for error messages (``"teacher."``).
        weights_dir: where torchvision weights files are ("" = torch's cache).

    Raises:
        ConfigError: unknown name, weights this backbone has not, a missing file, or a file
            that cannot be read or does not fit.
    """
    if name not in BACKBONES:
        raise ConfigError(
            f"{key_prefix}backbone", name, "unknown backbone; choose from " + ", ".join(BACKBONES)
        )
    resolved = resolve(name, weights, f"{key_prefix}weights", weights_dir)
    parts = BACKBONES[name](width)
    backbone = Backbone(name, parts.stages, parts.channels, parts.min_size)
    if resolved is not None:
        load_weights(backbone, resolved, parts.native)
    return backbone


def load_weights(backbone: Backbone, resolved: ResolvedWeights, native: nn.Module | None) -> None:
    """Load the resolved file into the backbone (own key format) or into its torchvision parent.

    Only the layers the five stages keep are taken from a torchvision file: its classifier may
    have any class count. Every kept tensor must be in the file with the model's shape.
    """
    state = read_state_dict(resolved)
    own = backbone.state_dict()
    if set(own) == set(state) and all(own[k].shape == state[k].shape for k in own):
        backbone.load_state_dict(state)
        return
    if native is not None:
        kept = {id(p) for p in backbone.state_dict(keep_vars=True).values()}
        wanted = {k: v for k, v in native.state_dict(keep_vars=True).items() if id(v) in kept}
        if set(wanted) <= set(state):
            bad = [k for k, v in wanted.items() if v.shape != state[k].shape]
            if not bad:
                native.load_state_dict({k: state[k] for k in wanted}, strict=False)
                return
            raise _does_not_fit(backbone, resolved, _mismatch(wanted, state))
    raise _does_not_fit(backbone, resolved, _mismatch(own, state))


def _does_not_fit(backbone: Backbone, resolved: ResolvedWeights, problem: str) -> ConfigError:
    where = f"{resolved.path} " if resolved.from_torchvision else ""
    return ConfigError(resolved.key, resolved.spec,
                       f"{where}does not fit {backbone.name}: {problem}")


def _mismatch(want: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> str:
    """A short description of how a state dict differs from the expected one."""
    missing = [k for k in want if k not in got]
    shapes = [k for k in want if k in got and want[k].shape != got[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} shape mismatches (e.g. {k}: file {tuple(got[k].shape)}, "
            f"model {tuple(want[k].shape)})"
        )
    unexpected = [k for k in got if k not in want]
    if unexpected and not parts:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    return "; ".join(parts)


def stage_sizes(name: str, width: int, side: int) -> list[tuple[int, int]]:
    """(H, W) of the five stage outputs for a ``side`` × ``side`` input, computed on the meta
    device (shapes only: no weights are allocated, nothing is computed)."""
    if name not in BACKBONES:
        raise ConfigError("backbone", name, "unknown backbone; choose from " + ", ".join(BACKBONES))
    with torch.device("meta"):
        parts = BACKBONES[name](width)
        backbone = Backbone(name, parts.stages, parts.channels, parts.min_size).eval()
        outs = backbone.forward_intermediates(torch.empty(1, 3, side, side))
    return [(int(o.shape[-2]), int(o.shape[-1])) for o in outs]
