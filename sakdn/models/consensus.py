r"""Temporal consensus heads: per-frame features (B, S, D) → clip logits (B, K) (method doc §5).

``avg``: TSN average of per-frame linear classifiers, o = (1/S) Σ_s W f_s + b.

``trn``: multi-scale temporal relations,
    o = Σ_{k=S}^{2} Σ_{τ ∈ T_k} MLP_k([f_{τ_1} ‖ … ‖ f_{τ_k}]),
    MLP_k = Linear(k·D → hidden) → ReLU → Linear(hidden → K),
where each τ is a k-tuple of segment indices in temporal order. The reference puts a ReLU in
front of Linear; here the per-frame feature is the signed semantic vector matched by the SP loss,
and a leading ReLU discards its negative half — trained from scratch it can leave every input of
the head at zero and the logits constant, so it is left out. In training, T_k holds
``relations_per_scale`` tuples (r_k = min(r, C(S, k))) drawn without replacement by a
``torch.Generator`` the module owns (seeded at construction; never numpy's global RNG).

**Deterministic evaluation** (fixes the reference code, which also draws random tuples at test
time, so its accuracies vary from run to run — method doc §8 P12). In eval mode T_k is a fixed
set chosen at construction: every k-tuple when there are at most ``eval_relations`` of them, else
``eval_relations`` tuples evenly spread over the lexicographic order. The scale's sum is rescaled
by r_k / |T_k|, so the eval output is the expectation of the training-time sum over r_k uniformly
drawn tuples (exactly so when T_k holds every tuple). S = 1 uses one MLP on the single frame.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from sakdn.errors import ConfigError

_ENUMERATE_LIMIT = 10_000  # scales with more tuples than this are sampled without enumerating


class AvgConsensus(nn.Module):
    """Average of per-frame linear classifiers (TSN)."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, f: Tensor) -> Tensor:
        """(B, S, D) → (B, K)."""
        return self.classifier(f).mean(dim=1)


def unrank_combination(n: int, k: int, rank: int) -> tuple[int, ...]:
    """The ``rank``-th (0-based) increasing k-subset of range(n) in lexicographic order."""
    out: list[int] = []
    start = 0
    for slot in range(k):
        for v in range(start, n):
            count = math.comb(n - v - 1, k - slot - 1)  # subsets whose next element is v
            if rank < count:
                out.append(v)
                start = v + 1
                break
            rank -= count
    return tuple(out)


def _evenly_spread(n: int, k: int, cap: int) -> list[tuple[int, ...]]:
    total = math.comb(n, k)
    if total <= cap:
        return list(itertools.combinations(range(n), k))
    ranks = sorted({(i * total) // cap + (total // cap) // 2 for i in range(cap)})
    return [unrank_combination(n, k, r) for r in ranks]


class TRNConsensus(nn.Module):
    """Multi-scale temporal relation network head (see the module docstring)."""

    def __init__(
        self,
        num_segments: int,
        feature_dim: int,
        num_classes: int,
        relations_per_scale: int = 3,
        hidden: int = 256,
        eval_relations: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_segments < 1:
            raise ConfigError("student.segments", num_segments, "must be >= 1")
        if relations_per_scale < 1:
            raise ConfigError("student.trn_relations", relations_per_scale, "must be >= 1")
        s = num_segments
        self.num_segments, self.relations_per_scale = s, relations_per_scale
        self.scales = list(range(s, 1, -1)) if s > 1 else [1]
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.Linear(k * feature_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, num_classes),
            )
            for k in self.scales
        )
        self.generator = torch.Generator().manual_seed(seed)
        self._all = [  # every k-tuple, or None where there are too many to list
            list(itertools.combinations(range(s), k))
            if math.comb(s, k) <= _ENUMERATE_LIMIT
            else None
            for k in self.scales
        ]
        for k, tuples in zip(self.scales, self._eval_tuples(eval_relations)):
            self.register_buffer(f"eval_tuples_{k}", torch.tensor(tuples), persistent=False)

    def _eval_tuples(self, cap: int) -> list[list[tuple[int, ...]]]:
        return [_evenly_spread(self.num_segments, k, cap) for k in self.scales]

    def forward(self, f: Tensor) -> Tensor:
        """(B, S, D) → (B, K)."""
        b, s, d = f.shape
        if s != self.num_segments:
            raise ValueError(f"expected {self.num_segments} segments, got {s}")
        out = 0
        for i, (k, mlp) in enumerate(zip(self.scales, self.mlps)):
            r_k = min(self.relations_per_scale, math.comb(s, k))
            if self.training:
                idx, weight = self.sample_tuples(i, k, r_k).to(f.device), 1.0
            else:
                idx = getattr(self, f"eval_tuples_{k}")
                weight = r_k / idx.shape[0]
            x = f[:, idx].reshape(b, idx.shape[0], k * d)  # (B, R, k·D)
            out = out + weight * mlp(x).sum(dim=1)  # (B, K)
        return out

    def sample_tuples(self, scale_index: int, k: int, count: int) -> Tensor:
        """``count`` distinct increasing k-tuples drawn uniformly with the module's generator."""
        tuples = self._all[scale_index]
        if tuples is not None:
            picks = torch.randperm(len(tuples), generator=self.generator)[:count]
            return torch.tensor([tuples[j] for j in picks.tolist()])
        chosen: set[tuple[int, ...]] = set()
        while len(chosen) < count:  # C(S, k) > 10 000 ≫ count: rejections are rare
            perm = torch.randperm(self.num_segments, generator=self.generator)[:k]
            chosen.add(tuple(sorted(perm.tolist())))
        return torch.tensor(sorted(chosen))


CONSENSUS = ("avg", "trn")


def build_consensus(
    name: str,
    num_segments: int,
    feature_dim: int,
    num_classes: int,
    relations_per_scale: int = 3,
    seed: int = 0,
) -> nn.Module:
    """``avg`` or ``trn`` consensus head (ConfigError for any other name)."""
    if name == "avg":
        return AvgConsensus(feature_dim, num_classes)
    if name == "trn":
        return TRNConsensus(num_segments, feature_dim, num_classes, relations_per_scale, seed=seed)
    raise ConfigError("student.consensus", name, "choose from " + ", ".join(CONSENSUS))
