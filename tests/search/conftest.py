"""Fixtures for the search tests: a tiny synthetic dataset (once per session) and the
overrides that turn ``experiments/synthetic_smoke.yaml`` into a search inside ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "experiments" / "synthetic_smoke.yaml"
SMOKE_SPACE = REPO / "search_spaces" / "smoke.yaml"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """3 classes × 4 subjects × 2 repetitions of 1 s, 32-px frames (written in ~2 s)."""
    from sakdn.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("data") / "tiny"
    return write_synthetic(root, classes=3, subjects=4, repetitions=2, frame_size=32,
                           duration=1.0)


@pytest.fixture
def smoke_overrides(tiny_dataset: Path, tmp_path: Path) -> list[str]:
    """``--set`` items: the tiny dataset, storage in ``tmp_path``, the space by absolute path."""
    return [
        f"data.root={tiny_dataset}",
        f"search.storage_path={tmp_path / 'store'}",
        f"search.space={SMOKE_SPACE}",
    ]


@pytest.fixture
def search_env(monkeypatch) -> None:
    """What run_search sets for itself, set here so that it is undone after the test."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
                        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
        monkeypatch.setenv(name, value)  # tracking.configure_http's values, undone afterwards
