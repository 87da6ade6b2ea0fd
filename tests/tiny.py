"""The tiny configuration and dataset every test trains on: the smoke experiment's.

``experiments/synthetic_smoke.yaml`` (its training sections) on the synthetic dataset's
``tiny`` preset: 3 classes × 4 subjects × 2 repetitions of 1 s at 32 px. Tests change only what
they are about; ``benchmarks/harness.py`` takes its quick-mode sizes from the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sakdn.config import ExperimentConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "synthetic_smoke.yaml"


def write_tiny(root: Path) -> Path:
    from sakdn.data.synthetic import PRESETS, write_synthetic

    return write_synthetic(root, **PRESETS["tiny"])


def tiny_config(root: Path, tmp: Path, **overrides: Any) -> ExperimentConfig:
    """The smoke experiment on ``root``, caches and outputs under ``tmp``; ``overrides`` are
    dotted keys (``tiny_config(root, tmp, **{"student.epochs": 3})``)."""
    return load_config(SMOKE, {
        "data.root": str(root), "data.cache_dir": str(tmp / "cache"),
        "train.output_dir": str(tmp / "run"), "train.progress": False, **overrides,
    })
