"""What the networks give GSDM: the layer pairs in use and each side's weighted maps.

The weighting rule itself is :func:`sakdn.losses.weighted_maps`; this module gathers its
inputs from a network — the stage activations, and per ``distill.ablation_weight`` either the
logits of an all-zero input (``plain``, ``graph``, ``prob_drop``) or the gradient of the
predicted class's score with respect to every stage (``ablation_cam``, one backward pass,
:func:`sakdn.losses.channel_drops`). Training (``student_stage``) and the figures call these
same functions, so a figure shows exactly the maps the loss compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sakdn import losses
from sakdn.config import ExperimentConfig, parse_subset
from sakdn.errors import ConfigError
from sakdn.models.backbones import stage_sizes
from sakdn.models.student import Student, StudentOutput
from sakdn.models.teacher import TeacherEnsemble, TeacherOutput

PAIRS = ("1", "2", "3", "4", "5")  # GSDM layer pairs: backbone stage p of student and teachers


@dataclass(frozen=True)
class GSDMPlan:
    """The GSDM layer pairs a run uses and why any configured pair is left out.

    Attributes:
        pairs: stage indices (0-based) whose maps GSDM compares.
        left_out: ``{stage index: reason}`` for configured pairs that are not used.
        active: whether the student stage computes maps at all (a GSDM or Gram weight > 0).
    """

    pairs: tuple[int, ...]
    left_out: dict[int, str]
    active: bool

    def effective(self) -> dict[str, str]:
        """Config keys whose effective value differs from the configured one."""
        used = ",".join(PAIRS[p] for p in self.pairs) or "none"
        return {"distill.gsdm_pairs": used} if self.left_out and self.active else {}

    def notes(self) -> list[str]:
        return [f"GSDM layer pair {p + 1} left out: {why}" for p, why in self.left_out.items()]


def small_stages(config: ExperimentConfig) -> dict[int, str]:
    """``{stage index: reason}`` for the stages whose student or teacher map is 1×1: such a map
    carries no spatial information (and normalises to zero), so GSDM cannot use it."""
    s_sizes = stage_sizes(config.student.backbone, config.student.width, config.data.frame_size)
    t_sizes = stage_sizes(config.teacher.backbone, config.teacher.width, config.gaf.image_size)
    small = {}
    for p, (s, t) in enumerate(zip(s_sizes, t_sizes)):
        if s == (1, 1) or t == (1, 1):
            side = "student" if s == (1, 1) else "teacher"
            small[p] = (f"the {side}'s stage-{p + 1} map is 1×1 (student {s[0]}×{s[1]} at "
                        f"data.frame_size {config.data.frame_size}, teacher {t[0]}×{t[1]} at "
                        f"gaf.image_size {config.gaf.image_size}): no spatial information")
    return small


def gsdm_plan(config: ExperimentConfig) -> GSDMPlan:
    """Check before training that the configured GSDM can act, and which pairs it uses.

    A configured pair with 1×1 maps (:func:`small_stages`) is left out with the reason. Raises
    ConfigError when a weighted GSDM term has no usable pair, or when ``plain`` / ``graph``
    weights have no class vectors.
    """
    dc = config.distill
    active = dc.lambda_gsdm > 0 or dc.lambda_sp_gram > 0
    chosen = [PAIRS.index(p) for p in parse_subset(dc.gsdm_pairs, PAIRS)]
    small = small_stages(config)
    left_out = {p: small[p] for p in chosen if p in small}
    pairs = tuple(p for p in chosen if p not in left_out)
    if active and not pairs:
        raise ConfigError("distill.gsdm_pairs", dc.gsdm_pairs,
                          "no layer pair has maps larger than 1×1 at data.frame_size "
                          f"{config.data.frame_size} and gaf.image_size {config.gaf.image_size}"
                          " (set distill.lambda_gsdm and lambda_sp_gram to 0, or use larger "
                          "inputs or shallower pairs)")
    if active and dc.ablation_weight in losses.CLASS_VECTOR_VARIANTS and (
            config.semantics.provider == "none"):
        raise ConfigError("distill.ablation_weight", dc.ablation_weight,
                          "needs class vectors, but semantics.provider is 'none'; use "
                          "ablation_cam, prob_drop or none")
    return GSDMPlan(pairs, left_out, active)


def maps_salt(config: ExperimentConfig, plan: GSDMPlan) -> str:
    """What, besides the teacher set and the batch, the stored teacher maps depend on."""
    dc = config.distill
    if not plan.active:
        return "maps=none"
    pairs = ",".join(PAIRS[p] for p in plan.pairs)
    return (f"maps={pairs}|{dc.ablation_weight}|relu={dc.ablation_relu}"
            f"|sigma2={dc.graph_sigma2}")


def teacher_maps(
    teachers: TeacherEnsemble, sensors: Tensor, mask: Tensor, config: ExperimentConfig,
    class_vectors: Tensor | None, pairs: tuple[int, ...],
) -> tuple[TeacherOutput, list[Tensor]]:
    """The teachers' forward pass on a batch and their unnormalised GSDM maps.

    Returns the output (real batch alone, as in teacher training: SPAMFM is batch-dependent,
    P11) and P maps (B, M, H_p, W_p), each teacher weighted from its own logits. The teachers
    are frozen: no parameter gradient is ever formed.
    """
    dc = config.distill
    if dc.ablation_weight == "ablation_cam":
        with torch.enable_grad():
            # an input that requires grad puts every stage output into the graph
            out = teachers(sensors.detach().float().requires_grad_(True), mask)
            score = losses.predicted_score(out.logits)  # (B, M)
            acts = [out.stages[p][m] for p in pairs for m in range(teachers.num_sensors)]
            grads = torch.autograd.grad(score.sum(), acts)
        m_count = teachers.num_sensors
        maps = []
        for i, p in enumerate(pairs):
            row = []
            for m in range(m_count):
                act, grad = acts[i * m_count + m], grads[i * m_count + m]
                drops = losses.channel_drops(act, grad)
                row.append(losses.weighted_maps(dc, [act.detach()], out.logits[:, m],
                                                drops=[drops])[0])
            maps.append(torch.stack(row, dim=1))
        return _detached(out), maps
    with torch.no_grad():
        out = teachers(sensors, mask)
        ablated = (teachers(torch.zeros_like(sensors), mask).logits.float()
                   if dc.ablation_weight in losses.ZERO_PASS_VARIANTS else None)
        per_teacher = [
            losses.weighted_maps(dc, [out.stages[p][m] for p in pairs], out.logits[:, m].float(),
                                 class_vectors=class_vectors,
                                 ablated_logits=None if ablated is None else ablated[:, m])
            for m in range(teachers.num_sensors)]
    maps = [torch.stack([row[i] for row in per_teacher], dim=1) for i in range(len(pairs))]
    return out, maps


def _detached(out: TeacherOutput) -> TeacherOutput:
    return TeacherOutput(out.logits.detach(), out.semantic.detach(),
                         [[t.detach() for t in stage] for stage in out.stages], out.mask)


def student_maps(
    model: Student, frames: Tensor, out: StudentOutput, config: ExperimentConfig,
    class_vectors: Tensor | None, pairs: tuple[int, ...],
) -> list[Tensor]:
    """The student's unnormalised GSDM maps for ``pairs``, in autograd (P2).

    ``out`` must come from ``model(frames, return_maps=True)`` with autograd on. For
    ``ablation_cam`` the score gradient with respect to every segment's stage output is one
    extra backward pass (no parameter gradients); samples of a batch interact only through
    BatchNorm's batch statistics in training mode, so ∂(Σ_i y_i)/∂A_i is sample i's own
    gradient up to that O(1/B) coupling. The scalar variants run the model once more on an
    all-zero clip, in eval mode so that BatchNorm statistics stay untouched (P10).
    """
    dc = config.distill
    stages = [out.maps[p] for p in pairs]
    if dc.ablation_weight == "ablation_cam":
        acts = [out.segment_maps[p] for p in pairs]
        grads = torch.autograd.grad(losses.predicted_score(out.logits).sum(), acts,
                                    retain_graph=True)
        groups = model.num_segments
        drops = [losses.channel_drops(a, g, groups) for a, g in zip(acts, grads)]
        return losses.weighted_maps(dc, stages, out.logits, drops=drops)
    ablated = None
    if dc.ablation_weight in losses.ZERO_PASS_VARIANTS:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            ablated = model(torch.zeros_like(frames)).logits.float()
            model.train(was_training)
    return losses.weighted_maps(dc, stages, out.logits.float(), class_vectors=class_vectors,
                                ablated_logits=ablated)
