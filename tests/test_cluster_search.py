"""Searches on the local multi-node cluster (cluster/local/*.sh), and the faults they survive.

One cluster is started for the module: a head without CPUs (it runs the job drivers and the
MLflow server) and two 1-CPU workers, each in its own network namespace, token auth on, the
tracking server's login on, ``--host-access`` so that this process reaches the tracking
server. Every search is a real ``ray job submit --working-dir . -- sakdn search
experiments/synthetic_smoke.yaml`` with its directory on the cluster's shared storage and
MLflow on the cluster's server, logged in as the cluster's search user (the job's driver and
its trials find the login through the environment the cluster gave every Ray process); every
fault is a real process kill:

1. a search spread over both workers, with one configuration that diverges (a soft-target
   temperature of 1e-300: logits / T overflow, the ST loss is NaN) and the MLflow server
   SIGKILLed and restarted while trials log. One test per claim reads its results: the node
   tags, the models downloaded through the server, the diverged trial, the lost-metric check;
2. the job's driver SIGKILLed, then ``sakdn search --resume`` submitted as a new job;
3. a worker node SIGKILLed (``kill-node.sh``) while its trial trains: last, because the
   cluster has one worker left afterwards.

Two searches whose login is missing or wrong stop before their first trial, and once every
search has run, neither password of the tracking server is anywhere but in its own file.

The whole module takes 4 to 7 minutes on a shared 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.studies import trial_states
from tests.test_local_cluster import BIN, SCRIPTS, Cluster, _netns_usable

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "experiments/synthetic_smoke.yaml"  # 1 teacher + 2 student epochs, 16-px GAF
MLFLOW_EXPERIMENT = "sakdn-smoke"  # search.experiment_name of that file
TEACHER_EPOCHS, STUDENT_EPOCHS = 1, 2
OUTAGE_S = 10.0  # the tracking server stays down this long (plus its restart, ~15 s)
SPREAD_SAMPLES, RESUME_SAMPLES, NODE_SAMPLES = 4, 3, 3
# node-failure and resume searches: time to kill mid-student-stage. The resumed search's first
# two trials start and end together, so only the third can be caught mid-student-stage after
# one has completed; with 4 epochs (< 1 s each with a stored teacher on a fast machine) that
# window once passed between two polls
LONG_STUDENT_EPOCHS = 8
DIVERGING = {"distill.lambda_st": 1.0, "distill.temperature": 1.0e-300}

_OK, _WHY = _netns_usable()
pytestmark = [
    pytest.mark.skipif(not _OK, reason=_WHY),
    pytest.mark.integration,
    pytest.mark.slow,
]


# --- the cluster and its jobs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = subprocess.run(
        [str(SCRIPTS / "start.sh"), "--name", secrets.token_hex(3), "--workers", "2",
         "--state", str(state), "--num-cpus", "1", "--head-cpus", "0",
         "--object-store-mb", "100", "--host-access",
         "--health-check-period-ms", "1000", "--health-check-failures", "3", "--timeout", "150"],
        env=env, capture_output=True, text=True, timeout=200,
    )
    assert started.returncode == 0, f"start.sh failed:\n{started.stdout}\n{started.stderr}"
    c = Cluster(state)
    patch = pytest.MonkeyPatch()  # this process's MLflow client: fail fast, never via a proxy,
    for key in ("NO_PROXY", "no_proxy"):  # logged in as the search user
        patch.setenv(key, c.env[key])
    for key, value in c.login_env().items():
        patch.setenv(key, value)
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        yield c
    finally:
        patch.undo()
        out = c.stop()
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def storage(cluster: Cluster) -> Path:
    """The shared storage, holding the dataset (3 classes × 4 subjects × 4 repetitions)."""
    from sakdn.data.synthetic import write_synthetic

    root = Path(cluster.env["SAKDN_STORAGE"])
    write_synthetic(root / "data", classes=3, subjects=4, repetitions=4, frame_size=32,
                    duration=1.0)
    return root


def search_command(storage: Path, name: str, samples: int, *sets: str) -> list[str]:
    """``sakdn search`` of the smoke experiment with its state on the shared storage."""
    items = [
        f"data.root={storage / 'data'}", f"search.storage_path={storage / 'searches'}",
        f"search.name={name}", f"search.num_samples={samples}",
        # no pruning: every trial that does not diverge completes (the counts are exact)
        "search.pruner=none", "search.pruner_options={}",
        # outside the job's working-dir copy, so the resumed job has the same configuration
        f"train.output_dir={storage / 'out'}", *sets,
    ]
    return ["sakdn", "search", EXPERIMENT, *[x for item in items for x in ("--set", item)]]


class Job:
    """``ray job submit`` run from the head's namespace in the background (``env_vars``: the
    job's runtime environment)."""

    def __init__(self, cluster: Cluster, command: list[str], log: Path,
                 env_vars: dict[str, str] | None = None) -> None:
        self.id = f"sakdn-{secrets.token_hex(4)}"
        self.log = log
        self._out = open(log, "w")
        runtime = ["--runtime-env-json", json.dumps({"env_vars": env_vars})] if env_vars else []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cluster.head_ns, "ray", "job", "submit",
             "--submission-id", self.id, "--working-dir", ".", *runtime, "--", *command],
            cwd=REPO, env=cluster.client_env(), stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"job {self.id} still running after {timeout:.0f} s:\n"
                                 + self.output[-4000:]) from None
        finally:
            self._out.close()
        return self.output

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def succeeded(self) -> bool:
        return f"Job '{self.id}' succeeded" in self.output


