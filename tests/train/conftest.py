"""Shared fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """3 classes × 4 subjects × 2 repetitions of 1 s, 32-px frames (one copy per test module)."""
    from sakdn.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("train-data") / "tiny"
    return write_synthetic(root, classes=3, subjects=4, repetitions=2, frame_size=32, duration=1.0)
