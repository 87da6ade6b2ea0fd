"""The trained student as a ``torch.export`` program: frames in, logits out.

Why: a pickled module names its class (sakdn's ``Student``), so loading it needs this package
and unpickling runs whatever code the file names. An exported program is a graph of ATen
operators plus tensors; ``torch.export.load`` (and ``mlflow.pytorch.load_model`` on MLflow's
``pt2`` format) rebuild it with torch alone. Only the inference path is exported: the logits
of the eval-mode student (no semantic vector, no GSDM maps).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sakdn.errors import SakdnError

MAX_BATCH = 1024  # the exported batch dimension's upper bound
EXAMPLE_BATCH = 2  # a batch of 1 would fix B = 1 in the program (torch.export specialises 0/1)


class ExportError(SakdnError):
    """The student cannot be exported; says why (torch.export's own reason)."""


class StudentLogits(nn.Module):
    """frames (B, S, 3, H, W) → logits (B, K): the student's eval-mode inference path."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, frames: Tensor) -> Tensor:
        return self.student(frames).logits


def example_frames(segments: int, frame_size: int, batch: int = EXAMPLE_BATCH) -> Tensor:
    """Zero frames (batch, S, 3, H, W): only their shape matters to the export, and zeros keep
    MLflow's stored JSON input example small."""
    return torch.zeros(batch, segments, 3, frame_size, frame_size)


def export_student(
    student: nn.Module, segments: int, frame_size: int
) -> torch.export.ExportedProgram:
    """The eval-mode student's logits as a program taking any batch of 1 … ``MAX_BATCH`` clips.

    Raises ``ExportError`` naming torch's reason when the student does not export (e.g. control
    flow on tensor values), or when its batch dimension cannot stay free.
    """
    module = StudentLogits(student).eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(
            module, (example_frames(segments, frame_size),),
            dynamic_shapes={"frames": {0: batch}},
        )
    except Exception as err:  # torch raises many types (UserError, Unsupported, guard errors)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(
            f"torch.export cannot export the student ({type(student).__name__}, frames "
            f"(B, {segments}, 3, {frame_size}, {frame_size})): {type(err).__name__}: {reason}"
        ) from err
