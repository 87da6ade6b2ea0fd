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


@dataclass
class EpochReport:
    """What a run tells its callback after every epoch of either stage.

    ``step`` grows by one per epoch across both stages (teacher epochs first), so a search
    sees one monotone series; ``checkpoint_dir`` holds the state to resume from.
    """

    stage: str
    epoch: int
    step: int
    metrics: dict[str, float]
    checkpoint_dir: Path | None = None
    done: bool = False


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
    """What both stages share: the best-validation weights and a resumable state.

    Subclasses set ``model``, ``optimizer``, ``schedule``, ``best_acc`` and ``best_state``.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    best_acc: float
    best_state: dict[str, torch.Tensor] | None
    val_set: Any

    def end_epoch(self, prefix: str, sums: dict[str, float], correct: int, seen: int) -> dict:
        """Step the schedule, average the epoch's loss terms, validate, keep the best weights."""
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

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best_acc": self.best_acc,
            "best_state": self.best_state,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.best_acc = state["best_acc"]
        self.best_state = state["best_state"]


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
