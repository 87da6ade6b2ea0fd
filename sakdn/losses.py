"""Student-stage distillation losses: ST, SP, GSDM and the batch-Gram term (method doc §6).

Every function is pure (tensors in, tensors out, no state). Teacher-side inputs are always
detached; the student side stays in autograd. Losses are computed in float32 whatever the input
dtype, so bf16 autocast does not round them away.

Notation: B samples, M teachers (sensors), P GSDM layer pairs, K classes, D semantic dimensions.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sakdn.errors import ConfigError

if TYPE_CHECKING:
    from sakdn.config import DistillConfig

ABLATION_VARIANTS = ("plain", "graph", "prob_drop", "none")
MAP_NORMS = ("minmax", "l2")
MAP_RESIZES = ("bilinear", "adaptive_avg")
AGGREGATIONS = ("mean", "confidence")


def _full_precision(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off: matrix products that must not drop to bf16 (Gram matrices, propagation)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, "must be one of " + ", ".join(allowed))


# -------------------- ST and SP (§6.1)


def _soft_target_per_sample(student_logits: Tensor, teacher_logits: Tensor, t: float) -> Tensor:
    log_ps = F.log_softmax(student_logits.float() / t, dim=1)  # (B, K)
    log_pt = F.log_softmax(teacher_logits.detach().float() / t, dim=1)  # (B, K)
    kl = F.kl_div(log_ps, log_pt, reduction="none", log_target=True).sum(dim=1)  # (B,)
    return kl * t * t


def soft_target(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Soft-target knowledge distillation (Hinton et al.), the "ST" term of method doc §6.1.

    KD_T(o, z) = T² · KL( softmax(z / T) ‖ softmax(o / T) ), averaged over the batch. The T²
    factor keeps the gradient scale independent of T.

    Args:
        student_logits: (B, K) student logits o.
        teacher_logits: (B, K) teacher logits z (detached here).
        temperature: T > 0 (the reference code uses 4).

    Returns:
        Scalar: the batch mean of the per-sample KL divergences (``batchmean``).
    """
    if temperature <= 0:
        raise ConfigError("distill.temperature", temperature, "must be > 0")
    return _soft_target_per_sample(student_logits, teacher_logits, temperature).mean()


def _mse_per_sample(student: Tensor, teacher: Tensor) -> Tensor:
    diff = student.float() - teacher.detach().float()  # (B, ...)
    return diff.pow(2).flatten(1).mean(dim=1)  # (B,)


