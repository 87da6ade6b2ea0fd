"""The local multi-node cluster (cluster/local/*.sh): real Ray nodes in network namespaces.

One cluster (a head and two 1-CPU workers, each in its own namespace with its own address) is
started for the module; the tests then check, in order, the node addresses, a token-authenticated
Ray job whose tasks land on both workers, refusal of clients without the token, the MLflow
server as seen from the workers, its refusal of clients without a login, the failure of a
killed worker, and that stop.sh removes every namespace, link and process the start recorded.
Only the namespaces' own addresses are used.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "cluster" / "local"
BIN = Path(sys.executable).parent  # the venv's ray / mlflow / python


def _netns_usable() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return False, "'ip' (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return False, f"'ip netns' is unavailable: {probe.stderr.strip()}"
    return True, ""


_OK, _WHY = _netns_usable()
pytestmark = pytest.mark.skipif(not _OK, reason=_WHY)
def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "Bad_Name"], "1-6 lowercase letters or digits"),
        (["--workers", "0"], "--workers '0': 1..50"),
        (["--subnet", "192.168.7"], "private 10.x.y.0/24"),
        (["--resources", "[1, 2]"], "is not a JSON object"),
        (["--num-cpus", "-1"], "not a non-negative integer"),
        (["--bogus"], "unknown option '--bogus'"),
    ],
)
def test_start_rejects_bad_arguments_before_creating_anything(tmp_path, args, message):
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out = _script("start.sh", "--state", str(tmp_path / "state"), *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert not (tmp_path / "state" / "created.txt").exists()
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == before


def test_stop_and_kill_node_need_a_recorded_state(tmp_path):
    out = _script("stop.sh", "--state", str(tmp_path))
    assert out.returncode == 2 and "created.txt not found" in out.stderr
    out = _script("kill-node.sh", "--state", str(tmp_path), "--worker", "1")
    assert out.returncode == 2 and "created.txt not found" in out.stderr


def _read_env(path: Path) -> dict[str, str]:
    """The ``export K=V`` lines of cluster.env."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = " ".join(shlex.split(value))
    return env


