r"""Segment-based RGB-video student (method doc §5).

Per frame s of a clip: f_s = W · Dropout(GAP(backbone(x_s))) ∈ R^D (the student's "fc1"; W
initialised N(0, 0.001²), bias 0, as in the reference, when a pretrained backbone is loaded).
Clip semantic vector v = (1/S) Σ_s f_s (matched to the teachers' fc2 by the SP loss); logits
o = consensus(f_1 … f_S) (``avg`` or ``trn``, see ``consensus.py``). GSDM maps are the five
backbone stage outputs averaged over the S segments, kept in autograd (the reference detached
them, so its GSDM term had no gradient — method doc §8 P2).

Partial BN (TSN): in train mode every BatchNorm except the first runs in eval mode (running
statistics fixed) and its affine parameters are frozen; only the first BN adapts to the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from sakdn.config import StudentConfig
from sakdn.errors import ConfigError
from sakdn.models.backbones import build_backbone
from sakdn.models.consensus import build_consensus

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class StudentOutput:
    """Attributes:
    logits: (B, K) clip logits o.
    semantic: (B, D) segment-averaged per-frame feature v.
    maps: the five stage maps (B, C_i, H_i, W_i) averaged over segments, or [] when not asked.
    segment_maps: the same stage outputs per segment, (B·S, C_i, H_i, W_i), or []: what a
        channel is zeroed in for the GSDM ablation analysis (every segment of a clip).
    """

    logits: Tensor
    semantic: Tensor
    maps: list[Tensor] = field(default_factory=list)
    segment_maps: list[Tensor] = field(default_factory=list)


class Student(nn.Module):
    """Frames (B, S, 3, H, W) → ``StudentOutput`` (see the module docstring).

    The backbone starts from ``student.weights`` (torchvision files are read from
    ``weights_dir``, "" = torch's cache); frames must be normalised as those weights expect
    (``weights.input_normalization``).
    """

    def __init__(
        self,
        config: StudentConfig,
        num_classes: int,
        semantic_dim: int,
        frame_size: int,
        seed: int = 0,
        weights_dir: str = "",
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(
            config.backbone, config.width, config.weights, "student.", weights_dir
        )
        if frame_size < self.backbone.min_size:
            raise ConfigError(
                "data.frame_size",
                frame_size,
                f"student.backbone {config.backbone} needs frames of at least "
                f"{self.backbone.min_size} pixels",
            )
        self.num_segments, self.semantic_dim = config.segments, semantic_dim
        self.partial_bn = config.partial_bn
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(self.backbone.channels[-1], semantic_dim)
        if config.weights:
            # TSN / the reference initialise the new fc N(0, 0.001²) on top of pretrained
            # features; a backbone trained from scratch keeps PyTorch's default init, whose
            # tiny-std alternative leaves the logits constant for many epochs.
            nn.init.normal_(self.fc.weight, std=0.001)
            nn.init.zeros_(self.fc.bias)
        self.consensus = build_consensus(
            config.consensus,
            config.segments,
            semantic_dim,
            num_classes,
            relations_per_scale=config.trn_relations,
            seed=seed,
        )
        if self.partial_bn:
            for bn in self._frozen_bns():
                for p in bn.parameters():
                    p.requires_grad_(False)

    def _frozen_bns(self) -> list[nn.Module]:
        """Every BatchNorm module except the first (in module order)."""
        return [m for m in self.modules() if isinstance(m, _BN)][1:]

    def train(self, mode: bool = True) -> Student:
        """Partial BN: in train mode all BN layers but the first stay in eval mode."""
        super().train(mode)
        if mode and self.partial_bn:
            for bn in self._frozen_bns():
                bn.eval()
        return self

    def forward(self, frames: Tensor, return_maps: bool = False) -> StudentOutput:
        """frames (B, S, 3, H, W) → logits (B, K), semantic (B, D), maps (5 × (B, C, H', W'))."""
        if frames.dim() != 5 or frames.shape[1] != self.num_segments:
            raise ValueError(
                f"expected frames (B, {self.num_segments}, 3, H, W), got {tuple(frames.shape)}"
            )
        b, s = frames.shape[:2]
        stage_maps = self.backbone.forward_intermediates(frames.flatten(0, 1))  # 5 × (B·S, C, h, w)
        pooled = stage_maps[-1].mean(dim=(2, 3))  # (B·S, C)
        f = self.fc(self.dropout(pooled)).view(b, s, -1)  # (B, S, D)
        maps = [m.view(b, s, *m.shape[1:]).mean(dim=1) for m in stage_maps] if return_maps else []
        return StudentOutput(logits=self.consensus(f), semantic=f.mean(dim=1), maps=maps,
                             segment_maps=stage_maps if return_maps else [])

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: weight decay on weights, none on biases and BN parameters."""
        return param_groups(self, lr, weight_decay)


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (conv / linear weights) and an
    undecayed one (biases and normalisation parameters); frozen parameters are left out."""
    norm_params = {
        id(p)
        for m in module.modules()
        if isinstance(m, (*_BN, nn.LayerNorm, nn.GroupNorm))
        for p in m.parameters(recurse=False)
    }
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in norm_params or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
