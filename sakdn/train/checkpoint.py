"""Checkpoints: state dicts plus the flat config, always loaded with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (no pickled objects), so loading one
cannot run code. Writes are atomic (temporary file, then rename): an interrupted save never
leaves a half-written checkpoint that a resumed trial would trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sakdn.config import ExperimentConfig, from_flat
from sakdn.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
TEACHERS_NAME = "teachers.pt"
STUDENT_NAME = "student.pt"


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
    payload = load(path)
    return payload["state_dict"], from_flat(payload["config"], file=str(path)), payload["meta"]
