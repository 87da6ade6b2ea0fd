"""Where a backbone's initial weights come from: none, a local file, or torchvision's ImageNet.

``teacher.weights`` / ``student.weights`` take one of

- ``""``: random initialisation;
- ``imagenet``: the backbone's torchvision ImageNet weights (:data:`IMAGENET_WEIGHTS`);
- a torchvision weights name such as ``VGG16_BN_Weights.IMAGENET1K_V1`` (resolved with
  ``torchvision.models.get_weight``; it must belong to the configured backbone);
- any other value: a local ``torch.save``-d state-dict file.

A torchvision weights file lives in the *weights directory*: ``train.weights_dir`` when set,
else torch's own cache ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), under the
file name of the weights' URL (``vgg16_bn-6c64b313.pth``) — the layout torch.hub downloads to.

What is checked, and where:

- :func:`fetch` downloads through torchvision's weights API (``Weights.get_state_dict`` →
  ``torch.hub.load_state_dict_from_url`` with ``check_hash=True``: the SHA-256 prefix in the
  file name is checked while downloading); a file already there is checked by :func:`verify`
  and downloaded again when it fails.
- :func:`verify` (the search driver before any trial starts, ``sakdn train``, ``sakdn weights
  fetch``) checks that the file exists and that its SHA-256 starts with the prefix in its name.
  torch.hub itself never checks a file it finds in its cache.
- :func:`read_state_dict` (the model builder, inside trials) never downloads and never hashes:
  a missing file is an error naming it and the fetch command, and the file must fit the
  backbone key by key (shape-checked where it is loaded). The driver has verified that file
  once; hashing 528 MB of VGG16-BN again in every trial and teacher branch would cost seconds
  each. A file written under the expected name by hand (tests write a random model's state
  dict) therefore loads in the builder but fails :func:`verify`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping
from urllib.parse import urlparse

import torch
from torch import Tensor

from sakdn.errors import ConfigError

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

    from sakdn.config import ExperimentConfig

IMAGENET = "imagenet"

# The weights ``imagenet`` means, per registered backbone (torchvision enum names, stable across
# torchvision versions, unlike ``DEFAULT``). Backbones missing here have no pretrained weights.
IMAGENET_WEIGHTS: dict[str, str] = {
    "vgg16_bn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "googlenet": "GoogLeNet_Weights.IMAGENET1K_V1",
}

# torchvision's ``googlenet(weights=...)`` turns on ``transform_input``: its forward re-maps the
# ImageNet-normalised input to (x - 0.5) / 0.5 per channel, the scaling the original weights were
# trained with. The staged backbone starts at conv1 and skips that step, so frames for those
# weights are normalised with the scaling it produces (tests compare it with torchvision's).
_TRANSFORM_INPUT: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "googlenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

_ENUM_NAME = re.compile(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: name-<sha256 prefix>.ext

Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per RGB channel


def is_torchvision(spec: str) -> bool:
    """True for ``imagenet`` and torchvision weights names (``X_Weights.Y``), not file paths."""
    return spec == IMAGENET or bool(_ENUM_NAME.fullmatch(spec))


def default_dir() -> Path:
    """torch's weights cache, ``$TORCH_HOME/hub/checkpoints`` (read from the environment now)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class ResolvedWeights:
    """One configured weights value, resolved (no file is read).

    Attributes:
        key: the config key it came from (``teacher.weights``).
        backbone: the backbone it initialises.
        spec: the configured value.
        path: the file to load (in the weights directory for torchvision weights).
        weights_dir: ``train.weights_dir`` as configured ("" = torch's cache).
        enum_name: the torchvision weights name, or "" for a local file.
    """

    key: str
    backbone: str
    spec: str
    path: Path
    weights_dir: str = ""
    enum_name: str = ""

    @property
    def from_torchvision(self) -> bool:
        return bool(self.enum_name)

    @property
    def fetch_command(self) -> str:
        """The command that stages this file (torchvision weights only)."""
        command = f"sakdn weights fetch --backbone {self.backbone}"
        if self.spec != IMAGENET:
            command += f" --weights {self.spec}"
        if self.weights_dir:
            command += f" --dir {self.weights_dir}"
        return command

    def torchvision_weights(self) -> WeightsEnum:
        from torchvision.models import get_weight

        return get_weight(self.enum_name)

    def describe(self) -> str:
        if self.from_torchvision:
            return f"{self.backbone} {self.enum_name} from {self.path}"
        return f"{self.backbone} from {self.path}"


