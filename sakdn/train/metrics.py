"""Classification metrics computed from logits and labels."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Number of samples whose label is among the k highest logits."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # (B, k)
    return int((top == labels[:, None]).any(dim=-1).sum())


LATE_EPOCHS = 5  # student/val_acc_last5: a validation figure that selects nothing


def late_mean(values: list[float], epochs: int = LATE_EPOCHS) -> float:
    """Mean of the last ``epochs`` values (all of them when fewer): the late validation accuracy,
    smoother than the best epoch, which is the maximum of noisy values and so biased upwards."""
    late = list(values)[-epochs:]
    return sum(late) / len(late)


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean softmax probability of the true class, (1/N) Σ_i softmax(z_i)[y_i]: the accuracy
    expected from sampling the model's prediction, 1/K for a uniform guess. Unlike accuracy it
    moves while the argmax still sits on one class (the first student epochs)."""
    if not len(labels):
        return float("nan")
    return float(logits.float().softmax(dim=-1).gather(1, labels.long()[:, None]).mean())


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    pred = logits.argmax(dim=-1)
    flat = labels.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
