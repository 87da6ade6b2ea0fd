"""Pieces shared by both stages: device, precision, optimisers, schedules, divergence guard."""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from sakdn.errors import TrialDiverged
from sakdn.seeding import derive_seed
from sakdn.train.checkpoint import StageProgress
from sakdn.train.metrics import topk_correct


@dataclass
class EpochReport:
    """What a run tells its callback after every epoch of either stage.

    ``step`` grows by one per epoch across both stages (teacher epochs first), so a search
    sees one monotone series; ``checkpoint_dir`` holds the state to resume from.

    ``replayed``: an epoch an earlier attempt of this run trained, told again when the run
    resumes from its checkpoint. The checkpoint is written before the callback runs, so an
    attempt killed in between left an epoch its callback never recorded; a callback that
    keeps records (MLflow) takes what it lacks from the replay, one that reports progress
    (Tune) ignores it.
    """

    stage: str
    epoch: int
    step: int
    metrics: dict[str, float]
    checkpoint_dir: Path | None = None
    done: bool = False  # the run's last epoch
    stage_end: bool = False  # the stage's last epoch
    replayed: bool = False  # from the resumed checkpoint's history, not trained now


Callback = Callable[[EpochReport], None]


@dataclass
class RunContext:
    """Device, precision and logging shared by both stages of one run."""

    device: torch.device
    amp: bool
    channels_last: bool
    seed: int
    progress: bool
    log: Callable[[str], None] = print
    history: list[dict[str, Any]] = field(default_factory=list)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when enabled; a no-op on CPU."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        non_blocking = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=non_blocking) for k, v in batch.items()}


class StageState:
    """What both stages share: the epoch loop, the best-validation weights, a resumable state.

    A stage supplies its model, optimiser, schedule, data and one ``step`` per batch; the
    loop (:meth:`run_epoch`) is the same for both, so seeding, divergence checks, the update
    and the epoch's averages cannot drift apart between the stages.
    """

    name: str  # "teacher" | "student": the metric prefix and the seed namespace
    ctx: RunContext
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    best_acc: float
    best_state: dict[str, torch.Tensor] | None
    train_set: Any
    val_set: Any
    batch_size: int
    num_workers: int

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch's loss terms (``loss`` is the total) and the logits its train accuracy uses."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Per-epoch set-up beyond the shared seeding (e.g. augmentation or relation seeds)."""

    def before_backward(self, index: int, terms: dict[str, torch.Tensor]) -> None:
        """Look at a batch's finite terms before the update (e.g. gradient diagnostics)."""

    def epoch_extras(self) -> dict[str, float]:
        """Metrics the stage gathered during the epoch, besides the averaged loss terms."""
        return {}

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One training epoch, then validation: seeded order, one update per batch."""
        ctx = self.ctx
        seed_epoch(ctx.seed, self.name, epoch)
        self.begin_epoch(epoch)
        loader = make_loader(self.train_set, self.batch_size, True,
                             derive_seed(ctx.seed, self.name, epoch, "loader"), self.num_workers,
                             ctx.device)
        self.model.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        bar = progress_bar(loader, len(loader), f"{self.name} {epoch}", ctx.progress)
        for index, batch in enumerate(bar):
            batch = ctx.to_device(batch)
            with ctx.autocast():
                terms, logits = self.step(batch)
            check_finite(self.name, epoch, terms)
            self.before_backward(index, terms)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            n = len(batch["label"])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            correct += topk_correct(logits.detach(), batch["label"], 1)
            seen += n
        metrics = self.end_epoch(sums, correct, seen)
        metrics.update({f"{self.name}/{k}": v for k, v in self.epoch_extras().items()})
        return metrics

    def evaluate(self, dataset: Any, split: str) -> dict[str, float]:
        raise NotImplementedError

    def end_epoch(self, sums: dict[str, float], correct: int, seen: int) -> dict[str, float]:
        """Step the schedule, average the epoch's loss terms, validate, keep the best weights."""
        prefix = self.name
        self.schedule.step()
        metrics = {f"{prefix}/{k}": v / max(seen, 1) for k, v in sums.items()}
        metrics[f"{prefix}/train_acc"] = correct / max(seen, 1)
        metrics[f"{prefix}/lr"] = self.optimizer.param_groups[0]["lr"]
        if self.val_set is not None:
            metrics.update(self.evaluate(self.val_set, "val"))
            acc = metrics[f"{prefix}/val_acc"]
            if acc > self.best_acc:
                self.best_acc = acc
                self.best_state = copy.deepcopy(self.model.state_dict())
        return metrics

    def finish(self) -> None:
        """Keep the best-validation weights (the last ones when there is no validation)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state(self) -> StageProgress:
        return StageProgress(self.model.state_dict(), self.optimizer.state_dict(),
                             self.schedule.state_dict(), self.best_acc, self.best_state)

    def load_state(self, state: StageProgress) -> None:
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.schedule.load_state_dict(state.schedule)
        self.best_acc = state.best_acc
        self.best_state = state.best_state


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from sakdn.errors import ConfigError

        raise ConfigError("train.device", name, "CUDA is not available on this machine")
    return torch.device(name)


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int, device: torch.device
) -> DataLoader:
    """A loader whose order depends only on ``seed``; drops a last batch of one sample
    (SPAMFM's batch graph and BatchNorm need at least two)."""
    drop_last = shuffle and len(dataset) % batch_size == 1 and len(dataset) > batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=False,
    )


def make_optimizer(
    name: str, groups: Iterable[dict] | Iterable[torch.nn.Parameter], lr: float,
    weight_decay: float, momentum: float = 0.9,
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, epochs: int, decay_at: float, gamma: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Step decay at a fraction of the epochs, stepped once per epoch.

    The reference code stepped its MultiStepLR per iteration, so "decay at 50" fired after 50
    batches (method doc P6); milestones here are epochs.
    """
    milestone = int(round(decay_at * epochs))
    milestones = [milestone] if 0 < milestone < epochs else []
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def check_finite(stage: str, epoch: int, terms: dict[str, torch.Tensor]) -> None:
    """Stop the run with TrialDiverged when any loss term is NaN or infinite; the total comes
    last, so the error names the term that went wrong."""
    for name in sorted(terms, key=lambda n: n == "loss"):
        v = float(terms[name].detach())
        if not math.isfinite(v):
            raise TrialDiverged(stage, epoch, name, v)


def seed_epoch(seed: int, stage: str, epoch: int) -> int:
    """Reseed torch at the start of every epoch, so a resumed run repeats the same epochs."""
    s = derive_seed(seed, stage, epoch)
    torch.manual_seed(s)
    return s


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not enabled)
