"""MLflow tracking: the outage-proof run buffer, and idempotent parent / child runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from sakdn import tracking as tr
from sakdn.names import State, Tag


class FakeClient:
    """Records what reaches the 'server'; raises ConnectionError while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.attempts: list[float] = []
        self.metrics: list[tuple[str, float, int, int]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.refuse_params = False
        self.clock = None

    def _call(self) -> None:
        self.attempts.append(self.clock() if self.clock else 0.0)
        if self.down:
            raise ConnectionError("connection refused")

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self._call()
        if params and self.refuse_params:
            raise MlflowException("changing a param", error_code=INVALID_PARAMETER_VALUE)
        self.metrics += [(m.key, m.value, m.step, m.timestamp) for m in metrics]
        self.params.update({p.key: p.value for p in params})
        self.tags.update({t.key: t.value for t in tags})

    def log_artifact(self, run_id, path, dest=None):
        self._call()
        self.artifacts.append((Path(path).name, dest))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _buffer(client: FakeClient, clock: Clock, spool: Path | None = None, **kw) -> tr.RunBuffer:
    client.clock = clock
    return tr.RunBuffer(client, run_id="r1", spool=spool, clock=clock, sleep=clock.sleep, **kw)


def test_an_outage_keeps_records_and_retries_with_exponential_backoff() -> None:
    client, clock = FakeClient(), Clock()
    buf = _buffer(client, clock, base=1.0, cap=4.0)
    client.down = True
    for step in range(1, 9):  # one epoch per simulated second; training never blocks
        buf.log_metrics({"student/val_acc": step / 10}, step=step)
        clock.now += 1.0
    assert buf.pending == 8 and client.metrics == []
    # tries at t=0 (fails, wait 1), t=1 (wait 2), t=3 (wait 4), t=7 (wait 4 = cap)
    assert client.attempts == [0.0, 1.0, 3.0, 7.0]
    client.down = False
    assert buf.flush(wait_s=10.0)  # waits out the backoff (t=11), then sends everything
    assert clock.now == pytest.approx(11.0)
    assert [(k, v, s) for k, v, s, _ in client.metrics] == [
        ("student/val_acc", s / 10, s) for s in range(1, 9)
    ]
    assert buf.pending == 0


def test_flush_gives_up_at_its_deadline_without_raising() -> None:
    client, clock = FakeClient(), Clock()
    buf = _buffer(client, clock, base=1.0, cap=60.0)
    client.down = True
    buf.set_tags({"sakdn.state": "RUNNING"})
    assert buf.flush(wait_s=5.0) is False
    assert clock.now <= 5.0 and buf.pending == 1


def test_a_new_buffer_on_the_spool_sends_what_the_old_one_kept(tmp_path: Path) -> None:
    client, clock = FakeClient(), Clock()
    spool = tmp_path / "spool.json"
    client.down = True
    first = _buffer(client, clock, spool=spool)
    first.log_params({"student.lr": 0.01})
    first.log_metrics({"student/loss": 1.5}, step=1)
    first.log_metrics({"student/loss": 1.2}, step=2)
    assert json.loads(spool.read_text())["run_id"] == "r1"
    # the trial process dies; its retry (or the driver) opens the same spool
    client.down = False
    second = _buffer(client, Clock(), spool=spool)
    assert second.pending == 3
    assert second.flush()
    assert client.params == {"student.lr": "0.01"}
    assert [(v, s) for _, v, s, _ in client.metrics] == [(1.5, 1), (1.2, 2)]
    # a retried trial re-runs epoch 2 from its checkpoint: not logged twice; epoch 3 is new
    second.log_metrics({"student/loss": 1.2}, step=2)
    second.log_metrics({"student/loss": 1.0}, step=3)
    assert [(v, s) for _, v, s, _ in client.metrics] == [(1.5, 1), (1.2, 2), (1.0, 3)]
    assert json.loads(spool.read_text())["ops"] == []


def test_a_resumed_buffer_skips_each_metric_s_own_logged_steps(tmp_path: Path) -> None:
    client = FakeClient()
    spool = tmp_path / "spool.json"
    first = _buffer(client, Clock(), spool=spool)
    for epoch in range(1, 9):  # eight teacher epochs, then three student epochs: killed
        first.log_metrics({"teacher/loss": 1.0 / epoch}, step=epoch)
    for epoch in range(1, 4):
        first.log_metrics({"student/loss": 2.0 / epoch}, step=epoch)
    second = _buffer(client, Clock(), spool=spool)
    # the resumed attempt tells the checkpoint's epochs again, then trains student epoch 4 on:
    # the teacher's step 8 does not hide student epochs 4–8, nor do they repeat epochs 1–3
    for epoch in range(1, 9):
        second.log_metrics({"teacher/loss": 1.0 / epoch}, step=epoch)
    for epoch in range(1, 9):
        second.log_metrics({"student/loss": 2.0 / epoch}, step=epoch)
    sent = [(k, s) for k, _, s, _ in client.metrics]
    assert sorted(s for k, s in sent if k == "teacher/loss") == list(range(1, 9))
    assert sorted(s for k, s in sent if k == "student/loss") == list(range(1, 9))
    # a spool of an older version kept one step for every metric: still honoured
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"run_id": "r1", "high_step": 3, "ops": []}))
    third = _buffer(FakeClient(), Clock(), spool=old)
    third.log_metrics({"student/loss": 0.5}, step=3)
    third.log_metrics({"student/loss": 0.4}, step=4)
    assert third._mlflow.metrics[0][2] == 4 and len(third._mlflow.metrics) == 1
    assert json.loads(old.read_text())["high_step"] == 3