def resolve(backbone: str, spec: str, key: str, weights_dir: str = "") -> ResolvedWeights | None:
    """Resolve ``spec`` for ``backbone`` (None for random initialisation).

    Raises:
        ConfigError: ``imagenet`` for a backbone without ImageNet weights, an unknown
            torchvision weights name, or one that belongs to another model.
    """
    if not spec:
        return None
    if not is_torchvision(spec):
        return ResolvedWeights(key, backbone, spec, Path(spec), weights_dir)
    if backbone not in IMAGENET_WEIGHTS:
        raise ConfigError(
            key, spec, f"backbone {backbone} has no ImageNet weights (torchvision weights exist "
            f"for {', '.join(IMAGENET_WEIGHTS)}); give a local state-dict file or leave {key} "
            "empty for random initialisation",
        )
    from torchvision.models import get_weight

    expected = get_weight(IMAGENET_WEIGHTS[backbone])
    name = IMAGENET_WEIGHTS[backbone] if spec == IMAGENET else spec
    try:
        weights = get_weight(name)
    except (ValueError, KeyError):
        weights = None
    if type(weights) is not type(expected):
        choices = ", ".join(f"{type(expected).__name__}.{w.name}" for w in type(expected))
        raise ConfigError(
            key, spec, f"not torchvision weights of {backbone}; use {IMAGENET} or {choices}"
        )
    directory = Path(weights_dir) if weights_dir else default_dir()
    file_name = os.path.basename(urlparse(weights.url).path)
    enum_name = f"{type(weights).__name__}.{weights.name}"
    return ResolvedWeights(key, backbone, spec, directory / file_name, weights_dir, enum_name)


def configured(config: ExperimentConfig) -> list[ResolvedWeights]:
    """The teacher's and the student's weights as configured (random initialisation left out)."""
    found = [
        resolve(config.teacher.backbone, config.teacher.weights, "teacher.weights",
                config.train.weights_dir),
        resolve(config.student.backbone, config.student.weights, "student.weights",
                config.train.weights_dir),
    ]
    return [r for r in found if r is not None]


def input_normalization(backbone: str, spec: str) -> Normalization | None:
    """The (mean, std) on [0, 1] RGB that the student's frames need for these weights.

    torchvision weights: the mean/std of their own transforms (``weights.transforms()``), or
    the input scaling the torchvision model applies itself (GoogLeNet). None for random
    initialisation and local files, which state no normalisation: the frames then keep the data
    layer's default (ImageNet statistics, what a torchvision-format ImageNet file expects).
    """
    if not is_torchvision(spec):
        return None
    resolved = resolve(backbone, spec, "student.weights")
    if backbone in _TRANSFORM_INPUT:
        return _TRANSFORM_INPUT[backbone]
    transforms = resolved.torchvision_weights().transforms()
    return tuple(transforms.mean), tuple(transforms.std)


# ------------------------------------------------------------------------ reading and checking


def missing_error(resolved: ResolvedWeights) -> ConfigError:
    return ConfigError(
        resolved.key, resolved.spec,
        f"{resolved.backbone} weights {resolved.enum_name} not found: expected the file "
        f"{resolved.path}; stage it with `{resolved.fetch_command}` (once, on a machine with "
        "network, into a directory every node reads: docs/weights.md)",
    )


