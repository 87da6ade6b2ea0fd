r"""Sensor teachers: one CNN branch per sensor, fused by SPAMFM between stages (method doc §4).

Branch m: backbone stages conv1..conv5 → pooling → fc1 (Linear, BN1d, ReLU) → fc2 (Linear; the
"semantic" feature h_m) → classifier (Linear → K logits z_m). A SPAMFM block follows every stage
named in ``teacher.spamfm_stages``; its fused outputs feed the next stage of every branch, so the
branches interact at every depth. Branches never share weights (the reference Berkeley model
accidentally did, method doc §8 P5).

Pooling before fc1: ``vgg16_bn`` keeps the reference's flattened 7×7 grid when the image is large
enough (adaptive pooling to min(7, S/32)), every other backbone uses global average pooling, so
any image size works.

Teacher objective (method doc §4.4), averaged over the present (sample, teacher) pairs:
    L_T = mean_{(b,m) present} [ CE(z_{b,m}, y_b) + w · d(h_{b,m}, e_{y_b}) ],
d = mean |h − e| (l1), mean (h − e)² (mse) or 1 − cos(h, e) (cosine); without class vectors
the semantic term is 0. With every teacher present this is the mean over teachers of each
teacher's batch-mean loss (the reference UTD objective with w = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sakdn.config import GATES, TEACHER_STAGES, TeacherConfig, parse_subset
from sakdn.errors import ConfigError
from sakdn.models.backbones import Backbone, build_backbone
from sakdn.models.spamfm import SPAMFM


@dataclass
class TeacherOutput:
    """What the teachers return for a batch of B samples with M sensors.

    Attributes:
        logits: (B, M, K) per-teacher logits z_m.
        semantic: (B, M, D) fused fc2 features h_m.
        stages: for each of the 5 conv stages, the M fused stage outputs (B, C, H, W).
        mask: (B, M) bool presence mask the forward pass used, or None (all present).
    """

    logits: Tensor
    semantic: Tensor
    stages: list[list[Tensor]]
    mask: Tensor | None = field(default=None)

    @property
    def fused_logits(self) -> Tensor:
        """(B, K) mean of the present teachers' logits; its argmax is the "combined" prediction
        (the argmax of the summed logits)."""
        if self.mask is None:
            return self.logits.mean(dim=1)
        w = self.mask.to(self.logits.dtype).unsqueeze(-1)  # (B, M, 1)
        return (self.logits * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class _Branch(nn.Module):
    def __init__(self, backbone: Backbone, pool: int, semantic_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(pool)
        d_in = backbone.channels[-1] * pool * pool
        self.fc1 = nn.Sequential(
            nn.Linear(d_in, semantic_dim), nn.BatchNorm1d(semantic_dim), nn.ReLU(inplace=True)
        )
        self.fc2 = nn.Linear(semantic_dim, semantic_dim)
        self.classifier = nn.Linear(semantic_dim, num_classes)


class TeacherEnsemble(nn.Module):
    """M jointly trained sensor branches with SPAMFM fusion (see the module docstring).

    Every branch starts from ``teacher.weights`` (torchvision files are read from
    ``weights_dir``, "" = torch's cache). The GAF images are fed as they are, values in [0, 1]
    without mean/std normalisation, as the reference feeds them, whatever the weights.
    """

    def __init__(
        self,
        config: TeacherConfig,
        num_sensors: int,
        num_classes: int,
        semantic_dim: int,
        image_size: int,
        weights_dir: str = "",
    ) -> None:
        super().__init__()
        if num_sensors < 1 or num_classes < 2 or semantic_dim < 1:
            raise ValueError(
                f"need sensors >= 1, classes >= 2, semantic_dim >= 1; got "
                f"{num_sensors}, {num_classes}, {semantic_dim}"
            )
        self.num_sensors, self.num_classes = num_sensors, num_classes
        self.semantic_dim = semantic_dim
        first = build_backbone(
            config.backbone, config.width, config.weights, "teacher.", weights_dir
        )
        backbones = [first]
        for _ in range(num_sensors - 1):
            other = build_backbone(config.backbone, config.width, key_prefix="teacher.")
            if config.weights:  # the same start; the file (528 MB for VGG16-BN) read once
                other.load_state_dict(first.state_dict())
            backbones.append(other)
        if image_size < backbones[0].min_size:
            raise ConfigError(
                "gaf.image_size",
                image_size,
                f"teacher.backbone {config.backbone} needs images of at least "
                f"{backbones[0].min_size} pixels",
            )
        pool = max(1, min(7, image_size // 32)) if config.backbone == "vgg16_bn" else 1
        self.branches = nn.ModuleList(
            _Branch(b, pool, semantic_dim, num_classes) for b in backbones
        )
        self.fusion_stages = parse_subset(config.spamfm_stages, TEACHER_STAGES)
        widths = dict(zip(TEACHER_STAGES, (*backbones[0].channels, semantic_dim, semantic_dim)))
        gates = parse_subset(config.spamfm_gates, GATES)
        self.fusions = nn.ModuleDict(
            {
                stage: SPAMFM(
                    num_sensors,
                    widths[stage],
                    gates=gates,
                    graph=config.spamfm_graph,
                    reduction=config.spamfm_reduction,
                )
                for stage in self.fusion_stages
            }
        )

    def _fuse(self, stage: str, feats: list[Tensor], mask: Tensor | None) -> list[Tensor]:
        return self.fusions[stage](feats, mask) if stage in self.fusions else feats

    def forward(self, images: Tensor, mask: Tensor | None = None) -> TeacherOutput:
        """images (B, M, 3, S, S), optional mask (B, M) bool → ``TeacherOutput``."""
        if images.dim() != 5 or images.shape[1] != self.num_sensors:
            raise ValueError(
                f"expected images (B, {self.num_sensors}, 3, S, S), got {tuple(images.shape)}"
            )
        feats = list(images.unbind(dim=1))  # M × (B, 3, S, S)
        stages: list[list[Tensor]] = []
        for i in range(len(TEACHER_STAGES) - 2):
            feats = [br.backbone.stages[i](x) for br, x in zip(self.branches, feats)]
            feats = self._fuse(TEACHER_STAGES[i], feats, mask)
            stages.append(feats)
        feats = [br.fc1(br.pool(x).flatten(1)) for br, x in zip(self.branches, feats)]
        feats = self._fuse("fc1", feats, mask)
        feats = [br.fc2(x) for br, x in zip(self.branches, feats)]
        semantic = self._fuse("fc2", feats, mask)
        logits = [br.classifier(h) for br, h in zip(self.branches, semantic)]
        return TeacherOutput(
            logits=torch.stack(logits, dim=1),  # (B, M, K)
            semantic=torch.stack(semantic, dim=1),  # (B, M, D)
            stages=stages,
            mask=mask,
        )


def semantic_distance(h: Tensor, e: Tensor, kind: str) -> Tensor:
    """Per-row distance between features h and targets e, both (N, D) → (N,)."""
    if kind == "l1":
        return (h - e).abs().mean(dim=-1)
    if kind == "mse":
        return (h - e).pow(2).mean(dim=-1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(h, e, dim=-1)
    raise ConfigError("teacher.semantic_loss", kind, "choose from l1, mse, cosine")


def teacher_loss(
    out: TeacherOutput,
    labels: Tensor,
    class_vectors: Tensor | None,
    config: TeacherConfig,
) -> dict[str, Tensor]:
    """Cross-entropy plus weighted fc2 → class-vector regression, over present teachers.

    Args:
        out: teacher forward output (its ``mask`` selects the present teachers).
        labels: (B,) class indices.
        class_vectors: (K, D) e_k rows, or None for no semantic term.
        config: ``semantic_loss`` and ``semantic_weight`` are used.

    Returns:
        ``{'loss', 'ce', 'semantic'}``; ``loss = ce + semantic_weight · semantic``.
    """
    b, m, k = out.logits.shape
    y = labels.repeat_interleave(m)  # (B·M,) matches logits.flatten(0, 1)
    ce = F.cross_entropy(out.logits.reshape(b * m, k), y, reduction="none")
    if class_vectors is None:
        sem = torch.zeros_like(ce)
    else:
        if class_vectors.shape != (k, out.semantic.shape[-1]):
            raise ValueError(
                f"class vectors {tuple(class_vectors.shape)} do not match "
                f"K={k}, D={out.semantic.shape[-1]}"
            )
        targets = class_vectors.to(out.semantic)[y]  # (B·M, D)
        sem = semantic_distance(out.semantic.reshape(b * m, -1), targets, config.semantic_loss)
    if out.mask is None:
        weight = torch.ones_like(ce)
    else:
        weight = out.mask.reshape(b * m).to(ce.dtype)
    n = weight.sum().clamp_min(1.0)
    ce_mean = (ce * weight).sum() / n
    sem_mean = (sem * weight).sum() / n
    return {
        "loss": ce_mean + config.semantic_weight * sem_mean,
        "ce": ce_mean,
        "semantic": sem_mean,
    }