def test_a_refused_record_is_dropped_and_the_rest_goes_through() -> None:
    client, clock = FakeClient(), Clock()
    client.refuse_params = True
    buf = _buffer(client, clock)
    buf.log_params({"student.lr": 0.5})
    buf.log_metrics({"student/loss": 2.0}, step=1)
    assert buf.pending == 0
    assert client.params == {} and [(v, s) for _, v, s, _ in client.metrics] == [(2.0, 1)]


def test_with_send_every_s_records_wait_and_go_out_in_one_batch(tmp_path: Path) -> None:
    client, clock = FakeClient(), Clock()
    spool = tmp_path / "spool.json"
    buf = _buffer(client, clock, spool=spool, send_every_s=5.0)
    buf.log_params({"student.lr": 0.01})  # the first record goes at once
    assert len(client.attempts) == 1 and buf.pending == 0
    for step in range(1, 5):  # epochs at t = 1..4: queued and spooled, not sent
        clock.now = float(step)
        buf.log_metrics({"student/loss": 1.0 / step, "student/val_acc": step / 10}, step=step)
    assert len(client.attempts) == 1 and buf.pending == 4
    assert len(json.loads(spool.read_text())["ops"]) == 4
    clock.now = 5.0  # 5 s after the last send: this epoch sends all five in one call
    buf.log_metrics({"student/loss": 0.2, "student/val_acc": 0.5}, step=5)
    assert len(client.attempts) == 2 and buf.pending == 0
    assert [(k, s) for k, _, s, _ in client.metrics] == [
        (k, s) for s in range(1, 6) for k in ("student/loss", "student/val_acc")]
    buf.log_metrics({"student/loss": 0.1}, step=6)
    assert buf.pending == 1 and buf.flush() and buf.pending == 0  # flush always sends
    assert json.loads(spool.read_text())["ops"] == []


def test_a_refused_batch_drops_only_the_refused_record() -> None:
    class Refusing(FakeClient):
        def log_batch(self, run_id, metrics=(), params=(), tags=()):
            if any(m.key == "bad" for m in metrics):
                raise MlflowException("bad metric", error_code=INVALID_PARAMETER_VALUE)
            super().log_batch(run_id, metrics, params, tags)

    client, clock = Refusing(), Clock()
    buf = _buffer(client, clock, send_every_s=60.0)
    buf.log_params({"x": 1})
    buf.log_metrics({"good": 1.0}, step=1)
    buf.log_metrics({"bad": 2.0}, step=2)
    buf.log_metrics({"good": 3.0}, step=3)
    assert buf.flush() and buf.pending == 0
    assert [(k, v, s) for k, v, s, _ in client.metrics] == [("good", 1.0, 1), ("good", 3.0, 3)]


def test_the_run_is_resolved_lazily_and_once(tmp_path: Path) -> None:
    client, clock = FakeClient(), Clock()
    calls = []

    def resolve(_client) -> str:
        calls.append(clock.now)
        if client.down:
            raise ConnectionError("down")
        return "child-7"

    client.clock = clock
    client.down = True
    buf = tr.RunBuffer(client, resolve=resolve, spool=tmp_path / "s.json", clock=clock,
                       sleep=clock.sleep)
    buf.log_metrics({"teacher/loss": 3.0}, step=1)
    assert buf.run_id is None and calls == [0.0]
    client.down = False
    assert buf.flush(wait_s=5.0)
    assert buf.run_id == "child-7" and len(calls) == 2
    buf.log_metrics({"teacher/loss": 2.0}, step=2)
    assert len(calls) == 2
    assert json.loads((tmp_path / "s.json").read_text())["run_id"] == "child-7"


def test_non_numeric_values_are_not_metrics() -> None:
    assert tr.numeric_metrics({"a": 1, "b": True, "c": "x", "d": 0.5, "e": None}) == {
        "a": 1.0, "b": 1.0, "d": 0.5
    }


# --- a real (SQLite) MLflow store -------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[object, str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = tr.client(uri)
    exp = tr.ensure_experiment(client, "tracking-test", str(root / "artifacts"))
    return client, exp, uri


def test_ensure_experiment_is_idempotent(store) -> None:
    client, exp, _ = store
    assert tr.ensure_experiment(client, "tracking-test", None) == exp


