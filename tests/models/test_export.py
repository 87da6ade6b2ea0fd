"""The student as a ``torch.export`` program (what ``train --from-best`` registers): every student
the configuration can build exports, and the program computes the student's logits for any batch
size; a network that does not export fails with torch's reason."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sakdn.config import StudentConfig
from sakdn.models.export import ExportError, StudentLogits, export_student
from sakdn.models.student import Student

CHOICES = {f.name: f.metadata["choices"] for f in dataclasses.fields(StudentConfig)
           if "choices" in f.metadata}
SEGMENTS, SIZE = 3, 32  # 32 px: googlenet's smallest side is 15


@pytest.mark.parametrize("consensus", CHOICES["consensus"])
@pytest.mark.parametrize("backbone", CHOICES["backbone"])
def test_every_configurable_student_exports_with_a_free_batch_dimension(
    backbone: str, consensus: str
) -> None:
    torch.manual_seed(0)
    config = StudentConfig(backbone=backbone, width=4, segments=SEGMENTS, consensus=consensus,
                           weights="", partial_bn=True)
    student = Student(config, num_classes=5, semantic_dim=8, frame_size=SIZE).eval()
    program = export_student(student, SEGMENTS, SIZE).module()
    for batch in (1, 3):  # the example had 2: neither size is baked into the program
        frames = torch.randn(batch, SEGMENTS, 3, SIZE, SIZE)
        with torch.no_grad():
            expected = student(frames).logits
            got = program(frames)
        assert got.shape == (batch, 5)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_logits_module_is_the_students_eval_logits() -> None:
    config = StudentConfig(backbone="small_cnn", width=4, segments=2, consensus="avg",
                           weights="", dropout=0.9)
    student = Student(config, num_classes=3, semantic_dim=8, frame_size=SIZE)
    module = StudentLogits(student).eval()
    assert not student.training  # dropout off: the logits are deterministic
    frames = torch.randn(2, 2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(module(frames), module(frames))
        assert torch.equal(module(frames), student(frames).logits)


class _ValueBranch(nn.Module):
    """Branches on a tensor's value: torch.export cannot trace that without a ``torch.cond``."""

    def forward(self, frames: torch.Tensor):
        logits = frames.flatten(1)[:, :2]
        if logits.sum() > 0:
            logits = -logits
        return type("Out", (), {"logits": logits})()


def test_a_student_that_does_not_export_fails_with_torchs_reason() -> None:
    with pytest.raises(ExportError) as err:
        export_student(_ValueBranch(), 2, 16)
    message = str(err.value)
    assert message.startswith("torch.export cannot export the student (_ValueBranch, frames "
                              "(B, 2, 3, 16, 16)): ")
    assert "data-dependent" in message, message  # torch's reason, not just "failed"
