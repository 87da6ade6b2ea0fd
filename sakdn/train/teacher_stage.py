"""Stage 1: train one teacher per sensor jointly through SPAMFM on paired recordings."""

from __future__ import annotations

from typing import NamedTuple

import torch

from sakdn.config import ExperimentConfig
from sakdn.data.dataset import RecordingDataset
from sakdn.models.teacher import TeacherEnsemble, teacher_loss
from sakdn.train.data import DataBundle
from sakdn.train.loop import RunContext, StageState, make_loader, make_optimizer, make_schedule
from sakdn.train.metrics import topk_correct

def build_teachers(config: ExperimentConfig, bundle: DataBundle) -> TeacherEnsemble:
    return TeacherEnsemble(
        config.teacher,
        num_sensors=bundle.num_sensors,
        num_classes=bundle.num_classes,
        semantic_dim=bundle.semantic_dim,
        image_size=config.gaf.image_size,
        weights_dir=config.train.weights_dir,
    )


class TeacherStage(StageState):
    """Owns the teachers, their optimiser and schedule; one ``run_epoch`` per epoch.

    Batches are paired: every branch sees the sensors of the same recordings in the same
    order, so SPAMFM fuses aligned samples (the reference code shuffled each sensor's loader
    independently, method doc P1). Model selection uses the fused validation accuracy (never
    the test split, P12).
    """

    name = "teacher"

    def __init__(self, config: ExperimentConfig, bundle: DataBundle, ctx: RunContext) -> None:
        self.config, self.bundle, self.ctx = config, bundle, ctx
        tc = config.teacher
        self.model = build_teachers(config, bundle).to(ctx.device)
        if ctx.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(tc.optimizer, self.model.parameters(), tc.lr,
                                        tc.weight_decay)
        self.schedule = make_schedule(self.optimizer, tc.epochs, tc.lr_decay_at, tc.lr_gamma)
        self.train_set = RecordingDataset(bundle.data, bundle.train)
        self.batch_size, self.num_workers = tc.batch_size, config.data.num_workers
        self.val_set = RecordingDataset(bundle.data, bundle.val) if len(bundle.val) else None
        vectors = bundle.class_vectors
        self.class_vectors = (
            torch.as_tensor(vectors, dtype=torch.float32, device=ctx.device)
            if vectors is not None
            else None
        )
        self.best_acc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = self.model(batch["sensors"], batch["mask"])
        terms = teacher_loss(out, batch["label"], self.class_vectors, self.config.teacher)
        return terms, fused_logits(out.logits, batch["mask"])


    def evaluate(self, dataset: RecordingDataset, split: str) -> dict[str, float]:
        return evaluate_teachers(
            self.model, dataset, self.config, self.ctx, self.bundle.index.sensor_names, split,
            self.bundle.class_vectors,
        )



@torch.no_grad()
def evaluate_teachers(
    model, dataset, config, ctx, sensor_names, split: str, class_vectors=None
) -> dict[str, float]:
    """Fused and per-sensor accuracy, and how close the fused fc2 features come to the class
    vectors; batches in index order at the training batch size (SPAMFM is batch-dependent, so
    evaluation batches are fixed and documented)."""
    pred = predict_teachers(model, dataset, config, ctx)
    metrics = {f"teacher/{split}_acc": accuracy(fused_logits(pred.logits, pred.mask), pred.labels)}
    for m, name in enumerate(sensor_names):
        metrics[f"teacher/{split}_acc_{name}"] = accuracy(pred.logits[:, m], pred.labels)
    if class_vectors is not None and len(pred.labels):
        key = "teacher/semantic_r2" if split == "val" else f"teacher/{split}_semantic_r2"
        metrics[key] = semantic_r2(pred.semantic, pred.labels, pred.mask,
                                   torch.as_tensor(class_vectors, dtype=torch.float32))
    return metrics


def semantic_r2(
    semantic: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor
) -> float:
    """R² = 1 − Σ ‖h − e_y‖² / Σ ‖e_y‖² over the present (sample, teacher) pairs.

    The share of the class vectors' energy the fused fc2 features h reproduce: 1 when h = e_y,
    0 when h is no closer than h = 0, negative when further. The SP loss pulls the student
    towards h, so h must be near e_y for SP to carry the class semantics.
    """
    e = vectors[labels][:, None, :].expand_as(semantic)  # (N, M, D)
    keep = mask.bool()[..., None].float()
    residual = ((semantic.float() - e) ** 2 * keep).sum()
    energy = (e**2 * keep).sum()
    return float(1.0 - residual / energy.clamp_min(1e-12))


def fused_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Combined teacher prediction: the sum of the present teachers' logits, (B, K)."""
    if mask is None:
        return logits.sum(dim=1)
    return (logits * mask[..., None].to(logits.dtype)).sum(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return topk_correct(logits, labels, 1) / max(len(labels), 1)


class TeacherPredictions(NamedTuple):
    """Teacher outputs over a dataset in index order."""

    logits: torch.Tensor  # (N, M, K)
    semantic: torch.Tensor  # (N, M, D) fused fc2 features
    labels: torch.Tensor  # (N,)
    mask: torch.Tensor  # (N, M) bool


@torch.no_grad()
def predict_teachers(
    model, dataset, config: ExperimentConfig, ctx: RunContext
) -> TeacherPredictions:
    """Every recording's teacher outputs, batched in index order at the training batch size."""
    model.eval()
    loader = make_loader(dataset, config.teacher.batch_size, False, 0, 0, ctx.device)
    logits, semantic, labels, masks = [], [], [], []
    for batch in loader:
        batch = ctx.to_device(batch)
        with ctx.autocast():
            out = model(batch["sensors"], batch["mask"])
        logits.append(out.logits.float().cpu())
        semantic.append(out.semantic.float().cpu())
        labels.append(batch["label"].cpu())
        masks.append(batch["mask"].cpu())
    return TeacherPredictions(torch.cat(logits), torch.cat(semantic), torch.cat(labels),
                              torch.cat(masks))