def test_the_parent_run_is_reopened_not_duplicated(store) -> None:
    client, exp, _ = store
    params = {f"k{i}": i for i in range(250)}  # more than one log_batch call may carry
    first, existed = tr.open_parent(client, exp, "s-parent", params, {"x": "1"})
    assert not existed
    assert client.get_run(first).data.params == {k: str(v) for k, v in params.items()}
    client.set_terminated(first, "KILLED")
    again, existed = tr.open_parent(client, exp, "s-parent", params, {"x": "2"})
    assert existed and again == first
    run = client.get_run(first)
    assert run.info.status == "RUNNING" and run.data.tags["x"] == "2"
    assert tr.find_parent(client, "s-parent").info.run_id == first
    assert tr.find_parent(client, first).info.run_id == first  # by run id too
    assert tr.find_parent(client, "no-such-search") is None


def test_a_trial_finds_its_child_run_by_optuna_number(store) -> None:
    client, exp, uri = store
    parent, _ = tr.open_parent(client, exp, "s-child", {}, {})
    tracking = tr.SearchTracking(uri, exp, parent, "s-child")
    run_a = tr.trial_resolver(tracking, "tune-a", 3)(client)
    tr.finish_run(client, run_a, State.PRUNED, "interrupted")
    # the same Optuna trial handed to a new Tune trial after a resume: same run, reopened
    run_b = tr.trial_resolver(tracking, "tune-b", 3)(client)
    assert run_b == run_a
    run = client.get_run(run_a)
    assert run.info.status == "RUNNING"
    assert run.data.tags[Tag.TUNE_TRIAL] == "tune-b" and run.data.tags[Tag.STATE] == State.RUNNING
    assert run.data.tags[Tag.PARENT_RUN] == parent
    other = tr.trial_resolver(tracking, "tune-c", 4)(client)
    assert other != run_a
    assert [r.info.run_id for r in tr.children(client, client.get_run(parent))] == [run_a, other]
    tr.finish_run(client, other, State.FAILED, "boom")
    run = client.get_run(other)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.STATE] == State.FAILED and run.data.tags[Tag.ERROR] == "boom"


def test_local_stores_keep_artifacts_under_the_storage_path(tmp_path: Path) -> None:
    assert tr.local_artifact_root("sqlite:///x.db", tmp_path) == str(tmp_path / "mlartifacts")
    assert tr.local_artifact_root("http://127.0.0.1:5000", tmp_path) is None


# --- a real tracking server that goes away and comes back -------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path, port: int) -> subprocess.Popen:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("mlflow server exited")
            time.sleep(0.5)
    _stop_server(proc)
    raise RuntimeError("mlflow server did not start")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_logging_survives_a_tracking_server_restart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    try:
        client = tr.client(uri)
        exp = tr.ensure_experiment(client, "outage", None)
        parent, _ = tr.open_parent(client, exp, "outage", {}, {})
        tracking = tr.SearchTracking(uri, exp, parent, "outage")
        spool = tmp_path / "trial" / "spool.json"
        buf = tr.RunBuffer(client, resolve=tr.trial_resolver(tracking, "t1", 0), spool=spool,
                           base=0.2, cap=1.0)
        buf.log_params({"student.lr": 0.01})
        buf.log_metrics({"student/val_acc": 0.1}, step=1)
        assert buf.pending == 0
        model = tmp_path / "student.pt"
        model.write_bytes(b"weights")

        _stop_server(server)
        for step in (2, 3, 4):  # the trial goes on while the server is away
            buf.log_metrics({"student/val_acc": step / 10}, step=step)
            time.sleep(0.3)
        buf.log_artifact(model, "models")
        assert buf.pending == 4
        assert json.loads(spool.read_text())["ops"][-1]["op"] == "artifact"

        server = _start_server(tmp_path, port)
        assert buf.flush(wait_s=60.0)
        run_id = buf.run_id
        history = client.get_metric_history(run_id, "student/val_acc")
        assert sorted((m.step, m.value) for m in history) == [
            (s, s / 10) for s in (1, 2, 3, 4)
        ]
        assert [a.path for a in client.list_artifacts(run_id, "models")] == ["models/student.pt"]
        assert client.get_run(run_id).data.params == {"student.lr": "0.01"}
    finally:
        _stop_server(server)


def test_the_default_tracking_uri_is_the_environment_else_the_search_storage(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tr.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # search.storage_path's default, relative to the working dir
    store = tmp_path.resolve() / "runs" / "search" / "mlflow.db"
    assert tr.default_tracking_uri() == f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tr.default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_ui_links_open_mlflows_runs_view_and_experiments_carry_their_kind(tmp_path) -> None:
    from mlflow import MlflowClient

    from sakdn import tracking as tr

    assert tr.ui_url("http://h:5000/", "3") == (
        "http://h:5000/#/experiments/3/runs?workflowType=machine_learning")
    assert tr.ui_url("http://h:5000", "3", "abc") == (
        "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    made = tr.ensure_experiment(client, "kind", str(tmp_path / "a"))
    assert client.get_experiment(made).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment("older")  # made before the tag was set: tagged on use
    assert tr.ensure_experiment(client, "older", None) == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
