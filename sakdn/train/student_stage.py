"""Stage 2: distil the frozen teachers into the video student.

L_S = CE(o, y) + λ_ST·ST + λ_SP·SP + λ_GSDM·GSDM (+ λ_Gram·batch-Gram), method doc §6.1.

Fixes of the reference code (method doc §8), each where it happens below:
- P1: the student's clip and the teachers' sensor images come from the same recording.
- P2: GSDM keeps the student side in autograd (only the teacher side is detached).
- P10/P11: the ablated (zero-input) passes run separately under ``no_grad``; the student's
  ablated pass runs in eval mode so its BatchNorm statistics are untouched, and the teachers'
  real features are computed on the real batch alone (as in teacher training).

Everything the frozen teachers contribute to a batch (:class:`TeacherBatch`: logits, fc2
features, the logits of their ablated pass, the channel sums of their stage maps) is a function
of the teacher set and the batch's samples in order; with a stored teacher set it is read from
the store's :class:`~sakdn.train.teacher_store.TeacherOutputs` instead of recomputed. The
student's own ablated pass depends on the student's current weights and always runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sakdn import losses
from sakdn.config import ExperimentConfig, parse_subset
from sakdn.data.dataset import ClipDataset
from sakdn.models.student import Student
from sakdn.models.teacher import TeacherEnsemble
from sakdn.train.data import DataBundle, clip_dataset
from sakdn.train.loop import (
    RunContext,
    StageState,
    check_finite,
    make_loader,
    make_optimizer,
    make_schedule,
    progress_bar,
    seed_epoch,
)
from sakdn.seeding import derive_seed
from sakdn.train.metrics import topk_correct
from sakdn.train.teacher_store import Layout, TeacherOutputs

STAGE = "student"
PAIRS = ("1", "2", "3", "4", "5")
OUTPUTS_FORMAT = "1"  # bump when TeacherBatch's stored fields change


@dataclass
class TeacherBatch:
    """What the frozen teachers give one student batch of B samples (M teachers).

    Attributes:
        logits: (B, M, K) float32 teacher logits.
        semantic: (B, M, D) float32 fused fc2 features.
        ablated: (B, M, K) float32 logits of the all-zero-input pass (GSDM weights), or None.
        maps: per conv stage (5), (B, M, H, W) float32 channel sums Σ_c A of the fused stage
            output: all that GSDM needs of a teacher map, since its weight w_i is per sample.
    """

    logits: torch.Tensor
    semantic: torch.Tensor
    ablated: torch.Tensor | None
    maps: list[torch.Tensor]

    def layout(self) -> Layout:
        fields = [("logits", self.logits), ("semantic", self.semantic), ("ablated", self.ablated)]
        fields += [(f"map{p + 1}", m) for p, m in enumerate(self.maps)]
        return [(name, tuple(int(n) for n in t.shape[1:])) for name, t in fields]

    def pack(self) -> np.ndarray:
        """(B, F) float32: every field flattened per sample, in ``layout`` order."""
        parts = [self.logits, self.semantic, self.ablated, *self.maps]
        return torch.cat([t.detach().float().flatten(1) for t in parts], dim=1).cpu().numpy()

    @classmethod
    def unpack(cls, array: np.ndarray, layout: Layout, device: torch.device) -> TeacherBatch:
        flat = torch.from_numpy(np.array(array, dtype=np.float32)).to(device)
        tensors, start = {}, 0
        for name, shape in layout:
            width = int(np.prod(shape))
            tensors[name] = flat[:, start:start + width].reshape(-1, *shape).contiguous()
            start += width
        maps = [tensors[f"map{p + 1}"] for p in range(len(layout) - 3)]
        return cls(tensors["logits"], tensors["semantic"], tensors["ablated"], maps)


def outputs_salt(ctx: RunContext) -> str:
    """What, besides the teacher set and the batch, changes the teachers' floating-point
    outputs: device, bf16 autocast, memory format, CPU threads, the stored format."""
    amp = ctx.amp and ctx.device.type == "cuda"
    return (f"format={OUTPUTS_FORMAT}|device={ctx.device.type}|amp={amp}"
            f"|channels_last={ctx.channels_last}|threads={torch.get_num_threads()}")


@torch.no_grad()
def run_teachers(
    teachers: TeacherEnsemble, sensors: torch.Tensor, mask: torch.Tensor, ablated: bool
) -> TeacherBatch:
    """The teachers' forward pass on the real batch alone (P11) and, with ``ablated``, on its
    all-zero copy; the same batch composition as the student's (SPAMFM is batch-dependent)."""
    out = teachers(sensors, mask)
    maps = [torch.stack([t.float().sum(dim=1, dtype=torch.float32) for t in stage], dim=1)
            for stage in out.stages]  # each (B, M, H, W)
    abl = teachers(torch.zeros_like(sensors), mask).logits.float() if ablated else None
    return TeacherBatch(out.logits.float(), out.semantic.float(), abl, maps)


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

    def __init__(
        self,
        config: ExperimentConfig,
        bundle: DataBundle,
        ctx: RunContext,
        teachers: TeacherEnsemble,
        outputs: TeacherOutputs | None = None,
    ) -> None:
        self.config, self.bundle, self.ctx = config, bundle, ctx
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
        self.train_set = clip_dataset(config, bundle, bundle.train, train=True)
        self.val_set = clip_dataset(config, bundle, bundle.val) if len(bundle.val) else None
        vectors = bundle.class_vectors
        self.class_vectors = (
            torch.as_tensor(vectors, dtype=torch.float32, device=ctx.device)
            if vectors is not None
            else None
        )
        self.pairs = [PAIRS.index(p) for p in parse_subset(config.distill.gsdm_pairs, PAIRS)]
        self.best_acc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ training
    def run_epoch(self, epoch: int) -> dict[str, float]:
        sc, ctx = self.config.student, self.ctx
        seed_epoch(ctx.seed, STAGE, epoch)
        for module in self.model.modules():  # TRN relation sampling: reseeded per epoch too
            if isinstance(getattr(module, "generator", None), torch.Generator):
                module.generator.manual_seed(derive_seed(ctx.seed, STAGE, epoch, "relations"))
        self.train_set.set_epoch(epoch)
        loader = make_loader(
            _WithIndex(self.train_set), sc.batch_size, True, ctx.seed * 104729 + epoch,
            self.config.data.num_workers, ctx.device,
        )
        self.model.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        for batch in progress_bar(loader, len(loader), f"student {epoch}", ctx.progress):
            batch = ctx.to_device(batch)
            with ctx.autocast():
                terms, logits = self.distillation_step(batch)
            check_finite(STAGE, epoch, terms)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            n = len(batch["label"])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            correct += topk_correct(logits.detach(), batch["label"], 1)
            seen += n
        return self.end_epoch("student", sums, correct, seen)

    def distillation_step(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch's named loss terms {'loss', 'ce', 'st', 'sp', 'gsdm', 'sp_gram'}."""
        dc = self.config.distill
        frames, mask, labels = batch["frames"], batch["mask"], batch["label"]
        need_maps = dc.lambda_gsdm > 0 and bool(self.pairs)
        t_out = self.teacher_batch(batch, ablated=need_maps and self._ablation_variant() != "none")
        s_out = self.model(frames, return_maps=need_maps)
        t_logits, t_sem = t_out.logits, t_out.semantic  # (B, M, K), (B, M, D)
        weights = teacher_weights(t_logits, labels, mask, dc.teacher_aggregation)  # (B, M)
        terms: dict[str, torch.Tensor] = {"ce": F.cross_entropy(s_out.logits.float(), labels)}
        zero = s_out.logits.new_zeros(()).float()
        terms["st"] = (
            weighted_over_teachers(
                lambda m, rows: losses.soft_target(
                    s_out.logits.float()[rows], t_logits[rows, m], dc.temperature
                ),
                weights,
            )
            if dc.lambda_st > 0
            else zero
        )
        terms["sp"] = (
            weighted_over_teachers(
                lambda m, rows: losses.semantic_match(s_out.semantic.float()[rows], t_sem[rows, m]),
                weights,
            )
            if dc.lambda_sp > 0
            else zero
        )
        terms["sp_gram"] = (
            weighted_over_teachers(
                lambda m, rows: losses.similarity_preserving(
                    s_out.semantic.float()[rows], t_sem[rows, m]
                ),
                weights,
            )
            if dc.lambda_sp_gram > 0
            else zero
        )
        terms["gsdm"] = self.gsdm(frames, mask, s_out, t_out) if need_maps else zero
        terms["loss"] = (
            terms["ce"]
            + dc.lambda_st * terms["st"]
            + dc.lambda_sp * terms["sp"]
            + dc.lambda_gsdm * terms["gsdm"]
            + dc.lambda_sp_gram * terms["sp_gram"]
        )
        return terms, s_out.logits

    def teacher_batch(self, batch: dict[str, torch.Tensor], ablated: bool) -> TeacherBatch:
        """The teachers' outputs on this batch: read from the stored outputs when a batch with
        the same samples in the same order was computed before, else computed (and stored)."""
        sensors, mask = batch["sensors"], batch["mask"]
        if self.outputs is None or "index" not in batch:
            return run_teachers(self.teachers, sensors, mask, ablated)
        rows = self.train_set.rows[batch["index"].cpu().numpy()]
        key = self.outputs.key(rows)
        stored = self.outputs.load(key)
        if stored is not None and len(stored) == len(rows):
            self.outputs.hits += 1
            return TeacherBatch.unpack(stored, self.outputs.layout(), self.ctx.device)
        self.outputs.misses += 1
        computed = run_teachers(self.teachers, sensors, mask, ablated=True)
        self.outputs.save(key, computed.pack(), computed.layout())
        return computed

    def _ablation_variant(self) -> str:
        variant = self.config.distill.ablation_weight
        if variant in ("plain", "graph") and self.class_vectors is None:
            return "prob_drop"  # no class vectors (semantics.provider none)
        return variant

    def gsdm(self, frames, mask, s_out, t_out: TeacherBatch) -> torch.Tensor:
        """Graph-guided semantically discriminative map loss (method doc §6.3–6.4)."""
        dc = self.config.distill
        variant = self._ablation_variant()
        b, m_count = t_out.logits.shape[:2]
        if variant == "none":
            s_w = frames.new_ones(b).float()
            t_w = frames.new_ones(m_count, b).float()
        else:
            with torch.no_grad():
                was_training = self.model.training
                self.model.eval()  # the ablated pass never updates BatchNorm statistics (P10)
                s_abl = self.model(torch.zeros_like(frames)).logits.float()
                self.model.train(was_training)
            kw = dict(
                class_vectors=self.class_vectors, variant=variant, relu=dc.ablation_relu,
                sigma2=dc.graph_sigma2,
            )
            s_w = losses.ablation_weights(s_out.logits.detach().float(), s_abl, **kw)
            t_w = torch.stack(
                [
                    losses.ablation_weights(t_out.logits[:, m], t_out.ablated[:, m], **kw)
                    for m in range(m_count)
                ]
            )
        student_maps = [s_out.maps[p].float() for p in self.pairs]
        teacher_maps = [[t_out.maps[p][:, m] for p in self.pairs] for m in range(m_count)]
        return losses.gsdm_loss(
            student_maps, s_w, teacher_maps, t_w, mask, map_norm=dc.map_norm,
            map_resize=dc.map_resize,
        )

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
        if self.bundle.num_classes > 5:
            metrics[f"student/{split}_top5"] = topk_correct(logits, labels, 5) / max(len(labels), 1)
        return metrics



def teacher_weights(
    t_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, mode: str
) -> torch.Tensor:
    """(B, M) weights of each present teacher per sample, summing to 1 over teachers.

    ``mean``: uniform over the present teachers (method doc §6.1); ``confidence``: each
    teacher weighted by its probability of the true class.
    """
    present = mask.float()
    if mode == "confidence":
        p_true = t_logits.softmax(-1).gather(-1, labels[:, None, None].expand(-1, t_logits.shape[1], 1))
        raw = p_true[..., 0] * present
    else:
        raw = present
    return raw / raw.sum(dim=1, keepdim=True).clamp_min(1e-12)


def weighted_over_teachers(term, weights: torch.Tensor) -> torch.Tensor:
    """Σ_m (mean over the batch of w_bm) · term_m, each term on the rows where m is present."""
    total = weights.new_zeros(())
    for m in range(weights.shape[1]):
        rows = weights[:, m] > 0
        if rows.any():
            total = total + weights[:, m].mean() * term(m, rows)
    return total


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