def read_state_dict(resolved: ResolvedWeights) -> Mapping[str, Tensor]:
    """The state dict in the resolved file, for the model builder: never downloads.

    ``torch.hub.load_state_dict_from_url`` loads an existing file the same way (``torch.load``);
    it is not called here because a missing file would make it download inside a trial.
    """
    if resolved.from_torchvision and not resolved.path.exists():
        raise missing_error(resolved)
    return _load(resolved.path, resolved)


def _load(path: Path, resolved: ResolvedWeights) -> Mapping[str, Tensor]:
    key, value = resolved.key, resolved.spec
    where = f"{path}: " if resolved.from_torchvision else ""
    refetch = (f"; stage it again with `{resolved.fetch_command}`" if resolved.from_torchvision
               else "")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(key, value, f"{where}file not found") from None
    except Exception as err:  # unpickling errors come in many types
        raise ConfigError(key, value,
                          f"{where}not a torch state-dict file: {err}{refetch}") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(key, value, f"{where}must hold a state dict (a mapping of names to "
                                      f"tensors){refetch}")
    return state


def hash_prefix(path: Path) -> str:
    """The SHA-256 prefix torch.hub's naming convention puts in a file name ('' if none)."""
    match = _HASH_IN_NAME.search(path.name)
    return match.group(1) if match else ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(resolved: ResolvedWeights) -> None:
    """Check a configured file before training: torchvision weights exist and match the
    SHA-256 prefix in their name; a local file is a readable state dict.

    Raises:
        ConfigError: naming the key, the backbone, the file and, for torchvision weights, the
            command that stages it.
    """
    if not resolved.from_torchvision:
        _load(resolved.path, resolved)
        return
    if not resolved.path.is_file():
        raise missing_error(resolved)
    expected = hash_prefix(resolved.path)
    actual = sha256(resolved.path)
    if not actual.startswith(expected):
        raise ConfigError(
            resolved.key, resolved.spec,
            f"{resolved.backbone} weights file {resolved.path} is corrupt: its SHA-256 starts "
            f"{actual[:len(expected)]}, its name says {expected}; delete it and stage it again "
            f"with `{resolved.fetch_command}`",
        )


def fetch(resolved: ResolvedWeights, progress: bool = True,
          log: Callable[[str], None] = print) -> Path:
    """Make sure the torchvision weights file is in the weights directory and verified.

    Downloads it (torchvision's ``Weights.get_state_dict``, hash checked) when it is missing,
    or when the file there fails :func:`verify` (it is deleted first).
    """
    if not resolved.from_torchvision:
        raise ConfigError(resolved.key, resolved.spec,
                          f"not torchvision weights; use {IMAGENET} or a torchvision weights name")
    path = resolved.path
    if path.is_file():
        try:
            verify(resolved)
            return path
        except ConfigError as err:
            log(f"{err.problem.split(';')[0]}: downloading it again")
            path.unlink()
    weights = resolved.torchvision_weights()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        weights.get_state_dict(model_dir=str(path.parent), file_name=path.name, progress=progress,
                               check_hash=True, map_location="cpu", weights_only=True)
    except Exception as err:  # no network, refused, hash mismatch: one message, one cause
        raise ConfigError(
            resolved.key, resolved.spec,
            f"could not download {weights.url} into {path}: {err}; on a machine without network, "
            f"run `{resolved.fetch_command}` where there is one and copy the file there",
        ) from None
    return path


def prepare_weights(config: ExperimentConfig, download: bool,
                    log: Callable[[str], None] = print) -> list[ResolvedWeights]:
    """Check (and with ``download``, fetch when missing) every weights file a run needs.

    ``sakdn train`` downloads on first use (``download=True``); the search driver does not (a
    file it fetched into its own cache might not be one every node reads).
    """
    found = configured(config)
    for resolved in found:
        if download and resolved.from_torchvision:
            fetch(resolved, log=log)
        else:
            verify(resolved)
        log(f"{resolved.key}: {resolved.describe()} (verified)")
    return found