def semantic_match(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """The "SP" term of method doc §6.1: MSE(v, h_m).

    v is the student's segment-averaged semantic feature (student fc1) and h_m teacher m's fused
    fc2 output, which the teacher learned to push towards the class vector.

    Args:
        student_feature: (B, D) student feature v.
        teacher_feature: (B, D) teacher feature h_m (detached here).

    Returns:
        Scalar: mean over all B·D squared differences.
    """
    if student_feature.shape != teacher_feature.shape:
        raise ValueError(
            f"semantic_match: student {tuple(student_feature.shape)} and teacher "
            f"{tuple(teacher_feature.shape)} feature shapes differ"
        )
    return _mse_per_sample(student_feature, teacher_feature).mean()


# -------------------- batch Gram (§6.4)


def batch_gram(features: Tensor) -> Tensor:
    """Row-normalised batch similarity matrix of Tung & Mori (ICCV 2019).

    G = vec(F) vec(F)ᵀ, then each row of G is divided by its L2 norm (all-zero rows stay zero).

    Args:
        features: (B, ...) any per-sample tensor; it is flattened to (B, N).

    Returns:
        (B, B) float32 matrix.
    """
    with _full_precision(features):
        flat = features.float().flatten(1)  # (B, N)
        gram = flat @ flat.t()  # (B, B)
        return F.normalize(gram, p=2, dim=1)


def similarity_preserving(student_features: Tensor, teacher_features: Tensor) -> Tensor:
    """Similarity-preserving (batch-Gram) loss: MSE( G(F_s), G(F_t) ) (method doc §6.4, §10.4).

    The loss compares how samples relate to each other, not the features themselves, so student
    and teacher features may have different sizes. Multiplying either side by a positive constant
    leaves it unchanged. This is the interrelation-preserving term the paper's abstract describes
    and the reference code leaves disabled (``sp_ratio = 0``); it is optional here
    (``distill.lambda_sp_gram``).

    Args:
        student_features: (B, ...) student tensor.
        teacher_features: (B, ...) teacher tensor (detached here).

    Returns:
        Scalar: mean over the B² entries, i.e. (1/B²)‖G_s − G_t‖²_F.
    """
    if student_features.shape[0] != teacher_features.shape[0]:
        raise ValueError(
            f"similarity_preserving: batch sizes differ (student {student_features.shape[0]}, "
            f"teacher {teacher_features.shape[0]})"
        )
    g_s = batch_gram(student_features)
    g_t = batch_gram(teacher_features.detach())
    return (g_s - g_t).pow(2).mean()


# -------------------- ablation weights (§6.3)


def _signed_floor(x: Tensor, floor: Tensor) -> Tensor:
    """x with |x| raised to at least ``floor`` (broadcast), keeping its sign (0 counts as +)."""
    sign = torch.where(x < 0, -1.0, 1.0).to(x.dtype)
    return sign * torch.maximum(x.abs(), floor)


def _relative_change(ref: Tensor, other: Tensor, relu: bool, eps: float) -> Tensor:
    """(1/D) Σ_d φ((ref − other) / ref) per row, guarded against near-zero ``ref`` (P9)."""
    floor = (eps * ref.abs().mean(dim=1, keepdim=True)).clamp_min(1e-12)  # (B, 1)
    ratio = (ref - other) / _signed_floor(ref, floor)  # (B, D)
    if relu:
        ratio = ratio.clamp_min(0.0)
    return ratio.mean(dim=1).clamp(-1.0, 1.0)  # (B,)


def _propagation(logits: Tensor, sigma2: float) -> Tensor:
    """S = D^-1/2 K D^-1/2 with K_ij = exp(−mean_c (z_ic − z_jc)² / (2σ²)); (B, B)."""
    sq = (logits[:, None, :] - logits[None, :, :]).pow(2).mean(dim=2)  # (B, B)
    kernel = torch.exp(-sq / (2.0 * sigma2))
    degree = kernel.sum(dim=0) + torch.finfo(kernel.dtype).eps  # (B,) column sums
    inv_sqrt = degree.rsqrt()
    return inv_sqrt[:, None] * kernel * inv_sqrt[None, :]


def _prob_drop(logits: Tensor, ablated_logits: Tensor) -> Tensor:
    pred = logits.argmax(dim=1, keepdim=True)  # (B, 1)
    p = logits.softmax(dim=1).gather(1, pred).squeeze(1)  # (B,)
    p_abl = ablated_logits.softmax(dim=1).gather(1, pred).squeeze(1)
    return ((p - p_abl) / p).clamp(0.0, 1.0)


def ablation_weights(
    logits: Tensor,
    ablated_logits: Tensor,
    class_vectors: Tensor | None,
    variant: str,
    relu: bool = False,
    sigma2: float = 1.0,
    eps: float = 0.1,
) -> Tensor:
    """Per-sample GSDM weights w_i from a real and an ablated (all-zero input) pass (§6.3, §10.4).

    With ŷ_i = argmax z_i, ŷ'_i = argmax z'_i, e_k the class vector of class k and φ = ReLU when
    ``relu`` else the identity:

    - ``plain``: w_i = (1/D) Σ_d φ( (e_ŷ,d − e_ŷ',d) / e_ŷ,d ).
    - ``graph``: K_ij = exp(−mean_c (z_ic − z_jc)² / (2σ²)), S = D^-1/2 K D^-1/2 (D = diag of the
      column sums of K), Q = S E and Q' = S' E' (rows E_i = e_ŷ_i, E'_i = e_ŷ'_i; S' from the
      ablated logits), w_i = (1/D) Σ_d φ( (Q_id − Q'_id) / Q_id ).
    - ``prob_drop``: w_i = clamp( (p_i − p'_i) / p_i, 0, 1 ), the relative drop of the predicted
      class's softmax probability under ablation (bounded, needs no class vectors).
    - ``none``: w_i = 1 (plain channel-sum activation maps).

    The reference code divides by single class-vector coordinates, some ≈1e-4, so a few near-zero
    coordinates dominate w_i or make it inf/NaN (pitfall P9). Here each denominator whose
    magnitude is below ``eps`` × the mean |coordinate| of its row is raised to that floor, keeping
    its sign (this bounds every term by the row's own scale and keeps w invariant to scaling the
    class vectors), and w is clamped to [−1, 1]. The weights carry no gradient; the ablated logits
    should come from a separate ``no_grad`` pass (pitfalls P10, P11).

    Args:
        logits: (B, K) logits of the real samples.
        ablated_logits: (B, K) logits of the ablated samples.
        class_vectors: (K, D) class vectors e_k; required by ``plain`` and ``graph``.
        variant: ``plain`` | ``graph`` | ``prob_drop`` | ``none``.
        relu: apply φ = ReLU to each term (the reference MMAct script does).
        sigma2: kernel bandwidth σ² of ``graph`` (the reference code uses 1).
        eps: relative floor of the denominators.

    Returns:
        (B,) float32 weights, detached.
    """
    _choice("distill.ablation_weight", variant, ABLATION_VARIANTS)
    z = logits.detach().float()
    z_abl = ablated_logits.detach().float()
    if variant == "none":
        return torch.ones(z.shape[0], device=z.device)
    if variant == "prob_drop":
        return _prob_drop(z, z_abl)
    if class_vectors is None:
        raise ConfigError(
            "distill.ablation_weight",
            variant,
            "needs class vectors (semantics.provider is 'none'); use prob_drop or none",
        )
    if variant == "graph" and sigma2 <= 0:
        raise ConfigError("distill.graph_sigma2", sigma2, "must be > 0")
    vectors = class_vectors.detach().to(device=z.device, dtype=torch.float32)  # (K, D)
    e = vectors[z.argmax(dim=1)]  # (B, D)
    e_abl = vectors[z_abl.argmax(dim=1)]  # (B, D)
    with _full_precision(z):
        if variant == "graph":
            e = _propagation(z, sigma2) @ e  # Q, (B, D)
            e_abl = _propagation(z_abl, sigma2) @ e_abl  # Q'
        return _relative_change(e, e_abl, relu, eps)


# -------------------- attention maps (§6.3)


def attention_maps(features: Tensor, weights: Tensor) -> Tensor:
    """Ablation-weighted activation maps M_i = max(0, w_i · Σ_c A_ic) (method doc §6.3).

    The reference code computes these on detached NumPy copies, so the student's maps were
    constants and GSDM gave no gradient (pitfall P2); here the maps stay in autograd (the weights
    are detached). The channel sum accumulates in float32.

    Args:
        features: (B, C, H, W) stage activations A.
        weights: (B,) weights w.

    Returns:
        (B, H, W) float32 maps.
    """
    if features.dim() != 4 or weights.shape != (features.shape[0],):
        raise ValueError(
            f"attention_maps: expected features (B, C, H, W) and weights (B,), got "
            f"{tuple(features.shape)} and {tuple(weights.shape)}"
        )
    summed = features.sum(dim=1, dtype=torch.float32)  # (B, H, W)
    w = weights.detach().to(device=summed.device, dtype=torch.float32)
    return torch.relu(w[:, None, None] * summed)


def align_maps(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize each (H, W) map to ``size`` by interpolation, one sample at a time in effect.

    ``bilinear`` uses ``align_corners=False``; ``adaptive_avg`` is adaptive average pooling
    (block means when the sizes divide). The reference code used ``np.resize`` on the whole
    (B, H, W) array, which flattens and truncates, so several samples' new maps were cut from one
    sample's map (pitfall P3); interpolation never mixes samples.

    Args:
        maps: (B, H, W) maps.
        size: target (H', W').
        mode: ``bilinear`` | ``adaptive_avg``.

    Returns:
        (B, H', W') maps, differentiable with respect to ``maps``.
    """
    _choice("distill.map_resize", mode, MAP_RESIZES)
    size = (int(size[0]), int(size[1]))
    if maps.dim() != 3 or min(size) < 1:
        raise ValueError(f"align_maps: expected (B, H, W) maps and a positive size, got "
                         f"{tuple(maps.shape)} → {size}")
    if tuple(maps.shape[1:]) == size:
        return maps
    x = maps[:, None]  # (B, 1, H, W)
    if mode == "bilinear":
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    else:
        x = F.adaptive_avg_pool2d(x, size)
    return x[:, 0]


def normalize_maps(maps: Tensor, mode: str = "minmax", eps: float = 1e-8) -> Tensor:
    """Normalise each sample's map on its own.

    ``minmax``: (M_i − min M_i) / max(max M_i − min M_i, eps), values in [0, 1].
    ``l2``: M_i / max(‖vec(M_i)‖₂, eps).
    A constant (e.g. all-zero) map becomes all zeros. The reference code min–max normalised the
    whole batch tensor at once, so one sample's large weight rescaled every other map
    (pitfall P9); here no sample affects another.

    Args:
        maps: (B, H, W) maps.
        mode: ``minmax`` | ``l2``.
        eps: lower bound of the divisor.

    Returns:
        (B, H, W) normalised maps.
    """
    _choice("distill.map_norm", mode, MAP_NORMS)
    flat = maps.flatten(1)  # (B, H·W)
    if mode == "minmax":
        low = flat.amin(dim=1, keepdim=True)
        span = (flat.amax(dim=1, keepdim=True) - low).clamp_min(eps)
        out = (flat - low) / span
    else:
        out = flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)
    return out.reshape_as(maps)


def _map_distance_per_sample(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    n_s = F.normalize(student_map.float(), p=2, dim=1)  # (B, H, W), unit columns
    n_t = F.normalize(teacher_map.detach().float(), p=2, dim=1)
    return (n_s - n_t).pow(2).flatten(1).mean(dim=1)  # (B,)


def map_distance(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """Map comparison D of method doc §6.4 (the reference ``Gram_loss``).

    D(M_s, M_t) = MSE( n(M_s), n(M_t) ), where n L2-normalises along dim 1, the height axis, so
    each column of each map becomes a unit vector (all-zero columns stay zero). Despite the
    reference class name, no Gram matrix is formed. The reference re-wrapped its inputs with
    ``torch.tensor`` and so cut the gradient (pitfall P2); the student side stays in autograd here.

    Args:
        student_map: (B, H, W) student maps.
        teacher_map: (B, H, W) teacher maps at the same size (detached here).

    Returns:
        Scalar: mean over all B·H·W squared differences.
    """
    if student_map.dim() != 3 or student_map.shape != teacher_map.shape:
        raise ValueError(
            f"map_distance: expected equal (B, H, W) shapes, got {tuple(student_map.shape)} and "
            f"{tuple(teacher_map.shape)}; align the teacher map first"
        )
    return _map_distance_per_sample(student_map, teacher_map).mean()


# -------------------- GSDM (§6.1, §6.3, §6.4)


def _channel_sum_map(x: Tensor, weights: Tensor | None) -> Tensor:
    """(B, C, H, W) activations or (B, H, W) channel sums → max(0, w · Σ_c A)."""
    if x.dim() == 3:
        x = x[:, None]
    w = torch.ones(x.shape[0], device=x.device) if weights is None else weights
    return attention_maps(x, w)


def _teacher_weights_matrix(
    mask: Tensor | None, batch: int, teachers: int, device: torch.device
) -> Tensor:
    """(B, M) non-negative float aggregation weights from a bool mask, float weights or None."""
    if mask is None:
        return torch.ones(batch, teachers, device=device)
    if mask.shape != (batch, teachers):
        raise ValueError(f"mask must be (B, M) = {(batch, teachers)}, got {tuple(mask.shape)}")
    return mask.detach().to(device=device, dtype=torch.float32).clamp_min(0.0)


def gsdm_maps(
    student_maps: Sequence[Tensor],
    student_weights: Tensor | None,
    teacher_maps: Sequence[Sequence[Tensor]],
    teacher_weights: Tensor | None,
    map_norm: str = "minmax",
    map_resize: str = "bilinear",
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """The normalised attention maps that GSDM compares (method doc §6.3, pitfalls P2, P3, P9).

    Student, per pair p: n( max(0, w_s · Σ_c A_s^p) ), in autograd.
    Teacher m, per pair p: n( resize( max(0, w_m · Σ_c A_m^p), student size ) ), detached and
    computed without a graph. n is the per-sample ``map_norm``; resizing happens before
    normalisation so that both maps of a pair span the same range.

    Args:
        student_maps: P tensors, each (B, C, H_p, W_p) activations or their (B, H_p, W_p) sums.
        student_weights: (B,) student ablation weights (None: 1).
        teacher_maps: M lists of P tensors, like ``student_maps`` but at any size.
        teacher_weights: (M, B) teacher ablation weights (None: 1).
        map_norm: ``minmax`` | ``l2``.
        map_resize: ``bilinear`` | ``adaptive_avg``.

    Returns:
        (P student maps (B, H_p, W_p), M lists of P teacher maps (B, H_p, W_p)).
    """
    _choice("distill.map_norm", map_norm, MAP_NORMS)
    _choice("distill.map_resize", map_resize, MAP_RESIZES)
    pairs = len(student_maps)
    if any(len(per_teacher) != pairs for per_teacher in teacher_maps):
        raise ValueError(f"every teacher needs {pairs} maps, one per student map (GSDM pair)")
    if teacher_weights is not None and teacher_weights.shape[0] != len(teacher_maps):
        raise ValueError(f"teacher_weights must be (M, B) with M = {len(teacher_maps)}, got "
                         f"{tuple(teacher_weights.shape)}")
    students = [normalize_maps(_channel_sum_map(s, student_weights), map_norm)
                for s in student_maps]
    teachers: list[list[Tensor]] = []
    with torch.no_grad():
        for m, per_teacher in enumerate(teacher_maps):
            w = None if teacher_weights is None else teacher_weights[m]
            row = []
            for s, t in zip(students, per_teacher):
                t_map = align_maps(_channel_sum_map(t.detach(), w), s.shape[1:], map_resize)
                row.append(normalize_maps(t_map, map_norm))
            teachers.append(row)
    return students, teachers


def _gsdm_from_maps(
    students: Sequence[Tensor], teachers: Sequence[Sequence[Tensor]], a: Tensor
) -> Tensor:
    """Σ_m Σ_p Σ_i a_im D_i / (P Σ a) on prepared maps; excluded rows never reach the graph."""
    total = students[0].sum() * 0.0
    for m, row in enumerate(teachers):
        keep = a[:, m] > 0  # (B,)
        for s_map, t_map in zip(students, row):
            t_map = torch.where(keep[:, None, None], t_map, torch.zeros_like(t_map))
            d = _map_distance_per_sample(s_map, t_map)  # (B,)
            total = total + torch.where(keep, a[:, m] * d, torch.zeros_like(d)).sum()
    return total / (len(students) * a.sum()).clamp_min(1e-12)


def gsdm_loss(
    student_maps: Sequence[Tensor],
    student_weights: Tensor | None,
    teacher_maps: Sequence[Sequence[Tensor]],
    teacher_weights: Tensor | None,
    mask: Tensor | None = None,
    map_norm: str = "minmax",
    map_resize: str = "bilinear",
) -> Tensor:
    """Graph-guided semantically discriminative mapping loss (method doc §6.1, §6.3, §6.4).

    L_GSDM = Σ_m Σ_p Σ_i a_im · D_i(Ã_s^p, Ã_{t,m}^p) / (P · Σ_i Σ_m a_im), with Ã the maps of
    ``gsdm_maps`` and D_i the per-sample map distance of ``map_distance``. With every teacher
    available (a = 1) this is the reference's (1/(M·P)) Σ_m Σ_p D. Fixes: the student side keeps
    its gradient (P2), maps are resized by interpolation (P3) and normalised per sample (P9).
    Per-sample normalisation makes each map independent of the magnitude of its weight: only
    whether w_i is positive (map kept) or not (map zeroed) matters.

    Args:
        student_maps: P tensors (B, C, H_p, W_p) or (B, H_p, W_p).
        student_weights: (B,) student weights (None: 1).
        teacher_maps: M lists of P tensors (B, C, h, w) or (B, h, w), any h, w.
        teacher_weights: (M, B) teacher weights (None: 1).
        mask: (B, M) teacher availability (bool; False for a missing, zero-filled sensor) or
            non-negative per-sample teacher weights; None: all available. Excluded teachers'
            maps never enter the value or the gradient.
        map_norm: ``minmax`` | ``l2``.
        map_resize: ``bilinear`` | ``adaptive_avg``.

    Returns:
        Scalar; zero (still attached to the student maps) when no teacher is available.
    """
    if not student_maps or not teacher_maps:
        raise ValueError("gsdm_loss needs at least one layer pair and one teacher")
    students, teachers = gsdm_maps(
        student_maps, student_weights, teacher_maps, teacher_weights, map_norm, map_resize
    )
    a = _teacher_weights_matrix(mask, students[0].shape[0], len(teachers), students[0].device)
    return _gsdm_from_maps(students, teachers, a)


def gram_maps_loss(
    students: Sequence[Tensor], teachers: Sequence[Sequence[Tensor]], mask: Tensor | None = None
) -> Tensor:
    """Batch-Gram loss on GSDM maps, averaged over teachers and layer pairs (§6.4, §11).

    For teacher m only the samples where it is available enter its Gram matrices; a teacher with
    fewer than two available samples contributes nothing.

    Args:
        students: P maps (B, ...) (e.g. the student output of ``gsdm_maps``).
        teachers: M lists of P maps (B, ...).
        mask: (B, M) availability or weights (> 0 means available); None: all available.

    Returns:
        Scalar; zero (attached to the student maps) when nothing contributes.
    """
    a = _teacher_weights_matrix(mask, students[0].shape[0], len(teachers), students[0].device)
    terms = []
    for m, row in enumerate(teachers):
        keep = (a[:, m] > 0).nonzero().squeeze(1)  # (B_m,) indices of available samples
        if keep.numel() < 2:
            continue
        terms += [similarity_preserving(s[keep], t[keep]) for s, t in zip(students, row)]
    if not terms:
        return students[0].sum() * 0.0
    return torch.stack(terms).mean()


# -------------------- the total (§6.1)


def teacher_confidence(
    teacher_logits: Tensor, labels: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Confidence weights a_im = p_m(y_i) / Σ_j p_j(y_i) over the available teachers.

    p_m(y_i) is teacher m's softmax probability of the true class, so a teacher that recognises
    the sample weighs more (``distill.teacher_aggregation = confidence``, §10.4).

    Args:
        teacher_logits: (M, B, K).
        labels: (B,) class indices.
        mask: (B, M) availability; unavailable teachers get 0.

    Returns:
        (B, M) detached weights; each row sums to 1 (0 when no teacher is available).
    """
    probs = teacher_logits.detach().float().softmax(dim=2)  # (M, B, K)
    index = labels.to(probs.device)[None, :, None].expand(probs.shape[0], -1, 1)  # (M, B, 1)
    p_true = probs.gather(2, index).squeeze(2).t()  # (B, M)
    if mask is not None:
        p_true = p_true * mask.to(device=p_true.device, dtype=p_true.dtype)
    return p_true / p_true.sum(dim=1, keepdim=True).clamp_min(1e-12)


def _aggregate(per_teacher: Sequence[Tensor], a: Tensor) -> Tensor:
    """Σ_i Σ_m a_im X_im / Σ a for M per-sample terms X_m of shape (B,)."""
    x = torch.stack(list(per_teacher), dim=1)  # (B, M)
    x = torch.where(a > 0, a * x, torch.zeros_like(x))
    return x.sum() / a.sum().clamp_min(1e-12)


def _sanitise(teacher: Tensor, available: Tensor) -> Tensor:
    """Zero the rows of an excluded teacher so that its values cannot reach the gradient."""
    keep = available.view(-1, *([1] * (teacher.dim() - 1)))
    return torch.where(keep, teacher.detach(), torch.zeros_like(teacher))


def _stacked(tensors: Tensor | Sequence[Tensor] | None) -> Tensor | None:
    return torch.stack(list(tensors)) if isinstance(tensors, (list, tuple)) else tensors


def _check_inputs(config: DistillConfig, lambdas: dict[str, float], *inputs: object) -> None:
    """A term with a positive weight needs its inputs (ConfigError for unknown choices)."""
    _choice("distill.teacher_aggregation", config.teacher_aggregation, AGGREGATIONS)
    logits, feature, features, s_maps, t_maps = inputs
    needs = {"st": (logits,), "sp": (feature, features), "gsdm": (s_maps, t_maps),
             "sp_gram": (s_maps, t_maps)}
    for name, needed in needs.items():
        if config.teacher_aggregation == "confidence":
            needed = (*needed, logits)
        if lambdas[name] > 0 and any(x is None for x in needed):
            raise ValueError(f"distill.lambda_{name} > 0 but the inputs of its term are missing"
                             " (confidence aggregation also needs teacher_logits)")


def _availability(mask: Tensor | None, student_logits: Tensor, *teacher_inputs: object) -> Tensor:
    """(B, M) bool availability; checks that every teacher input agrees on M."""
    counts = {len(x) for x in teacher_inputs if x is not None}  # type: ignore[arg-type]
    if len(counts) > 1:
        raise ValueError("teacher logits, features and maps disagree on the number of teachers: "
                         f"{sorted(counts)}")
    shape = (student_logits.shape[0], counts.pop() if counts else 1)
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=student_logits.device)
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask must be (B, M) = {shape}, got {tuple(mask.shape)}")
    return mask.to(device=student_logits.device, dtype=torch.bool)


def _grad_if(enabled: bool) -> contextlib.AbstractContextManager:
    """Terms with weight 0 are computed for logging only, without building a graph."""
    return contextlib.nullcontext() if enabled else torch.no_grad()


def distillation_terms(
    config: DistillConfig,
    student_logits: Tensor,
    labels: Tensor,
    *,
    teacher_logits: Tensor | Sequence[Tensor] | None = None,
    student_feature: Tensor | None = None,
    teacher_features: Tensor | Sequence[Tensor] | None = None,
    student_maps: Sequence[Tensor] | None = None,
    teacher_maps: Sequence[Sequence[Tensor]] | None = None,
    student_weights: Tensor | None = None,
    teacher_weights: Tensor | None = None,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """The student objective of method doc §6.1 with the weights of a ``DistillConfig``.

    loss = CE(o, y) + λ_ST·ST + λ_SP·SP + λ_GSDM·GSDM + λ_Gram·Gram. Each teacher term is
    aggregated over teachers and samples as Σ a_im X_im / Σ a_im with a = the availability mask
    (``mean``: with every teacher present, the uniform (1/M) Σ_m of §6.1) or the
    ``teacher_confidence`` weights (``confidence``). Gram is the batch-Gram loss on the GSDM maps.
    A term with weight 0 is still reported (computed without a graph when its inputs are given,
    else 0) but never added to ``loss``, so it cannot make the loss NaN. The caller passes only
    the layer pairs chosen by ``distill.gsdm_pairs`` and computes the weights with
    ``ablation_weights``.

    Args:
        config: the ``distill`` section.
        student_logits: (B, K) logits o.
        labels: (B,) class indices y.
        teacher_logits: (M, B, K) or M × (B, K); needed by ST and by ``confidence``.
        student_feature: (B, D) v.
        teacher_features: (M, B, D) or M × (B, D) h_m.
        student_maps, teacher_maps, student_weights, teacher_weights: as in ``gsdm_loss``.
        mask: (B, M) bool teacher availability (None: all).

    Returns:
        ``{'loss', 'ce', 'st', 'sp', 'gsdm', 'sp_gram'}``, scalar tensors.
    """
    teacher_logits, teacher_features = _stacked(teacher_logits), _stacked(teacher_features)
    lambdas = {"st": config.lambda_st, "sp": config.lambda_sp,
               "gsdm": config.lambda_gsdm, "sp_gram": config.lambda_sp_gram}
    _check_inputs(config, lambdas, teacher_logits, student_feature, teacher_features,
                  student_maps, teacher_maps)
    available = _availability(mask, student_logits, teacher_logits, teacher_features,
                              teacher_maps)  # (B, M) bool
    # confidence without teacher logits only happens when every term needing it has weight 0
    confidence = config.teacher_aggregation == "confidence" and teacher_logits is not None
    a = (teacher_confidence(teacher_logits, labels, available)
         if confidence else available.float())  # (B, M)
    zero = torch.zeros((), device=student_logits.device)
    terms = {"ce": F.cross_entropy(student_logits.float(), labels),
             "st": zero, "sp": zero, "gsdm": zero, "sp_gram": zero}
    if teacher_logits is not None:
        with _grad_if(lambdas["st"] > 0):
            terms["st"] = _aggregate([_soft_target_per_sample(
                student_logits, _sanitise(z, available[:, m]), config.temperature)
                for m, z in enumerate(teacher_logits)], a)
    if student_feature is not None and teacher_features is not None:
        with _grad_if(lambdas["sp"] > 0):
            terms["sp"] = _aggregate([
                _mse_per_sample(student_feature, _sanitise(h, available[:, m]))
                for m, h in enumerate(teacher_features)], a)
    if student_maps is not None and teacher_maps is not None:
        with _grad_if(lambdas["gsdm"] > 0 or lambdas["sp_gram"] > 0):
            s_maps, t_maps = gsdm_maps(student_maps, student_weights, teacher_maps,
                                       teacher_weights, config.map_norm, config.map_resize)
        with _grad_if(lambdas["gsdm"] > 0):
            terms["gsdm"] = _gsdm_from_maps(s_maps, t_maps, a)
        with _grad_if(lambdas["sp_gram"] > 0):
            terms["sp_gram"] = gram_maps_loss(s_maps, t_maps, a)
    loss = terms["ce"]
    for name, weight in lambdas.items():
        if weight > 0:
            loss = loss + weight * terms[name]
    return {"loss": loss, **terms}
