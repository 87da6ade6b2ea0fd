"""Stage 2: distil the frozen teachers into the video student.

L_S = CE(o, y) + λ_ST·ST + λ_SP·SP + λ_GSDM·GSDM (+ λ_Gram·batch-Gram), method doc §6.1: the
stage gathers each batch's inputs and calls ``losses.student_objective``, nothing else.

Fixes of the reference code (method doc §8), each where it happens below:
- P1: the student's clip and the teachers' sensor images come from the same recording.
- P2: GSDM keeps the student side in autograd (only the teacher side is detached).
- P10/P11: ablated (zero-input) passes, where the GSDM weighting needs them, run separately
  under ``no_grad``; the student's in eval mode so its BatchNorm statistics are untouched, and
  the teachers' real features are computed on the real batch alone (as in teacher training).

Everything the frozen teachers contribute to a batch (:class:`TeacherBatch`: logits, fc2
features and their weighted GSDM maps) is a function of the teacher set, the GSDM settings and
the batch's samples in order; with a stored teacher set it is read from the store's
:class:`~sakdn.train.teacher_store.TeacherOutputs` instead of recomputed. The student's own maps
depend on its current weights and are always computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sakdn import losses
from sakdn.config import ExperimentConfig
from sakdn.data.dataset import ClipDataset
from sakdn.models.student import Student
from sakdn.models.teacher import TeacherEnsemble
from sakdn.train.attention import GSDMPlan, maps_salt, student_maps, teacher_maps
from sakdn.train.data import DataBundle, clip_dataset, student_training
from sakdn.seeding import derive_seed
from sakdn.train.loop import RunContext, StageState, make_loader, make_optimizer, make_schedule
from sakdn.train.metrics import topk_correct, true_class_probability
from sakdn.train.teacher_store import Layout, TeacherOutputs

GRAD_RATIO_EVERY = 5  # gsdm_grad_ratio: batches 0, 5, 10, … of each epoch
OUTPUTS_FORMAT = "2"  # bump when TeacherBatch's stored fields change


@dataclass
class TeacherBatch:
    """What the frozen teachers give one student batch of B samples (M teachers).

    Attributes:
        logits: (B, M, K) float32 teacher logits.
        semantic: (B, M, D) float32 fused fc2 features.
        maps: per GSDM layer pair in use, (B, M, H, W) float32 unnormalised weighted maps
            (``attention.teacher_maps``); [] when GSDM is off.
    """

    logits: torch.Tensor
    semantic: torch.Tensor
    maps: list[torch.Tensor]

    def layout(self) -> Layout:
        fields = [("logits", self.logits), ("semantic", self.semantic)]
        fields += [(f"map{p}", m) for p, m in enumerate(self.maps)]
        return [(name, tuple(int(n) for n in t.shape[1:])) for name, t in fields]

    def pack(self) -> np.ndarray:
        """(B, F) float32: every field flattened per sample, in ``layout`` order."""
        parts = [self.logits, self.semantic, *self.maps]
        return torch.cat([t.detach().float().flatten(1) for t in parts], dim=1).cpu().numpy()

    @classmethod
    def unpack(cls, array: np.ndarray, layout: Layout, device: torch.device) -> TeacherBatch:
        flat = torch.from_numpy(np.array(array, dtype=np.float32)).to(device)
        tensors, start = {}, 0
        for name, shape in layout:
            width = int(np.prod(shape))
            tensors[name] = flat[:, start:start + width].reshape(-1, *shape).contiguous()
            start += width
        maps = [tensors[f"map{p}"] for p in range(len(layout) - 2)]
        return cls(tensors["logits"], tensors["semantic"], maps)


def outputs_salt(ctx: RunContext, config: ExperimentConfig, plan: GSDMPlan) -> str:
    """What, besides the teacher set and the batch, changes the teachers' stored outputs:
    device, bf16 autocast, memory format, CPU threads, the stored format, the GSDM maps."""
    amp = ctx.amp and ctx.device.type == "cuda"
    return (f"format={OUTPUTS_FORMAT}|device={ctx.device.type}|amp={amp}"
            f"|channels_last={ctx.channels_last}|threads={torch.get_num_threads()}"
            f"|{maps_salt(config, plan)}")


def run_teachers(
    teachers: TeacherEnsemble, sensors: torch.Tensor, mask: torch.Tensor,
    config: ExperimentConfig, class_vectors: torch.Tensor | None, plan: GSDMPlan,
) -> TeacherBatch:
    """The teachers' outputs on the real batch alone (P11), with their GSDM maps when the plan
    needs them; the same batch composition as the student's (SPAMFM is batch-dependent)."""
    if not plan.active:
        with torch.no_grad():
            out = teachers(sensors, mask)
        return TeacherBatch(out.logits.float(), out.semantic.float(), [])
    out, maps = teacher_maps(teachers, sensors, mask, config, class_vectors, plan.pairs)
    return TeacherBatch(out.logits.float(), out.semantic.float(), [m.float() for m in maps])


