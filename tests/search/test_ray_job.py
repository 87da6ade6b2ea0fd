"""``ray job submit --working-dir . -- sakdn search ...`` against a local token-protected head.

The head runs loopback-only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) on free ports, in its own
temp dir, under ``ray start --block`` so that the test stops exactly the processes it started
(``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.tiny import REPO
from tests.processes import kill_processes_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def _ray(*args: str, env: dict, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.mark.timeout(1200)
def test_a_search_submitted_as_a_ray_job_succeeds(tiny_root: Path, tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    ray_tmp = Path(tempfile.mkdtemp(prefix="skj", dir="/tmp"))  # short: Ray's socket paths
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    (gcs, dash, client_port, agent_listen, agent_grpc, metrics, runtime_env, node_manager,
     object_manager) = _free_ports(9)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    address = f"http://127.0.0.1:{dash}"
    store = tmp_path / "store"
    head_log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={ray_tmp}",
         "--disable-usage-stats", f"--ray-client-server-port={client_port}",
         f"--dashboard-agent-listen-port={agent_listen}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={runtime_env}", f"--node-manager-port={node_manager}",
         f"--object-manager-port={object_manager}"],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while _ray("job", "list", "--address", address, env=env, timeout=60).returncode != 0:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.time() < deadline, "the Jobs API did not come up"
            time.sleep(2)
        # a client without the token is refused
        anonymous = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN_PATH"}
        refused = _ray("job", "list", "--address", address, env=anonymous, timeout=60)
        assert refused.returncode != 0
        assert "token" in (refused.stdout + refused.stderr).lower()

        job_id = f"sakdn-{secrets.token_hex(4)}"
        submitted = _ray(
            "job", "submit", "--address", address, "--submission-id", job_id,
            "--working-dir", ".", "--",
            "sakdn", "search", "experiments/synthetic_smoke.yaml",
            "--set", f"data.root={tiny_root}", "--set", f"search.storage_path={store}",
            "--set", "search.num_samples=2",
            env=env, cwd=REPO, timeout=900,
        )
        output = submitted.stdout + submitted.stderr
        status = _ray("job", "status", "--address", address, job_id, env=env)
        assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower(), (
            output[-5000:])
        assert "search synthetic_smoke: 2 trials" in output
        # the uploaded working dir left out what .gitignore names (.venv, data, runs)
        packages = [p for p in ray_tmp.rglob("working_dir_files/_ray_pkg_*") if p.is_dir()]
        assert packages
        for package in packages:
            assert (package / "sakdn").is_dir()
            assert not (package / ".venv").exists() and not (package / "runs").exists()
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
        head_log.close()
        kill_processes_under(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)

    study = optuna.load_study(study_name="synthetic_smoke",
                              storage=f"sqlite:///{store / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags.get("sakdn.role") for r in runs) == ["parent", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
