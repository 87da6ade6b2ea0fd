"""Classification metrics from logits, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from sakdn.train.metrics import (
    confusion_matrix, late_mean, topk_correct, true_class_probability,
)


def test_true_class_probability_by_hand() -> None:
    # softmax([ln 3, 0]) = [0.75, 0.25]; softmax([0, 0]) = [0.5, 0.5]
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert true_class_probability(logits, labels) == pytest.approx((0.75 + 0.5 + 0.25) / 3)
    uniform = torch.zeros(4, 8)  # a uniform guess over K classes: 1/K
    assert true_class_probability(uniform, torch.arange(4)) == pytest.approx(1 / 8)
    assert math.isnan(true_class_probability(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_true_class_probability_moves_while_the_argmax_does_not() -> None:
    labels = torch.tensor([1, 1, 0])
    before = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    after = torch.tensor([[1.0, 0.5], [1.0, 0.5], [1.0, 0.5]])  # same argmax, same accuracy
    assert topk_correct(before, labels, 1) == topk_correct(after, labels, 1) == 1
    assert true_class_probability(after, labels) > true_class_probability(before, labels)


def test_topk_and_confusion_by_hand() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 1])
    assert topk_correct(logits, labels, 1) == 1
    assert topk_correct(logits, labels, 2) == 2
    # argmax [0, 1, 0]; rows are the true classes 0, 1, 2
    assert confusion_matrix(logits, labels, 3).tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_late_mean_by_hand() -> None:
    assert late_mean([0.1, 0.9, 0.2, 0.4, 0.4, 0.4, 0.6]) == pytest.approx(2.0 / 5)
    assert late_mean([0.3, 0.5]) == pytest.approx(0.4)  # fewer epochs than five: all of them