class _WithIndex(Dataset):
    """The training clips with their position, so a batch knows which samples it holds (the
    loader's order and batches are those of the plain dataset: same length, same sampler)."""

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[i], "index": torch.tensor(i)}


def build_student(config: ExperimentConfig, bundle: DataBundle) -> Student:
    return Student(
        config.student,
        num_classes=bundle.num_classes,
        semantic_dim=bundle.semantic_dim,
        frame_size=config.data.frame_size,
        seed=config.train.seed,
        weights_dir=config.train.weights_dir,
    )


class StudentStage(StageState):
    """Owns the student, its optimiser and schedule, and the frozen teachers."""

    name = "student"

    def __init__(
        self,
        config: ExperimentConfig,
        bundle: DataBundle,
        ctx: RunContext,
        teachers: TeacherEnsemble,
        plan: GSDMPlan,
        outputs: TeacherOutputs | None = None,
    ) -> None:
        self.config, self.bundle, self.ctx, self.plan = config, bundle, ctx, plan
        self.outputs = outputs  # stored teacher outputs of this teacher set, or None
        sc = config.student
        self.teachers = teachers.to(ctx.device).eval()
        self.teachers.requires_grad_(False)
        self.model = build_student(config, bundle).to(ctx.device)
        if ctx.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(
            sc.optimizer, self.model.param_groups(sc.lr, sc.weight_decay), sc.lr,
            sc.weight_decay, sc.momentum,
        )
        self.schedule = make_schedule(self.optimizer, sc.epochs, sc.lr_decay_at, sc.lr_gamma)
        self.clips = clip_dataset(config, bundle, student_training(config, bundle), train=True)
        self.train_set = _WithIndex(self.clips)  # batches know their rows (stored outputs)
        self.batch_size, self.num_workers = sc.batch_size, config.data.num_workers
        self.val_set = clip_dataset(config, bundle, bundle.val) if len(bundle.val) else None
        vectors = bundle.class_vectors
        self.class_vectors = (
            torch.as_tensor(vectors, dtype=torch.float32, device=ctx.device)
            if vectors is not None
            else None
        )
        self.best_acc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ training
    def begin_epoch(self, epoch: int) -> None:
        for module in self.model.modules():  # TRN relation sampling: reseeded per epoch too
            if isinstance(getattr(module, "generator", None), torch.Generator):
                module.generator.manual_seed(derive_seed(self.ctx.seed, self.name, epoch,
                                                         "relations"))
        self.clips.set_epoch(epoch)
        self._ratios: list[float] = []

    def before_backward(self, index: int, terms: dict[str, torch.Tensor]) -> None:
        if index % GRAD_RATIO_EVERY == 0 and self.config.distill.lambda_gsdm > 0:
            self._ratios.append(self.gsdm_grad_ratio(terms))

    def epoch_extras(self) -> dict[str, float]:
        return {"gsdm_grad_ratio": float(np.mean(self._ratios))} if self._ratios else {}

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gather one batch's inputs and evaluate ``losses.student_objective`` on them."""
        frames, mask = batch["frames"], batch["mask"]
        t_out = self.teacher_batch(batch)
        s_out = self.model(frames, return_maps=self.plan.active)
        s_maps = (student_maps(self.model, frames, s_out, self.config, self.class_vectors,
                               self.plan.pairs) if self.plan.active else None)
        terms = losses.student_objective(
            self.config.distill, batch["label"], s_out.logits,
            student_feature=s_out.semantic, teacher_logits=t_out.logits,
            teacher_features=t_out.semantic, student_maps=s_maps,
            teacher_maps=t_out.maps if self.plan.active else None, mask=mask,
        )
        return terms, s_out.logits

    def gsdm_grad_ratio(self, terms: dict[str, torch.Tensor]) -> float:
        """‖∇(λ_GSDM · GSDM)‖ / ‖∇ CE‖ over the student's trainable parameters on one batch:
        how strongly GSDM steers the student next to the task loss."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        norms = []
        for term in (self.config.distill.lambda_gsdm * terms["gsdm"], terms["ce"]):
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
        return float(norms[0] / norms[1].clamp_min(1e-12))

    def teacher_batch(self, batch: dict[str, torch.Tensor]) -> TeacherBatch:
        """The teachers' outputs on this batch: read from the stored outputs when a batch with
        the same samples in the same order was computed before, else computed (and stored)."""
        sensors, mask = batch["sensors"], batch["mask"]
        if self.outputs is None or "index" not in batch:
            return run_teachers(self.teachers, sensors, mask, self.config, self.class_vectors,
                                self.plan)
        rows = self.clips.rows[batch["index"].cpu().numpy()]
        key = self.outputs.key(rows)
        stored = self.outputs.load(key)
        if stored is not None and len(stored) == len(rows):
            self.outputs.hits += 1
            return TeacherBatch.unpack(stored, self.outputs.layout(), self.ctx.device)
        self.outputs.misses += 1
        computed = run_teachers(self.teachers, sensors, mask, self.config, self.class_vectors,
                                self.plan)
        self.outputs.save(key, computed.pack(), computed.layout())
        return computed

    def finish(self) -> None:
        super().finish()
        if self.outputs is not None:
            self.outputs.record()
            looked = self.outputs.hits + self.outputs.misses
            self.ctx.log(f"teacher outputs: {self.outputs.hits} of {looked} student batches "
                         f"read from {self.outputs.directory}")

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, dataset: ClipDataset, split: str) -> dict[str, float]:
        logits, labels = predict_student(self.model, dataset, self.config, self.ctx)
        metrics = {f"student/{split}_acc": topk_correct(logits, labels, 1) / max(len(labels), 1)}
        if len(labels):  # cross-entropy of the student's own prediction, no distillation
            metrics[f"student/{split}_loss"] = float(F.cross_entropy(logits, labels))
            metrics[f"student/{split}_p_true"] = true_class_probability(logits, labels)
        if self.bundle.num_classes > 5:
            metrics[f"student/{split}_top5"] = topk_correct(logits, labels, 5) / max(len(labels), 1)
        return metrics


@torch.no_grad()
def predict_student(model, dataset: ClipDataset, config: ExperimentConfig, ctx: RunContext):
    """Logits (N, K) and labels (N,) in index order; segment centres, deterministic TRN."""
    model.eval()
    loader = make_loader(dataset, config.student.batch_size, False, 0, 0, ctx.device)
    logits, labels = [], []
    for batch in loader:
        batch = ctx.to_device(batch)
        with ctx.autocast():
            logits.append(model(batch["frames"]).logits.float().cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(logits), torch.cat(labels)


def student_gflops(model: torch.nn.Module, segments: int, frame_size: int) -> float:
    """Forward GFLOPs of the student on one clip (for accuracy-vs-cost searches)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, segments, 3, frame_size, frame_size, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9