def tracking(cluster: Cluster):
    from mlflow import MlflowClient

    return MlflowClient(cluster.env["MLFLOW_TRACKING_URI"])


def children(client, name: str) -> list:
    """The child runs of search ``name`` (none while its experiment does not exist)."""
    exp = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id], max_results=1000,
        filter_string=f"tags.`sakdn.search` = '{name}' and tags.`sakdn.role` = 'trial'",
    )


def children_so_far(client, name: str) -> list:
    """``children`` while the search may be creating its experiment: the server grants the
    creator its permission on the experiment just after creating it (MLflow's after-request
    hook), and a read in between is refused (403) as for anyone else's experiment."""
    from mlflow.exceptions import MlflowException

    try:
        return children(client, name)
    except MlflowException as err:
        if "403" in str(err) or "Permission denied" in str(err):
            return []
        raise


def load_study(storage: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name,
                             storage=f"sqlite:///{storage / 'searches' / 'optuna.db'}")


def study_states(storage: Path, name: str) -> list[str]:
    return trial_states(storage / "searches" / "optuna.db", name)


def tune_results(search_dir: Path, tune_trial_id: str) -> list[dict]:
    """Tune's own record of a trial (``result.json``): one line per report, with the node."""
    dirs = [d for d in (search_dir / "tune").iterdir()
            if d.name.startswith(f"run_trial_{tune_trial_id}_")]
    assert len(dirs) == 1, f"Tune trial {tune_trial_id}: {dirs}"
    lines = (dirs[0] / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# --- 1, 4, 5: a search over both workers, a diverging trial, a tracking outage ----------------


@dataclass
class Spread:
    name: str
    search_dir: Path
    output: str
    runs: list  # the child runs after the search
    down_at: float  # when the tracking server was killed (s since the epoch)
    up_at: float  # when it answered again


@pytest.fixture(scope="module")
def spread(cluster: Cluster, storage: Path, tmp_path_factory) -> Spread:
    """The search, with the MLflow server killed once the first trial has its child run."""
    tmp = tmp_path_factory.mktemp("spread")
    space = storage / "diverging_space.yaml"  # the smoke space, T from a range that holds 1e-300
    space.write_text(yaml.safe_dump({
        "student.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "distill.lambda_st": {"choice": [0.1, 1.0]},
        "distill.temperature": {"uniform": [1.0e-300, 4.0]},
        "distill.lambda_sp": {"uniform": [0.0, 2.0]},
    }))
    name = "spread"
    job = Job(cluster, search_command(
        storage, name, SPREAD_SAMPLES, f"search.space={space}",
        # YAML 1.1 reads 1e-300 as a string: dump it as YAML (1.0e-300)
        "search.points_to_evaluate=" + yaml.safe_dump([DIVERGING], default_flow_style=True).strip(),
    ), tmp / "job.log")
    client = tracking(cluster)
    deadline = time.time() + 300
    while not children_so_far(client, name):
        assert job.running(), job.output[-4000:]
        assert time.time() < deadline, "no child run after 300 s:\n" + job.output[-4000:]
        time.sleep(0.5)
    down_at = time.time()
    server = [str(SCRIPTS / "mlflow-server.sh"), "--state", str(cluster.state)]
    out = subprocess.run([*server, "--how", "stop", "--signal", "KILL"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert cluster.http(cluster.head_ns, f"{cluster.env['MLFLOW_TRACKING_URI']}/health")[0] == 0
    time.sleep(OUTAGE_S)
    out = subprocess.run([*server, "--how", "start", "--timeout", "150"], capture_output=True,
                         text=True, timeout=200)
    assert out.returncode == 0, out.stderr
    up_at = time.time()
    output = job.wait(timeout=600)
    assert job.succeeded(), output[-6000:]
    return Spread(name, storage / "searches" / name, output, children(client, name), down_at,
                  up_at)


@pytest.mark.timeout(1200)
def test_a_search_job_runs_its_trials_on_both_workers(spread: Spread, cluster: Cluster):
    assert f"search {spread.name}: {SPREAD_SAMPLES} trials" in spread.output
    assert len(spread.runs) == SPREAD_SAMPLES
    nodes = {}
    for run in spread.runs:
        tags = run.data.tags
        # the tag names the node Tune itself reports for the trial
        tune_nodes = {r["node_ip"] for r in tune_results(spread.search_dir,
                                                         tags["sakdn.tune_trial_id"])}
        assert tune_nodes == {tags["sakdn.node_ip"]}, tags
        assert tags["sakdn.node_ips"] == tags["sakdn.node_ip"]  # one attempt each
        nodes[tags["sakdn.optuna_trial"]] = tags["sakdn.node_ip"]
    print(f"trial → node: {nodes}")
    assert set(nodes.values()) == set(cluster.worker_ips)  # both workers, never the head


def test_every_finished_trial_s_model_downloads_through_the_server_and_runs(
    spread: Spread, cluster: Cluster, tmp_path: Path
):
    for run in spread.runs:  # proxied artifacts: never a path on the node that logged them
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    # completed trials (a pruned one's run is FINISHED too, but holds no model)
    finished = [r.info.run_id for r in spread.runs if r.data.tags["sakdn.state"] == "COMPLETE"]
    assert len(finished) == SPREAD_SAMPLES - 1  # all but the diverged trial
    check = (
        "import hashlib, json, pathlib, sys, mlflow, torch\n"
        "from sakdn.train import load_student\n"
        "torch.set_num_threads(1)\n"
        "uri, root, out = sys.argv[1], pathlib.Path(sys.argv[2]), {}\n"
        "for run_id in sys.argv[3:]:\n"
        "    dst = root / run_id\n"
        "    dst.mkdir(parents=True)\n"
        "    path = mlflow.artifacts.download_artifacts(run_id=run_id,\n"
        "        artifact_path='models/student.pt', tracking_uri=uri, dst_path=str(dst))\n"
        "    torch.load(path, weights_only=True)  # tensors and plain values only\n"
        "    model, config, meta = load_student(path)\n"
        "    s, f = config.student.segments, config.data.frame_size\n"
        "    with torch.no_grad():\n"
        "        logits = model(torch.rand(2, s, 3, f, f)).logits\n"
        "    out[run_id] = {'path': path, 'shape': list(logits.shape),\n"
        "                   'finite': bool(torch.isfinite(logits).all()),\n"
        "                   'classes': len(meta['class_names']),\n"
        "                   'sha256': hashlib.sha256(open(path, 'rb').read()).hexdigest()}\n"
        "print('MODELS=' + json.dumps(out))\n"
    )
    root = tmp_path / "downloads"
    out = cluster.run(cluster.worker_ns[0], sys.executable, "-c", check,
                      cluster.env["MLFLOW_TRACKING_URI"], str(root), *finished, login=True,
                      timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    models = json.loads(next(s for s in out.stdout.splitlines() if s.startswith("MODELS="))[7:])
    assert sorted(models) == sorted(finished)
    for run_id, model in models.items():
        assert Path(model["path"]) == root / run_id / "student.pt"  # in the fresh dir
        assert model["finite"] and model["shape"] == [2, model["classes"]] and model["classes"] == 3
        # the bytes are the ones the server stored
        stored = list((cluster.state / "artifacts").rglob(f"{run_id}/artifacts/models/student.pt"))
        assert len(stored) == 1
        assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == model["sha256"]


def test_a_diverging_trial_ends_pruned_with_its_reason_and_the_search_goes_on(
    spread: Spread, storage: Path
):
    diverged = [r for r in spread.runs
                if float(r.data.params["distill.temperature"]) == DIVERGING["distill.temperature"]]
    assert len(diverged) == 1
    run = diverged[0]
    tags = run.data.tags
    assert tags["sakdn.state"] in ("PRUNED", "FAILED") and run.info.status in ("FINISHED", "FAILED")
    assert "student stage diverged at epoch 1" in tags["sakdn.error"]
    assert "'st'" in tags["sakdn.error"]  # the soft-target term, where T enters
    assert tags["sakdn.diverged"] == "true"
    others = [r for r in spread.runs if r is not run]
    assert [r.data.tags["sakdn.state"] for r in others] == ["COMPLETE"] * (SPREAD_SAMPLES - 1)
    assert study_states(storage, spread.name).count("COMPLETE") == SPREAD_SAMPLES - 1
    assert f"search {spread.name}: {SPREAD_SAMPLES} trials — {SPREAD_SAMPLES - 1} complete" in (
        spread.output)


def test_a_tracking_outage_loses_no_metric_and_kills_no_trial(spread: Spread, cluster: Cluster):
    client = tracking(cluster)
    logged_while_down = 0
    for run in spread.runs:
        run_id = run.info.run_id
        # no trial died: Tune never restarted one (iterations since restore never reset)
        records = tune_results(spread.search_dir, run.data.tags["sakdn.tune_trial_id"])
        assert [r["iterations_since_restore"] for r in records] == [
            r["training_iteration"] for r in records]
        assert steps(client, run_id, "teacher/loss") == list(range(1, TEACHER_EPOCHS + 1))
        for m in client.get_metric_history(run_id, "teacher/loss"):
            logged_while_down += spread.down_at * 1000 < m.timestamp < spread.up_at * 1000
        if run.data.tags["sakdn.state"] != "COMPLETE":
            continue
        for key in ("student/loss", "student/val_acc", "student/best_val_acc"):
            assert steps(client, run_id, key) == list(range(1, STUDENT_EPOCHS + 1)), key
            for m in client.get_metric_history(run_id, key):
                logged_while_down += spread.down_at * 1000 < m.timestamp < spread.up_at * 1000
        assert "summary/student/val_acc" in run.data.metrics
        assert [a.path for a in client.list_artifacts(run_id, "models")] == [
            "models/student.pt", "models/teachers.pt"]
    print(f"outage {spread.up_at - spread.down_at:.0f} s; {logged_while_down} metric values "
          "logged while the server was down")
    assert logged_while_down > 0  # the outage did hit logging
    spools = list(spread.search_dir.glob("trials/*/mlflow_spool.json"))
    assert len(spools) == SPREAD_SAMPLES
    assert all(json.loads(p.read_text())["ops"] == [] for p in spools)  # nothing left behind


# --- a missing or wrong login: stopped before anything starts --------------------------------


@pytest.mark.parametrize(("login", "problem"), [
    ({"MLFLOW_TRACKING_PASSWORD": "wrong-password-" + secrets.token_hex(4)},
     "refused the login of user 'sakdn-search' (HTTP 401): wrong user name or password (user "
     "from SAKDN_MLFLOW_CREDENTIALS={credentials}, password from MLFLOW_TRACKING_PASSWORD)"),
    ({"SAKDN_MLFLOW_CREDENTIALS": ""},
     "requires a login (HTTP 401) and none is given: set MLFLOW_TRACKING_USERNAME and "
     "MLFLOW_TRACKING_PASSWORD, or SAKDN_MLFLOW_CREDENTIALS"),
], ids=["wrong-password", "no-login"])
def test_a_search_without_a_valid_login_stops_before_its_first_trial(
    cluster: Cluster, storage: Path, tmp_path: Path, login: dict[str, str], problem: str
):
    name = f"login-{secrets.token_hex(3)}"
    job = Job(cluster, search_command(storage, name, 2), tmp_path / "job.log", env_vars=login)
    output = job.wait(timeout=300)
    assert f"Job '{job.id}' failed" in output, output[-4000:]
    uri = cluster.env["MLFLOW_TRACKING_URI"]
    credentials = cluster.env["SAKDN_MLFLOW_CREDENTIALS"]
    message = f"sakdn: error: tracking server {uri}: {problem.format(credentials=credentials)}"
    assert message in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]  # one message, no stack trace
    # nothing started: no search directory (Tune state, trial dirs), no study, no MLflow run
    assert not (storage / "searches" / name).exists()
    assert study_states(storage, name) == []
    client = tracking(cluster)
    exp = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    assert exp is None or client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`sakdn.search` = '{name}'") == []


# --- 3: the job's driver killed, the search resumed by another job ---------------------------


def _driver_pids(ns: str, name: str) -> list[int]:
    """The ``sakdn search`` driver of search ``name`` inside namespace ``ns``."""
    listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    pids = []
    for pid in listed.stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if (len(argv) > 2 and argv[1].endswith("/sakdn") and argv[2] == "search"
                and f"search.name={name}" in argv):
            pids.append(int(pid))
    return pids


def records_by_trial(search_dir: Path) -> dict[int, list[dict]]:
    """Tune's records of every Tune trial of a search, by the Optuna trial it ran (its ticket)."""
    from sakdn.search.trainable import read_ticket

    out: dict[int, list[dict]] = {}
    for result in sorted((search_dir / "tune").glob("run_trial_*/result.json")):
        number = read_ticket(search_dir, result.parent.name.split("_")[2])
        lines = result.read_text().splitlines()
        out.setdefault(number, []).extend(json.loads(line) for line in lines if line.strip())
    return out


def live_trial(search_dir: Path, low: int, high: int) -> tuple[int, dict] | None:
    """A running trial whose latest report (Tune's ``result.json``, written as the trial reports
    with its checkpoint) is at a step in [low, high): (Optuna number, that record). MLflow is
    no use for this: a trial's records reach it in batches, every 5 s."""
    try:
        records = records_by_trial(search_dir)
    except (OSError, ValueError):  # a line being written, a ticket not yet there
        return None
    for number, rows in records.items():
        if rows and not rows[-1].get("completed") and low <= rows[-1]["step"] < high:
            return number, rows[-1]
    return None


@pytest.mark.timeout(1200)
def test_a_killed_job_driver_resumes_to_exactly_num_samples_trials(
    cluster: Cluster, storage: Path, tmp_path: Path
):
    name = "resumed"
    search_dir = storage / "searches" / name
    last_step = TEACHER_EPOCHS + LONG_STUDENT_EPOCHS
    command = search_command(
        storage, name, RESUME_SAMPLES, f"student.epochs={LONG_STUDENT_EPOCHS}",
        "student.width=64", "student.segments=8",  # ~1-3 s per student epoch
    )
    first = Job(cluster, command, tmp_path / "first.log")
    client = tracking(cluster)
    deadline = time.time() + 400
    # kill once one trial has completed and another is mid-student-stage (past a checkpoint,
    # epochs still to go): both kinds of trial are then resumed
    while True:
        assert first.running(), first.output[-4000:]
        assert time.time() < deadline, "no kill point in time:\n" + first.output[-4000:]
        if "COMPLETE" in study_states(storage, name) and live_trial(
            search_dir, TEACHER_EPOCHS + 1, last_step - 1  # an epoch to spare
        ):
            break
        time.sleep(0.25)
    drivers = _driver_pids(cluster.head_ns, name)
    assert len(drivers) == 1, drivers
    os.kill(drivers[0], signal.SIGKILL)
    before = study_states(storage, name)
    output = first.wait(timeout=120)
    ended_at = time.time()  # the job has failed: its driver and its trials are gone
    assert f"Job '{first.id}' failed" in output, output[-4000:]
    assert before.count("COMPLETE") < RESUME_SAMPLES, before

    second = Job(cluster, [*command, "--resume"], tmp_path / "second.log")
    output = second.wait(timeout=600)
    assert second.succeeded(), output[-6000:]

    assert study_states(storage, name) == ["COMPLETE"] * RESUME_SAMPLES
    runs = children(client, name)
    assert sorted(int(r.data.tags["sakdn.optuna_trial"]) for r in runs) == list(
        range(RESUME_SAMPLES))  # one child run per trial: none twice, none missing
    assert all(r.info.status == "FINISHED" and r.data.tags["sakdn.state"] == "COMPLETE"
               for r in runs)
    # each run names the Tune trial that last ran it (a new one for a trial the dead driver
    # had started and Tune's saved state did not know)
    tune_ids = {r.data.tags["sakdn.optuna_trial"]: r.data.tags["sakdn.tune_trial_id"]
                for r in runs}
    assert tune_ids == {str(t.number): t.user_attrs["tune_trial_id"]
                        for t in load_study(storage, name).trials}
    records = records_by_trial(search_dir)
    progress = {}
    for run in runs:
        run_id, number = run.info.run_id, int(run.data.tags["sakdn.optuna_trial"])
        # each epoch logged once, across the two drivers
        assert steps(client, run_id, "student/val_acc") == list(
            range(1, LONG_STUDENT_EPOCHS + 1))  # MLflow's steps: each stage's own epochs
        logged = [(0, m) for m in client.get_metric_history(run_id, "teacher/loss")]
        logged += [(TEACHER_EPOCHS, m) for m in client.get_metric_history(run_id, "student/loss")]
        done = max((offset + m.step for offset, m in logged if m.timestamp < ended_at * 1000),
                   default=0)  # as Tune's monotone step
        after = [r for r in records.get(number, []) if r["timestamp"] > ended_at]
        state = before[number] if number < len(before) else "new"
        progress[number] = (state, done, [r["step"] for r in after])
        if state == "COMPLETE" or done == last_step:
            # trained to the end before the kill: not trained again (Tune may restore it; it
            # then re-reports its final result)
            assert {r["step"] for r in after} <= {last_step}, progress[number]
        elif done > TEACHER_EPOCHS:
            # a student epoch is logged only once its checkpoint is written: the trial
            # continued right after it
            assert after and after[0]["step"] == done + 1, progress[number]
        else:  # teacher epochs only: maybe replayed from the teacher store, not checkpointed
            assert after and after[0]["step"] <= done + 1, progress[number]
        if state != "COMPLETE":
            assert after[-1]["completed"] and after[-1]["step"] == last_step, progress[number]
    print(f"(state at the kill, last step logged, steps reported after it) per trial: {progress}")
    # a trial that had trained student epochs when its driver died went on from there
    assert any(state == "RUNNING" and done > TEACHER_EPOCHS
               for state, done, _ in progress.values()), progress
    exp = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    parents = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`sakdn.search` = '{name}' and tags.`sakdn.role` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


# --- 2: a worker node killed while its trial trains (last: one worker is left) --------------


@pytest.mark.timeout(1200)
def test_a_killed_worker_s_trial_resumes_from_its_checkpoint_on_the_other_worker(
    cluster: Cluster, storage: Path, tmp_path: Path
):
    name = "nodefail"
    first_student_step = TEACHER_EPOCHS + 1
    last_step = TEACHER_EPOCHS + LONG_STUDENT_EPOCHS
    job = Job(cluster, search_command(
        storage, name, NODE_SAMPLES, f"student.epochs={LONG_STUDENT_EPOCHS}",
        "student.width=64", "student.segments=8",  # ~1-3 s per student epoch
        "search.checkpoint_every=1",  # a Tune checkpoint at every student epoch to move over
    ), tmp_path / "job.log")
    client = tracking(cluster)
    live = None
    deadline = time.time() + 400
    while live is None:  # a trial with a student checkpoint and epochs still to go
        assert job.running(), job.output[-4000:]
        assert time.time() < deadline, "no trial caught mid-training:\n" + job.output[-4000:]
        live = live_trial(storage / "searches" / name, first_student_step + 1, last_step)
        if live is None:
            time.sleep(0.25)
    number, record = live
    killed_ip = record["node_ip"]
    worker = cluster.worker_ips.index(killed_ip) + 1
    out = subprocess.run(
        [str(SCRIPTS / "kill-node.sh"), "--state", str(cluster.state), "--worker", str(worker)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    killed_at = time.time()  # every process of the worker is gone by now
    survivor = next(ip for ip in cluster.worker_ips if ip != killed_ip)
    output = job.wait(timeout=600)
    assert job.succeeded(), output[-6000:]

    # the search completed with the requested trials, each with exactly one finished run
    assert study_states(storage, name) == ["COMPLETE"] * NODE_SAMPLES
    runs = children(client, name)
    assert sorted(int(r.data.tags["sakdn.optuna_trial"]) for r in runs) == list(
        range(NODE_SAMPLES))
    assert all(r.info.status == "FINISHED" and r.data.tags["sakdn.state"] == "COMPLETE"
               for r in runs)

    # the victim's second attempt ran on the survivor and began past its first student epoch
    victim = next(r for r in runs if int(r.data.tags["sakdn.optuna_trial"]) == number)
    moved = client.get_run(victim.info.run_id)
    assert moved.data.tags["sakdn.node_ips"] == f"{killed_ip},{survivor}"
    assert moved.data.tags["sakdn.node_ip"] == survivor
    records = tune_results(storage / "searches" / name, moved.data.tags["sakdn.tune_trial_id"])
    starts = [i for i, r in enumerate(records) if r["iterations_since_restore"] == 1]
    assert len(starts) == 2, [(r["stage"], r["epoch"], r["node_ip"]) for r in records]
    before, after = records[: starts[1]], records[starts[1]:]
    epochs = {"before": [(r["stage"], r["epoch"]) for r in before],
              "after": [(r["stage"], r["epoch"]) for r in after]}
    print(f"killed worker {worker} ({killed_ip}), resumed on {survivor}: {epochs}")
    assert {r["node_ip"] for r in before} == {killed_ip}
    assert {r["node_ip"] for r in after} == {survivor}
    assert after[0]["stage"] == "student" and after[0]["epoch"] > 1  # from a checkpoint
    assert after[0]["training_iteration"] > 1 and after[-1]["epoch"] == LONG_STUDENT_EPOCHS
    # ... from the last one: right after the last epoch the killed attempt finished (its
    # metrics carry the time they were logged, sent later from the spool if need be)
    history = client.get_metric_history(victim.info.run_id, "student/loss")
    last_done = max(m.step for m in history if m.timestamp < killed_at * 1000)
    assert after[0]["epoch"] == last_done + 1, (last_done, epochs)  # student epochs both
    # MLflow holds each epoch once: the resumed attempt neither lost nor repeated one
    assert steps(client, victim.info.run_id, "student/loss") == list(
        range(1, LONG_STUDENT_EPOCHS + 1))


# --- last: where the passwords are ----------------------------------------------------------


def test_the_passwords_are_only_in_their_credential_files(
    cluster: Cluster, spread: Spread, tmp_path_factory
):
    """After every search of the module, neither password of the tracking server is in the
    state directory (MLflow's database, artifacts and auth database, the search storage with
    Tune's state and the trial directories, the logs), in anything the tests wrote (the jobs'
    output), or in Ray's session directories (the job drivers' and workers' logs); only in
    ``mlflow_search.credentials`` and ``mlflow_admin.credentials``, by design."""
    passwords = {who: cluster.login(who)[1].encode() for who in ("search", "admin")}
    holders = {cluster.state / f"mlflow_{who}.credentials" for who in passwords}
    ray_dirs = [Path(d) for d in _records_of(cluster, "dir")]
    roots = [tmp_path_factory.getbasetemp(), *ray_dirs]  # the state dir is in the first
    assert cluster.state.is_relative_to(roots[0])
    found, scanned, logs_seen = [], 0, False
    for root in roots:
        for path in root.rglob("*"):
            if path in holders or not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            scanned += 1
            logs_seen |= path.name.startswith("job-driver-") and (
                f"search {spread.name}: ".encode() in data)
            found += [(who, str(path)) for who, secret in passwords.items() if secret in data]
    print(f"scanned {scanned} files under {[str(r) for r in roots]}")
    assert logs_seen, "the scan did not reach the job drivers' logs"
    assert found == []
    for who, secret in passwords.items():  # where they are, by design
        assert secret in (cluster.state / f"mlflow_{who}.credentials").read_bytes()


def _records_of(cluster: Cluster, kind: str) -> list[str]:
    lines = (cluster.state / "created.txt").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[:1] == [kind]]
