r"""SPAMFM: similarity-preserving adaptive multi-modal fusion (method doc §4.2).

For M modalities at one stage, features F_m of shape (B, C, H, W) or (B, C):

1. batch Gram graph   G_m = vec(F_m) vec(F_m)^T  (B×B), rows L2-normalised → Ĝ_m
2. descriptor         y_m = GAP(F_m)             (B×C; y_m = F_m for vectors)
3. propagation        u_m = Ĝ_m y_m              (graph off: u_m = y_m, plain SE-style fusion)
4. joint codes        c = [u_1 ‖ … ‖ u_M],  a = Σ_m u_m,  p = Π_m u_m
5. gates              g_m^cat = σ(MLP_m^cat(c)), g_m^add = σ(MLP_m^add(a)),
                      g_m^mul = σ(MLP_m^mul(p))
6. output             F̃_m = (Σ_{selected} g_m^·) ⊙ F_m, broadcast over H, W

MLP = Linear → ReLU → Linear, hidden ⌊MC/r⌋ (cat) or ⌊C/r⌋ (add, mul), at least 1; r = 2M
when the configured reduction is 0 (the reference code's choice).

**Batch dependence.** With the graph on, a sample's output depends on the other samples of its
batch (and on the batch size): u_m mixes the descriptors of all B samples. With B = 1 the graph
is the scalar ±1 and SPAMFM reduces to per-sample gating. Evaluate with batches like the
training ones; the graph-off variant is batch-independent.

**Missing sensors.** ``mask`` (B, M) marks present sensors. A missing (zero-filled) sensor's
features are zeroed before the codes are formed, so it neither enters any Gram graph (its row and
column of G_m are 0, hence u_m = 0 for it and it adds nothing to its batch-mates' u_m), nor the
concatenation (a zero block), nor the sum; in the product it is replaced by 1 (the product runs
over the present sensors only; a sample with no present sensor gets p = 0). Its own output F̃_m
is still gated like the others; callers drop it (the teacher loss excludes masked teachers).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sakdn.config import GATES
from sakdn.errors import ConfigError


def _excitation(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out), nn.Sigmoid())


class SPAMFM(nn.Module):
    """One fusion block for M modalities with C channels each (see the module docstring)."""

    def __init__(
        self,
        num_modalities: int,
        channels: int,
        gates: Sequence[str] = GATES,
        graph: bool = True,
        reduction: int = 0,
    ) -> None:
        super().__init__()
        gates = tuple(gates)
        if not gates or any(g not in GATES for g in gates) or len(set(gates)) != len(gates):
            raise ConfigError(
                "teacher.spamfm_gates", ",".join(gates), "use a non-empty subset of cat, add, mul"
            )
        if reduction < 0:
            raise ConfigError("teacher.spamfm_reduction", reduction, "must be >= 0")
        if num_modalities < 1 or channels < 1:
            raise ValueError(f"need M >= 1 and C >= 1, got M={num_modalities}, C={channels}")
        m, c = num_modalities, channels
        r = reduction or 2 * m
        self.num_modalities, self.channels = m, c
        self.gates, self.graph, self.reduction = gates, graph, r
        d_in = {"cat": m * c, "add": c, "mul": c}
        self.excite = nn.ModuleDict(
            {
                g: nn.ModuleList(_excitation(d_in[g], max(1, d_in[g] // r), c) for _ in range(m))
                for g in gates
            }
        )

    def forward(self, feats: Sequence[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        """M tensors (B, C, H, W) or (B, C) → M re-weighted tensors of the same shapes.

        Args:
            feats: one feature tensor per modality, same shape, same batch positions.
            mask: optional (B, M) bool, True where the sensor is present.
        """
        self._check(feats, mask)
        present = [None] * len(feats) if mask is None else [mask[:, i] for i in range(len(feats))]
        u = [self._descriptor(f, p) for f, p in zip(feats, present)]  # M × (B, C)
        codes = self._codes(u, mask)
        outs = []
        for i, f in enumerate(feats):
            gate = sum(self.excite[g][i](codes[g]) for g in self.gates)  # (B, C)
            if f.dim() == 4:
                gate = gate[:, :, None, None]
            outs.append(gate * f)
        return outs

    def _descriptor(self, f: Tensor, present: Tensor | None) -> Tensor:
        """u = Ĝ y for one modality (y alone when the graph is off); missing rows are zero."""
        if present is not None:
            keep = present.to(f.dtype).view(-1, *([1] * (f.dim() - 1)))
            f = f * keep
        y = f.mean(dim=(2, 3)) if f.dim() == 4 else f  # (B, C)
        if not self.graph:
            return y
        v = f.flatten(1)  # (B, C·H·W)
        g = F.normalize(v @ v.t(), p=2, dim=1)  # (B, B), each row unit L2 norm
        return g @ y

    def _codes(self, u: list[Tensor], mask: Tensor | None) -> dict[str, Tensor]:
        codes: dict[str, Tensor] = {}
        if "cat" in self.gates:
            codes["cat"] = torch.cat(u, dim=1)  # (B, M·C)
        if "add" in self.gates:
            codes["add"] = torch.stack(u).sum(dim=0)  # (B, C)
        if "mul" in self.gates:
            if mask is None:
                codes["mul"] = torch.stack(u).prod(dim=0)
            else:
                m = mask.t()[:, :, None]  # (M, B, 1)
                factors = torch.where(m, torch.stack(u), torch.ones_like(u[0]))
                any_present = mask.any(dim=1, keepdim=True).to(u[0].dtype)  # (B, 1)
                codes["mul"] = factors.prod(dim=0) * any_present
        return codes

    def _check(self, feats: Sequence[Tensor], mask: Tensor | None) -> None:
        if len(feats) != self.num_modalities:
            raise ValueError(f"expected {self.num_modalities} modalities, got {len(feats)}")
        shape = feats[0].shape
        if feats[0].dim() not in (2, 4) or shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}[, H, W]) features, got {tuple(shape)}")
        if any(f.shape != shape for f in feats):
            raise ValueError("all modalities must have the same feature shape")
        want = (shape[0], self.num_modalities)
        if mask is not None and (tuple(mask.shape) != want or mask.dtype != torch.bool):
            raise ValueError(f"mask must be a bool tensor of shape (B, M) = {want}")

    def extra_repr(self) -> str:
        return (
            f"M={self.num_modalities}, C={self.channels}, gates={','.join(self.gates)}, "
            f"graph={self.graph}, r={self.reduction}"
        )
