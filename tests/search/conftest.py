"""Fixtures for the search tests: the overrides that turn ``experiments/synthetic_smoke.yaml``
into a search of the tiny dataset (``tiny_root``, tests/conftest.py) inside ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import REPO

SMOKE_SPACE = REPO / "search_spaces" / "smoke.yaml"


@pytest.fixture
def smoke_overrides(tiny_root: Path, tmp_path: Path) -> list[str]:
    """``--set`` items: the tiny dataset, storage in ``tmp_path``, the space by absolute path."""
    return [
        f"data.root={tiny_root}",
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


def process_env(ray_tmp: Path) -> dict[str, str]:
    """The environment of a search run as a subprocess: loopback Ray in ``ray_tmp``, no token,
    no tracking URI or Ray address inherited."""
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return env