def _records(state: Path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {"netns": [], "link": [], "dir": [], "pid": []}
    for line in (state / "created.txt").read_text().splitlines():
        kind, *rest = line.split()
        rows.setdefault(kind, []).append(" ".join(rest))
    return rows


class Cluster:
    """What the tests need of a started cluster: its environment and commands in a namespace."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = _read_env(state / "cluster.env")
        self.head_ns = self.env["SAKDN_HEAD_NS"]
        self.head_ip = self.env["SAKDN_HEAD_IP"]
        self.worker_ns = self.env["SAKDN_WORKER_NS"].split()
        self.worker_ips = self.env["SAKDN_WORKER_IPS"].split()
        self.stopped = False

    def login(self, who: str = "search") -> tuple[str, str]:
        """(user, password) of the tracking server's search user or admin (their files)."""
        from sakdn.tracking_auth import read_credentials

        return read_credentials(self.state / f"mlflow_{who}.credentials")

    def login_env(self, who: str = "search") -> dict[str, str]:
        """MLflow's login variables, for a plain MLflow client (sakdn reads cluster.env's file)."""
        user, password = self.login(who)
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}

    def client_env(self, token: bool = True, login: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "MLFLOW_", "SAKDN_"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        if token:
            env.update(self.env)
        else:  # no mode, no token path, and a HOME without ~/.ray/auth_token
            env["HOME"] = str(self.state / "tokenless-home")
            for key in ("RAY_ADDRESS", "NO_PROXY", "no_proxy"):
                env[key] = self.env[key]
        if login:
            env.update(self.login_env())
        return env

    def run(self, ns: str, *cmd: str, token: bool = True, login: bool = False,
            timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd], env=self.client_env(token, login), cwd=cwd,
            capture_output=True, text=True, timeout=timeout,
        )

    def http(self, ns: str, url: str, headers: tuple[str, ...] = (), method: str = "GET",
             data: str | None = None, user: tuple[str, str] | None = None) -> tuple[int, str]:
        """(status, body) of a request made from inside a namespace. ``user``: HTTP basic
        auth, handed to curl on stdin (never its command line)."""
        cmd = ["curl", "-s", "--noproxy", "*", "--max-time", "5", "-w", "\n%{http_code}",
               "-X", method]
        for header in headers:
            cmd += ["-H", header]
        if data is not None:
            cmd += ["-H", "Content-Type: application/json", "--data", data]
        if user is not None:
            cmd += ["-K", "-"]
        out = subprocess.run(
            ["ip", "netns", "exec", ns, *cmd, url], env=self.client_env(),
            input=f'user = "{user[0]}:{user[1]}"\n' if user else "", capture_output=True,
            text=True, timeout=15,
        ).stdout
        body, _, code = out.rpartition("\n")
        return int(code or 0), body

    def node_states(self) -> dict[str, str]:
        """Node address → state, from the head's state API (authenticated)."""
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        code, body = self.http(
            self.head_ns, f"{self.env['RAY_ADDRESS']}/api/v0/nodes?limit=100&detail=false",
            (f"Authorization: Bearer {token}",),
        )
        if code != 200:
            return {}
        rows = json.loads(body)["data"]["result"]["result"]
        states: dict[str, str] = {}
        for row in rows:  # a restarted address may appear twice: ALIVE wins
            if states.get(row["node_ip"]) != "ALIVE":
                states[row["node_ip"]] = row["state"]
        return states

    def stop(self) -> subprocess.CompletedProcess:
        self.stopped = True
        return subprocess.run(
            [str(SCRIPTS / "stop.sh"), "--state", str(self.state)],
            capture_output=True, text=True, timeout=90,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    name = secrets.token_hex(3)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = subprocess.run(
        [str(SCRIPTS / "start.sh"), "--name", name, "--workers", "2", "--state", str(state),
         "--num-cpus", "1", "--head-cpus", "0", "--object-store-mb", "100",
         "--health-check-period-ms", "1000", "--health-check-failures", "3",
         "--timeout", "120"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, f"start.sh failed:\n{started.stdout}\n{started.stderr}"
    c = Cluster(state)
    yield c
    if not c.stopped:
        c.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_three_alive_nodes_with_distinct_addresses(cluster):
    script = (
        "import json, ray; "
        f"ray.init(address={cluster.env['SAKDN_GCS_ADDRESS']!r}, logging_level='ERROR'); "
        "print('NODES=' + json.dumps([[n['NodeManagerAddress'], n['Alive']] for n in ray.nodes()]))"
    )
    out = cluster.run(cluster.head_ns, sys.executable, "-c", script, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("NODES="))
    nodes = json.loads(line[len("NODES="):])
    alive = [addr for addr, is_alive in nodes if is_alive]
    assert sorted(alive) == sorted([cluster.head_ip, *cluster.worker_ips])
    assert len(set(alive)) == 3
    assert len(set(cluster.worker_ns + [cluster.head_ns])) == 3


@pytest.mark.integration
@pytest.mark.slow
def test_start_refuses_a_name_in_use(cluster, tmp_path):
    name = cluster.env["SAKDN_CLUSTER"].removeprefix("sk")
    out = _script("start.sh", "--name", name, "--state", str(tmp_path / "other"))
    assert out.returncode == 2
    assert f"namespace {cluster.head_ns} already exists" in out.stderr
    assert not (tmp_path / "other" / "created.txt").exists()
    assert cluster.node_states().get(cluster.head_ip) == "ALIVE"


@pytest.mark.integration
@pytest.mark.slow
def test_token_authenticated_job_runs_tasks_on_both_workers(cluster, tmp_path, record_property):
    (tmp_path / "spread.py").write_text(
        "import json, time, ray\n"
        "ray.init()\n"
        "@ray.remote(num_cpus=1, scheduling_strategy='SPREAD')\n"
        "def where(i):\n"
        "    time.sleep(0.5)\n"
        "    return ray.util.get_node_ip_address()\n"
        "print('TASK_NODES=' + json.dumps(ray.get([where.remote(i) for i in range(4)])))\n"
    )
    out = cluster.run(
        cluster.head_ns, "ray", "job", "submit", "--working-dir", str(tmp_path),
        "--", "python", "spread.py", timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("TASK_NODES="))
    ips = json.loads(line[len("TASK_NODES="):])
    record_property("task_node_ips", ips)
    print(f"task node addresses: {ips}")
    # The head has no CPUs: every 1-CPU task runs on a worker, and SPREAD uses both.
    assert set(ips) == set(cluster.worker_ips)


@pytest.mark.integration
@pytest.mark.slow
def test_clients_without_the_token_are_refused(cluster):
    out = cluster.run(
        cluster.head_ns, "ray", "job", "submit", "--", "echo", "never", token=False, timeout=60,
    )
    assert out.returncode != 0
    assert "Missing authentication token" in out.stdout + out.stderr
    jobs = f"{cluster.env['RAY_ADDRESS']}/api/jobs/"
    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    assert cluster.http(cluster.head_ns, jobs)[0] == 401
    assert cluster.http(cluster.head_ns, jobs, ("Authorization: Bearer 0123abcd",))[0] == 403
    assert cluster.http(cluster.head_ns, jobs, (f"Authorization: Bearer {token}",))[0] == 200
    # The dashboard is bound to the head's address only, not to its loopback.
    port = cluster.env["RAY_ADDRESS"].rsplit(":", 1)[1]
    assert cluster.http(cluster.head_ns, f"http://127.0.0.1:{port}/api/jobs/")[0] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_server_serves_every_worker(cluster):
    uri = cluster.env["MLFLOW_TRACKING_URI"]
    for ns in cluster.worker_ns:
        assert cluster.http(ns, f"{uri}/health") == (200, "OK"), ns
    # A run logged from worker 1 (metric + artifact) is read back from worker 2 through the
    # server: the artifact travels through the server's proxy, not a shared path.
    log = (  # logged in as cluster.env says (SAKDN_MLFLOW_CREDENTIALS), as trials are
        "import mlflow, pathlib, tempfile\n"
        "from sakdn.tracking_auth import use_credentials\n"
        "use_credentials()\n"
        "mlflow.set_experiment('cluster-check')\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_metric('val_acc', 0.75, step=3)\n"
        "    d = pathlib.Path(tempfile.mkdtemp()); (d / 'note.txt').write_text('from w1')\n"
        "    mlflow.log_artifact(str(d / 'note.txt'))\n"
        "print('RUN=' + run.info.run_id)\n"
    )
    out = cluster.run(cluster.worker_ns[0], sys.executable, "-c", log, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = next(s for s in out.stdout.splitlines() if s.startswith("RUN="))[4:]
    read = (
        "import json, mlflow, pathlib\n"
        f"run = mlflow.get_run({run_id!r})\n"
        "path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,\n"
        "                                           artifact_path='note.txt')\n"
        "text = pathlib.Path(path).read_text()\n"
        "print('READ=' + json.dumps([run.data.metrics['val_acc'], run.info.artifact_uri, text]))\n"
    )
    out = cluster.run(cluster.worker_ns[1], sys.executable, "-c", read, login=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("READ="))
    value, artifact_uri, text = json.loads(line[len("READ="):])
    assert (value, text) == (0.75, "from w1")
    assert artifact_uri.startswith("mlflow-artifacts:")  # proxied, never a node-local path
    stored = list((cluster.state / "artifacts").rglob("note.txt"))
    assert [p.read_text() for p in stored] == ["from w1"]


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_server_refuses_clients_without_a_login(cluster):
    uri = cluster.env["MLFLOW_TRACKING_URI"]
    api = f"{uri}/api/2.0/mlflow"
    ns = cluster.worker_ns[0]
    read = f"{api}/experiments/search?max_results=10"
    write = (f"{api}/experiments/create", "POST", '{"name": "intruder"}')
    search_user, search_password = cluster.login("search")
    admin_user, admin_password = cluster.login("admin")
    assert search_user != admin_user
    # no login, a wrong password: refused for reading, writing, artifacts and the UI
    for user in (None, (search_user, "wrong-password-0000"), (admin_user, search_password)):
        assert cluster.http(ns, read, user=user)[0] == 401, user
        assert cluster.http(ns, write[0], method=write[1], data=write[2], user=user)[0] == 401
        assert cluster.http(ns, f"{uri}/api/2.0/mlflow-artifacts/artifacts/0/x",
                            user=user)[0] == 401
        assert cluster.http(ns, f"{uri}/", user=user)[0] == 401
    login = (search_user, search_password)
    assert cluster.http(ns, read, user=login)[0] == 200
    code, body = cluster.http(ns, f"{api}/users/current", user=login)
    assert code == 200 and json.loads(body)["user"]["is_admin"] is False, body
    # the search user is no admin: it cannot make users; the admin can read every user
    new_user = '{"username": "mallory", "password": "mallory-password-1"}'
    assert cluster.http(ns, f"{api}/users/create", method="POST", data=new_user,
                        user=login)[0] == 403
    code, body = cluster.http(ns, f"{api}/users/get?username={search_user}",
                              user=(admin_user, admin_password))
    assert code == 200 and json.loads(body)["user"]["is_admin"] is False, body
    # the secrets are files only root reads; cluster.env and the auth config name no password
    for name in ("mlflow_search.credentials", "mlflow_admin.credentials", "auth_token"):
        assert (cluster.state / name).stat().st_mode & 0o777 == 0o600, name
    assert cluster.env["SAKDN_MLFLOW_CREDENTIALS"] == str(
        cluster.state / "mlflow_search.credentials")
    for name in ("cluster.env", "mlflow_auth.ini", "mlflow.conf", "created.txt"):
        text = (cluster.state / name).read_text()
        assert search_password not in text and admin_password not in text, name
    assert "default_permission = NO_PERMISSIONS" in (cluster.state / "mlflow_auth.ini").read_text()


@pytest.mark.integration
@pytest.mark.slow
def test_killed_worker_is_marked_dead(cluster):
    assert cluster.node_states() == {ip: "ALIVE" for ip in [cluster.head_ip, *cluster.worker_ips]}
    out = subprocess.run(
        [str(SCRIPTS / "kill-node.sh"), "--state", str(cluster.state), "--worker", "2"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert cluster.run(cluster.worker_ns[1], "true").returncode == 0  # the namespace stays
    assert subprocess.run(["ip", "netns", "pids", cluster.worker_ns[1]],
                          capture_output=True, text=True).stdout.strip() == ""
    deadline = time.monotonic() + 45
    states = cluster.node_states()
    while states.get(cluster.worker_ips[1]) != "DEAD" and time.monotonic() < deadline:
        time.sleep(1)
        states = cluster.node_states()
    assert states.get(cluster.worker_ips[1]) == "DEAD", states
    assert states[cluster.head_ip] == states[cluster.worker_ips[0]] == "ALIVE"


def _netns_inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def _processes_in(inodes: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.integration
@pytest.mark.slow
def test_stop_removes_exactly_what_start_recorded(cluster):
    records = _records(cluster.state)
    namespaces, links = records["netns"], records["link"]
    assert sorted(namespaces) == sorted([cluster.head_ns, *cluster.worker_ns])
    assert len(links) == 1 + len(namespaces)  # the bridge and one veth per node
    inodes = {_netns_inode(ns) for ns in namespaces}
    mlflow_pid = int(next(r.split()[0] for r in records["pid"] if r.split()[1] == "mlflow"))
    assert mlflow_pid in _processes_in(inodes)

    out = cluster.stop()
    assert out.returncode == 0, out.stdout + out.stderr

    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not {line.split()[0] for line in listed.splitlines() if line} & set(namespaces)
    for link in links:
        shown = subprocess.run(["ip", "link", "show", link], capture_output=True, text=True)
        assert shown.returncode != 0, f"link {link} is still there"
    assert _processes_in(inodes) == []
    for directory in records["dir"]:
        assert not Path(directory).exists()
    # Results stay: the MLflow database, artifacts and storage outlive the cluster.
    assert (cluster.state / "mlflow.db").is_file() and (cluster.state / "storage").is_dir()
