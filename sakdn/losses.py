"""Student-stage distillation losses: ST, SP, GSDM and the batch-Gram term (method doc §6).

Every function is pure (tensors in, tensors out, no state). Teacher-side inputs are always
detached; the student side stays in autograd. Losses are computed in float32 whatever the input
dtype, so bf16 autocast does not round them away.

Notation: B samples, M teachers (sensors), P GSDM layer pairs, K classes, D semantic dimensions.
Teacher tensors are teacher-minor: (B, M, ...), as the teachers return them.

:func:`student_objective` is the student stage's whole loss; :func:`weighted_maps` is the one
place where the GSDM weighting (``distill.ablation_weight``) is applied, for the student, the
teachers and the figures alike.
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

# ``ablation_cam``: graph-guided channel ablation (per-channel weights, spatial maps); the
# others give one scalar weight per sample: ``plain`` (the reference UTD script), ``graph``
# (the reference Berkeley/MMAct scripts), ``prob_drop`` and ``none``.
ABLATION_VARIANTS = ("ablation_cam", "plain", "graph", "prob_drop", "none")
ZERO_PASS_VARIANTS = ("plain", "graph", "prob_drop")  # need a pass on an all-zero input
CLASS_VECTOR_VARIANTS = ("plain", "graph")  # need class vectors


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


def batch_graph(logits: Tensor, sigma2: float) -> Tensor:
    """S = D^-1/2 K D^-1/2 with K_ij = exp(−mean_c (z_ic − z_jc)² / (2σ²)), D = diag(Σ_i K_ij).

    The batch graph of the graph-guided ablation analysis (method doc §6.3): samples whose
    predictions look alike share their ablation evidence. σ² → 0 gives S = I (no sharing);
    σ² → ∞ gives S = 1/B (every sample gets the batch mean).

    Args:
        logits: (B, K).
        sigma2: kernel bandwidth σ² > 0 (the reference code uses 1).

    Returns:
        (B, B) float32, symmetric, detached.
    """
    if sigma2 <= 0:
        raise ConfigError("distill.graph_sigma2", sigma2, "must be > 0")
    z = logits.detach().float()
    with _full_precision(z):
        sq = (z[:, None, :] - z[None, :, :]).pow(2).mean(dim=2)  # (B, B)
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
    """Per-sample (scalar) GSDM weights w_i from a real and an ablated (all-zero input) pass.

    With ŷ_i = argmax z_i, ŷ'_i = argmax z'_i, e_k the class vector of class k and φ = ReLU when
    ``relu`` else the identity (method doc §6.3, §10.4):

    - ``plain`` (reference UTD script): w_i = (1/D) Σ_d φ( (e_ŷ,d − e_ŷ',d) / e_ŷ,d ).
    - ``graph`` (reference Berkeley / MMAct scripts): Q = S E, Q' = S' E' with S, S' the
      ``batch_graph`` of the real and ablated logits and rows E_i = e_ŷ_i, E'_i = e_ŷ'_i;
      w_i = (1/D) Σ_d φ( (Q_id − Q'_id) / Q_id ).
    - ``prob_drop``: w_i = clamp( (p_i − p'_i) / p_i, 0, 1 ), the relative drop of the predicted
      class's softmax probability under ablation (bounded, needs no class vectors).
    - ``none``: w_i = 1 (plain channel-sum activation maps).

    The reference code divides by single class-vector coordinates, so a few near-zero
    coordinates dominate w_i or make it inf/NaN (pitfall P9). Here each denominator whose
    magnitude is below ``eps`` × the mean |coordinate| of its row is raised to that floor,
    keeping its sign, and w is clamped to [−1, 1]. All-zero inputs give every sample the same
    ablated logits, so for ``graph`` S' is the constant 1/B graph and Q'_i the same row for
    every sample. One scalar per sample scales the whole channel-sum map, so after per-sample
    normalisation these variants only switch a map on (w > 0) or off (w ≤ 0); the spatial
    ``ablation_cam`` weights are in :func:`ablation_cam_weights`.

    Args:
        logits: (B, K) logits of the real samples.
        ablated_logits: (B, K) logits of the ablated samples (a separate ``no_grad`` pass,
            pitfalls P10, P11).
        class_vectors: (K, D) class vectors e_k; required by ``plain`` and ``graph``.
        variant: ``plain`` | ``graph`` | ``prob_drop`` | ``none``.
        relu: apply φ = ReLU to each term (the reference MMAct script does).
        sigma2: kernel bandwidth σ² of ``graph``.
        eps: relative floor of the denominators.

    Returns:
        (B,) float32 weights, detached.
    """
    _choice("distill.ablation_weight", variant, ABLATION_VARIANTS[1:])
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
            "needs class vectors (semantics.provider is 'none'); use ablation_cam, prob_drop "
            "or none",
        )
    vectors = class_vectors.detach().to(device=z.device, dtype=torch.float32)  # (K, D)
    e = vectors[z.argmax(dim=1)]  # (B, D)
    e_abl = vectors[z_abl.argmax(dim=1)]  # (B, D)
    with _full_precision(z):
        if variant == "graph":
            e = batch_graph(z, sigma2) @ e  # Q, (B, D)
            e_abl = batch_graph(z_abl, sigma2) @ e_abl  # Q'
        return _relative_change(e, e_abl, relu, eps)


def predicted_score(logits: Tensor) -> Tensor:
    """y_i = z_i,ŷ_i, the logit of each sample's predicted class, (B, ...) → (B, ...); in
    autograd, so that ∂y/∂A can be taken for :func:`channel_drops`."""
    return logits.gather(-1, logits.detach().argmax(dim=-1, keepdim=True)).squeeze(-1)


def channel_drops(activations: Tensor, grads: Tensor, groups: int = 1) -> Tensor:
    """First-order estimate of Ablation-CAM's score drop per channel: y − y^(c) ≈ Σ_hw A_c ∂y/∂A_c.

    Ablation-CAM (Desai & Ramaswamy, WACV 2020) zeroes channel c of a layer and measures how
    much the predicted class's score y falls. Zeroing A_c moves y by −Σ_hw A_c ∂y/∂A_c to first
    order, so one backward pass gives every channel's drop at once (exact when y is linear in A,
    e.g. A → global average pooling → linear). The exact ablation costs one forward pass of the
    rest of the network per channel (docs/benchmarks.md, "GSDM variants").

    Args:
        activations: (N, C, H, W) layer output A.
        grads: (N, C, H, W) ∂y/∂A.
        groups: consecutive rows that form one sample (a student clip's S segments: the
            channel is zeroed in every segment, so their drops add up).

    Returns:
        (N / groups, C) float32 drops, detached.
    """
    if activations.shape != grads.shape or activations.dim() != 4:
        raise ValueError(f"channel_drops: expected equal (N, C, H, W) shapes, got "
                         f"{tuple(activations.shape)} and {tuple(grads.shape)}")
    drops = (activations.detach().float() * grads.detach().float()).sum(dim=(2, 3))  # (N, C)
    return drops.view(-1, groups, drops.shape[1]).sum(dim=1)


def ablation_cam_weights(
    drops: Tensor, logits: Tensor, sigma2: float = 1.0, relu: bool = False, eps: float = 1e-6
) -> Tensor:
    """Graph-guided Ablation-CAM channel weights W = S · (drop / |y|), (B, C).

    w_ic = (y_i − y_i^(c)) / |y_i|: the relative drop of sample i's predicted-class score when
    channel c is zeroed (Ablation-CAM; the magnitude |y_i| in the denominator keeps a drop
    positive whatever the sign of the logit). Graph guidance as in the paper's name (method
    doc §6.3): the weights are propagated over the ``batch_graph`` S of the logits, so samples
    predicted alike share their evidence. With φ = ReLU (``relu``) only channels whose removal
    lowers the score count.

    Args:
        drops: (B, C) score drops, e.g. from :func:`channel_drops`.
        logits: (B, K) logits that gave the scores y (and the graph).
        sigma2: graph kernel bandwidth σ².
        relu: clamp the weights at 0 before propagation.
        eps: lower bound of |y|.

    Returns:
        (B, C) float32 weights, detached.
    """
    z = logits.detach().float()
    w = drops.detach().float() / predicted_score(z).abs().clamp_min(eps)[:, None]  # (B, C)
    if relu:
        w = w.clamp_min(0.0)
    with _full_precision(z):
        return batch_graph(z, sigma2) @ w


# -------------------- attention maps (§6.3)


def attention_maps(features: Tensor, weights: Tensor) -> Tensor:
    """Ablation-weighted activation maps M_i = max(0, Σ_c w_ic A_ic) (method doc §6.3).

    ``weights`` is (B,) for the scalar variants (M_i = max(0, w_i Σ_c A_ic)) or (B, C) for
    ``ablation_cam``. The reference code computed maps on detached NumPy copies, so the
    student's maps were constants and GSDM gave no gradient (pitfall P2); here the maps stay in
    autograd (the weights are detached). The sum accumulates in float32.

    Args:
        features: (B, C, H, W) stage activations A.
        weights: (B,) or (B, C) weights w.

    Returns:
        (B, H, W) float32 maps.
    """
    b, c = features.shape[:2] if features.dim() == 4 else (None, None)
    if features.dim() != 4 or weights.shape not in ((b,), (b, c)):
        raise ValueError(
            f"attention_maps: expected features (B, C, H, W) and weights (B,) or (B, C), got "
            f"{tuple(features.shape)} and {tuple(weights.shape)}"
        )
    w = weights.detach().to(device=features.device, dtype=torch.float32)
    if w.dim() == 1:
        return torch.relu(w[:, None, None] * features.sum(dim=1, dtype=torch.float32))
    return torch.relu(torch.einsum("bchw,bc->bhw", features.float(), w))


def weighted_maps(
    config: DistillConfig,
    stages: Sequence[Tensor],
    logits: Tensor,
    *,
    class_vectors: Tensor | None = None,
    ablated_logits: Tensor | None = None,
    drops: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """One network's unnormalised GSDM maps on one batch, per layer pair, with the weighting of
    ``distill.ablation_weight`` — the one place that rule lives (student, teachers, figures).

    Args:
        config: the ``distill`` section (``ablation_weight``, ``ablation_relu``,
            ``graph_sigma2``).
        stages: P activations (B, C_p, H_p, W_p) (the student's in autograd).
        logits: (B, K) the network's logits on the batch.
        class_vectors: (K, D), for ``plain`` and ``graph``.
        ablated_logits: (B, K) logits of the all-zero input, for the ``ZERO_PASS_VARIANTS``.
        drops: P (B, C_p) channel drops (:func:`channel_drops`), for ``ablation_cam``.

    Returns:
        P maps (B, H_p, W_p), ≥ 0, in autograd where ``stages`` are.
    """
    variant = config.ablation_weight
    _choice("distill.ablation_weight", variant, ABLATION_VARIANTS)
    if variant == "ablation_cam":
        if drops is None or len(drops) != len(stages):
            raise ValueError("ablation_cam needs one (B, C) channel-drop tensor per stage")
        return [attention_maps(a, ablation_cam_weights(d, logits, config.graph_sigma2,
                                                       config.ablation_relu))
                for a, d in zip(stages, drops)]
    if variant in ZERO_PASS_VARIANTS and ablated_logits is None:
        raise ValueError(f"ablation_weight {variant} needs the logits of the all-zero input")
    w = ablation_weights(logits, logits if ablated_logits is None else ablated_logits,
                         class_vectors, variant, config.ablation_relu, config.graph_sigma2)
    return [attention_maps(a, w) for a in stages]


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


def informative(maps: Tensor, rtol: float = 1e-6) -> Tensor:
    """(B,) bool: which maps vary in space (not all zero, not constant), i.e. carry a region."""
    flat = maps.detach().flatten(1).float()
    top = flat.abs().amax(dim=1)
    span = flat.amax(dim=1) - flat.amin(dim=1)
    return (top > 0) & (span > rtol * top)


def _map_distance_per_sample(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    n_s = F.normalize(student_map.float(), p=2, dim=1)  # (B, H, W), unit columns
    n_t = F.normalize(teacher_map.detach().float(), p=2, dim=1)
    return (n_s - n_t).pow(2).flatten(1).mean(dim=1)  # (B,)


def map_distance(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """Map comparison D of method doc §6.4 (the reference ``Gram_loss``), per sample.

    D_i(M_s, M_t) = mean_{h,w} ( n(M_s)_i − n(M_t)_i )², where n L2-normalises along dim 1, the
    height axis, so each column of each map becomes a unit vector (all-zero columns stay zero).
    Despite the reference class name, no Gram matrix is formed. The reference re-wrapped its
    inputs with ``torch.tensor`` and so cut the gradient (pitfall P2); the student side stays in
    autograd here.

    Args:
        student_map: (B, H, W) student maps.
        teacher_map: (B, H, W) teacher maps at the same size (detached here).

    Returns:
        (B,) distances.
    """
    if student_map.dim() != 3 or student_map.shape != teacher_map.shape:
        raise ValueError(
            f"map_distance: expected equal (B, H, W) shapes, got {tuple(student_map.shape)} and "
            f"{tuple(teacher_map.shape)}; align the teacher map first"
        )
    return _map_distance_per_sample(student_map, teacher_map)


# -------------------- GSDM (§6.1, §6.3, §6.4)


def gsdm_maps(
    student_maps: Sequence[Tensor],
    teacher_maps: Sequence[Tensor],
    map_norm: str = "minmax",
    map_resize: str = "bilinear",
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """The normalised attention maps that GSDM compares (method doc §6.3, pitfalls P2, P3, P9).

    Student, per pair p: n(M_s^p), in autograd. Teacher m, per pair p:
    n( resize(M_{t,m}^p, student size) ), detached. n is the per-sample ``map_norm``; resizing
    comes before normalisation so that both maps of a pair span the same range.

    Args:
        student_maps: P unnormalised maps (B, H_p, W_p) (:func:`weighted_maps`).
        teacher_maps: P unnormalised maps (B, M, h_p, w_p), any h_p, w_p.
        map_norm: ``minmax`` | ``l2``.
        map_resize: ``bilinear`` | ``adaptive_avg``.

    Returns:
        (P student maps (B, H_p, W_p), M lists of P teacher maps (B, H_p, W_p)).
    """
    _choice("distill.map_norm", map_norm, MAP_NORMS)
    _choice("distill.map_resize", map_resize, MAP_RESIZES)
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"GSDM needs one teacher map per student map: {len(student_maps)} "
                         f"student and {len(teacher_maps)} teacher layers")
    students = [normalize_maps(s, map_norm) for s in student_maps]
    teachers: list[list[Tensor]] = []
    with torch.no_grad():
        for m in range(teacher_maps[0].shape[1] if teacher_maps else 0):
            teachers.append([
                normalize_maps(align_maps(t[:, m].detach().float(), s.shape[1:], map_resize),
                               map_norm)
                for s, t in zip(student_maps, teacher_maps)])
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
    b = students[0].shape[0]
    a = (torch.ones(b, len(teachers), device=students[0].device) if mask is None
         else mask.to(device=students[0].device, dtype=torch.float32))
    terms = []
    for m, row in enumerate(teachers):
        keep = (a[:, m] > 0).nonzero().squeeze(1)  # (B_m,) indices of available samples
        if keep.numel() < 2:
            continue
        terms += [similarity_preserving(s[keep], t[keep]) for s, t in zip(students, row)]
    if not terms:
        return students[0].sum() * 0.0
    return torch.stack(terms).mean()


def gsdm_active(
    student_maps: Sequence[Tensor], teachers: Sequence[Sequence[Tensor]], available: Tensor
) -> Tensor:
    """Share of (sample, available teacher, layer pair) map pairs in which both maps carry a
    region (:func:`informative`): the part of GSDM that can give the student a gradient.

    A pair where either map is zero or constant compares nothing: the column-normalised distance
    of a zero map has no gradient. Scalar ablation weights ≤ 0 zero whole maps; this is how
    often that did not happen.

    Args:
        student_maps: P unnormalised student maps (B, H, W).
        teachers: M lists of P teacher maps aligned to the student's sizes.
        available: (B, M) bool.

    Returns:
        Scalar float32 in [0, 1] (0 when no teacher is available).
    """
    hits = total = 0.0
    for m, row in enumerate(teachers):
        for s_map, t_map in zip(student_maps, row):
            both = informative(s_map) & informative(t_map) & available[:, m]
            hits += float(both.sum())
            total += float(available[:, m].sum())
    return torch.tensor(hits / total if total else 0.0)


# -------------------- the student objective (§6.1)


def teacher_confidence(
    teacher_logits: Tensor, labels: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Confidence weights a_im = p_m(y_i) / Σ_j p_j(y_i) over the available teachers.

    p_m(y_i) is teacher m's softmax probability of the true class, so a teacher that recognises
    the sample weighs more (``distill.teacher_aggregation = confidence``, §10.4).

    Args:
        teacher_logits: (B, M, K).
        labels: (B,) class indices.
        mask: (B, M) availability; unavailable teachers get 0.

    Returns:
        (B, M) detached weights; each row sums to 1 (0 when no teacher is available).
    """
    probs = teacher_logits.detach().float().softmax(dim=2)  # (B, M, K)
    index = labels.to(probs.device)[:, None, None].expand(-1, probs.shape[1], 1)  # (B, M, 1)
    p_true = probs.gather(2, index).squeeze(2)  # (B, M)
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


def _grad_if(enabled: bool) -> contextlib.AbstractContextManager:
    """Terms with weight 0 are computed for logging only, without building a graph."""
    return contextlib.nullcontext() if enabled else torch.no_grad()


def _check_inputs(config: DistillConfig, inputs: dict[str, object]) -> None:
    """A term with a positive weight needs its inputs; unknown choices are ConfigErrors."""
    _choice("distill.teacher_aggregation", config.teacher_aggregation, AGGREGATIONS)
    needs = {"st": ("teacher_logits",), "sp": ("student_feature", "teacher_features"),
             "gsdm": ("student_maps", "teacher_maps"), "sp_gram": ("student_maps", "teacher_maps")}
    for name, needed in needs.items():
        if config.teacher_aggregation == "confidence":
            needed = (*needed, "teacher_logits")
        missing = [n for n in needed if inputs[n] is None]
        if getattr(config, f"lambda_{name}") > 0 and missing:
            raise ValueError(f"distill.lambda_{name} > 0 but its inputs are missing: "
                             + ", ".join(missing))


def _availability(mask: Tensor | None, batch: int, teachers: int, device) -> Tensor:
    if mask is None:
        return torch.ones(batch, teachers, dtype=torch.bool, device=device)
    if tuple(mask.shape) != (batch, teachers):
        raise ValueError(f"mask must be (B, M) = {(batch, teachers)}, got {tuple(mask.shape)}")
    return mask.to(device=device, dtype=torch.bool)


def _teacher_count(teacher_logits, teacher_features, teacher_maps) -> int:
    counts = {x.shape[1] for x in (teacher_logits, teacher_features) if x is not None}
    counts |= {t.shape[1] for t in teacher_maps or ()}
    if len(counts) > 1:
        raise ValueError("teacher logits, features and maps disagree on the number of teachers "
                         f"(dim 1): {sorted(counts)}")
    return counts.pop() if counts else 1


def student_objective(
    config: DistillConfig,
    labels: Tensor,
    student_logits: Tensor,
    *,
    student_feature: Tensor | None = None,
    teacher_logits: Tensor | None = None,
    teacher_features: Tensor | None = None,
    student_maps: Sequence[Tensor] | None = None,
    teacher_maps: Sequence[Tensor] | None = None,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """The student objective of method doc §6.1, every term from the gathered inputs.

    loss = CE(o, y) + λ_ST·ST + λ_SP·SP + λ_GSDM·GSDM + λ_Gram·Gram, with

    - ST = Σ a_im KD_T(o_i, z_im) / Σ a (soft targets, T = ``temperature``);
    - SP = Σ a_im mean_d (v_id − h_imd)² / Σ a (student fc1 ↔ teacher fused fc2);
    - GSDM = Σ_m Σ_p Σ_i a_im D_i(n(M_s^p), n(M_{t,m}^p)) / (P Σ a) on the ``gsdm_maps``;
    - Gram = the batch-Gram (similarity-preserving) loss on the same maps, over teachers and
      pairs (``gram_maps_loss``): the interrelation-preserving part of the paper's GSDM.

    a_im is teacher m's availability for sample i (``mean``: with every teacher present the
    uniform (1/M) Σ_m of §6.1) or its ``teacher_confidence`` (``confidence``). A term with
    weight 0 is still reported when its inputs are given (computed without a graph) but never
    added to ``loss``, so it cannot make the loss NaN. ``StudentStage`` gathers the inputs and
    calls this; nothing else computes the objective.

    Args:
        config: the ``distill`` section.
        labels: (B,) class indices y.
        student_logits: (B, K) logits o.
        student_feature: (B, D) segment-averaged feature v.
        teacher_logits: (B, M, K) z.
        teacher_features: (B, M, D) fused fc2 features h.
        student_maps: P unnormalised student maps (B, H_p, W_p) (``weighted_maps``), in autograd.
        teacher_maps: P unnormalised teacher maps (B, M, h_p, w_p).
        mask: (B, M) bool teacher availability (None: all).

    Returns:
        ``{'loss', 'ce', 'st', 'sp', 'gsdm', 'sp_gram'}`` scalar tensors, plus ``gsdm_active``
        (:func:`gsdm_active`) when maps are given.
    """
    inputs = {"teacher_logits": teacher_logits, "student_feature": student_feature,
              "teacher_features": teacher_features, "student_maps": student_maps,
              "teacher_maps": teacher_maps}
    _check_inputs(config, inputs)
    b = student_logits.shape[0]
    available = _availability(mask, b, _teacher_count(teacher_logits, teacher_features,
                                                      teacher_maps), student_logits.device)
    confidence = config.teacher_aggregation == "confidence" and teacher_logits is not None
    a = (teacher_confidence(teacher_logits, labels, available)
         if confidence else available.float())  # (B, M)
    zero = torch.zeros((), device=student_logits.device)
    terms = {"ce": F.cross_entropy(student_logits.float(), labels),
             "st": zero, "sp": zero, "gsdm": zero, "sp_gram": zero}
    if teacher_logits is not None:
        with _grad_if(config.lambda_st > 0):
            terms["st"] = _aggregate([_soft_target_per_sample(
                student_logits, _sanitise(teacher_logits[:, m], available[:, m]),
                config.temperature) for m in range(a.shape[1])], a)
    if student_feature is not None and teacher_features is not None:
        with _grad_if(config.lambda_sp > 0):
            terms["sp"] = _aggregate([
                _mse_per_sample(student_feature, _sanitise(teacher_features[:, m],
                                                           available[:, m]))
                for m in range(a.shape[1])], a)
    if student_maps is not None and teacher_maps is not None:
        with _grad_if(config.lambda_gsdm > 0 or config.lambda_sp_gram > 0):
            s_maps, t_maps = gsdm_maps(student_maps, teacher_maps, config.map_norm,
                                       config.map_resize)
        with _grad_if(config.lambda_gsdm > 0):
            terms["gsdm"] = _gsdm_from_maps(s_maps, t_maps, a)
        with _grad_if(config.lambda_sp_gram > 0):
            terms["sp_gram"] = gram_maps_loss(s_maps, t_maps, a)
        terms["gsdm_active"] = gsdm_active(student_maps, t_maps, available).to(zero.device)
    loss = terms["ce"]
    for name in ("st", "sp", "gsdm", "sp_gram"):
        weight = getattr(config, f"lambda_{name}")
        if weight > 0:
            loss = loss + weight * terms[name]
    return {"loss": loss, **terms}
