"""Checkpoints: state dicts plus the flat config, always loaded with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (no pickled objects), so loading one
cannot run code. Writes are atomic (temporary file, then rename): an interrupted save never
leaves a half-written checkpoint that a resumed trial would trust.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sakdn.config import ExperimentConfig, all_keys, from_flat
from sakdn.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
TEACHERS_NAME = "teachers.pt"
STUDENT_NAME = "student.pt"
STAGES = ("teacher", "student")  # in training order


@dataclass
class StageProgress:
    """What a stage needs to continue where it stopped: the weights, the optimiser and schedule
    state, and the best validation accuracy with its weights."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    best_acc: float
    best_state: dict[str, torch.Tensor] | None


@dataclass
class RunCheckpoint:
    """Where a training run stands, written after every epoch of either stage.

    Attributes:
        config: the flat configuration of the run (a checkpoint resumes only the same one).
        stage: the stage in progress, ``teacher`` or ``student``.
        epoch: that stage's last finished epoch (0: the stage has not started).
        history: every epoch record so far, both stages.
        teachers: the frozen teachers' weights, once the teacher stage is over.
        progress: the running stage's :class:`StageProgress` (None before its first epoch).
        teacher_cache_hit: whether the teachers came from the teacher store (None: no store).
    """

    config: dict[str, Any]
    stage: str
    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    teachers: dict[str, torch.Tensor] | None = None
    progress: StageProgress | None = None
    teacher_cache_hit: bool | None = None

    @property
    def position(self) -> tuple[int, int]:
        """(stage rank, epoch): a larger position is further into the run."""
        return STAGES.index(self.stage), self.epoch

    def save(self, path: str | Path) -> Path:
        return save(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> RunCheckpoint:
        """Read a run checkpoint; a file of another layout is a ConfigError naming it."""
        payload = load(path)
        if not isinstance(payload, dict) or payload.get("stage") not in STAGES:
            raise ConfigError("checkpoint", str(path), "not a run checkpoint (no stage)")
        try:
            progress = payload.get("progress")
            return cls(**{**payload, "progress": None if progress is None
                          else StageProgress(**progress)})
        except TypeError as err:
            raise ConfigError("checkpoint", str(path), f"not a run checkpoint ({err})") from None


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; a file that is not one is a ConfigError naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError("checkpoint", str(path), "file not found") from None
    except Exception as err:  # unpickling errors come in many types
        raise ConfigError("checkpoint", str(path), f"not a loadable checkpoint ({err})") from None


def save_model(path: str | Path, model: torch.nn.Module, config: ExperimentConfig,
               meta: dict[str, Any]) -> Path:
    """A model file: its state dict, the flat config that builds it, and metadata."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save(path, {"state_dict": state, "config": config.to_flat(), "meta": meta})


def load_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], ExperimentConfig, dict]:
    """A model file's state dict, config and metadata. Keys this version no longer knows (a
    model saved by an older version) are dropped with a warning: they cannot change how the
    saved weights are built, since every key that shapes a model still exists."""
    payload = load(path)
    known = set(all_keys())
    flat = {k: v for k, v in payload["config"].items() if k in known}
    dropped = sorted(set(payload["config"]) - known)
    if dropped:
        warnings.warn(f"{path}: ignoring configuration keys this version does not know: "
                      + ", ".join(dropped), stacklevel=2)
    return payload["state_dict"], from_flat(flat, file=str(path)), payload["meta"]
