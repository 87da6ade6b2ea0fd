"""Test-wide settings: loopback-only Ray, no hub downloads, a small thread budget."""

from __future__ import annotations

import os

# Single-node Ray on 127.0.0.1 only (see docs/cluster.md); nothing may reach a hub.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A local ray.init() would otherwise write ~/.ray/auth_token and turn token mode on.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import torch  # noqa: E402

# Two shared cores: one torch thread per test process keeps timings stable.
torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny synthetic dataset (``tests/tiny.py``), written once per session."""
    from tests.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("data") / "tiny")
