"""MLflow tracking of searches: one parent run per search, one nested child run per trial.

Layout (tags are the lookup keys, so every step is idempotent under resume and retry):

- parent run: tags ``sakdn.role=parent``, ``sakdn.search=<name>``; params = the experiment's
  flat config; artifacts = the experiment file and the resolved search space; at the end the
  best config and metric, trial counts and the teacher-store hit rate.
- child run: tags ``mlflow.parentRunId``, ``sakdn.role=trial``, ``sakdn.search``,
  ``sakdn.optuna_trial`` (the lookup key: stable when a resumed search hands an interrupted
  Optuna trial to a new Tune trial), ``sakdn.tune_trial_id``, ``sakdn.state``
  (RUNNING → COMPLETE / PRUNED / FAILED / STOPPED, as ``sakdn.outcome`` decides),
  ``sakdn.error``; params = the trial's full flat config; metrics per epoch with ``step``;
  artifacts ``models/student.pt`` and ``models/teachers.pt`` for completed trials, loadable
  with::

      from sakdn.train import load_student
      model, config, meta = load_student(mlflow.artifacts.download_artifacts(
          run_id=RUN_ID, artifact_path="models/student.pt", tracking_uri=URI))

Trials must keep training while the tracking server is down, so trial-side logging goes
through :class:`RunBuffer`: operations are queued in memory and in a spool file in the trial's
work directory, sent when the store accepts them, and retried with exponential backoff
otherwise — never raising into the training loop.

Tag names are ``sakdn.names.Tag`` (shared with the code that reads them back).

A tracking server's login comes from the environment (``sakdn.tracking_auth``): every client
made here uses it. Nothing under ``sakdn.train`` imports this module (training runs without
MLflow).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException

from sakdn.config import DEFAULT_STORAGE
from sakdn.names import EXPERIMENT_KIND, Role, State, Tag, trial_name
from sakdn.tracking_auth import is_server, use_credentials

logger = logging.getLogger(__name__)

# The MLflow run status that goes with each final trial state. A pruned trial did what a
# search asks of it (the pruner stopped it by design; its curve up to there is valid), so its
# run is FINISHED, not KILLED: MLflow's UI draws KILLED like a failure. Its run name says
# "pruned" (trial_run_name), which the runs table always shows.
RUN_STATUS = {State.COMPLETE: "FINISHED", State.PRUNED: "FINISHED", State.FAILED: "FAILED",
              State.STOPPED: "KILLED"}

MAX_PARAMS, MAX_TAGS, MAX_METRICS = 100, 100, 1000  # MLflow's log_batch limits
MAX_TAG_VALUE = 5000
VERSIONED = ("sakdn-search", "torch", "torchvision", "numpy", "ray", "optuna", "mlflow", "pyts")


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui --host 127.0.0.1` serves a local store


def ui_url(base: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """A link into MLflow's UI that opens on the runs (or one run's overview).

    MLflow 3.17's UI chooses between its GenAI view (traces) and its model-training view
    (runs) by one switch per browser, GenAI unless the user changed it; the URL parameter
    ``workflowType=machine_learning`` selects the runs view whatever the browser remembers.
    (The experiments also carry ``mlflow.experimentKind``, which UI versions that decide per
    experiment read.)"""
    path = f"#/experiments/{experiment_id}" if experiment_id else "#/experiments"
    if experiment_id and run_id:
        path += f"/runs/{run_id}"
    elif experiment_id:
        path += "/runs"
    return f"{base.rstrip('/')}/{path}?workflowType=machine_learning"


def default_tracking_uri(storage_path: str | Path = DEFAULT_STORAGE) -> str:
    """The tracking URI a search uses when nothing names one: ``MLFLOW_TRACKING_URI``, else
    the SQLite store in the search's storage path (``search.storage_path``)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    return env or f"sqlite:///{Path(storage_path).resolve() / 'mlflow.db'}"


def configure_http() -> None:
    """Fail fast on an unreachable tracking server (our own buffer retries, with backoff).

    MLflow's default retries an HTTP request for minutes; a trial's epoch must not wait that
    long. Set only where the user has not chosen values.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def client(tracking_uri: str) -> MlflowClient:
    """A client of ``tracking_uri``; a tracking server gets this process's login first."""
    if is_server(tracking_uri):
        use_credentials(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def local_artifact_root(tracking_uri: str, storage_path: str | Path) -> str | None:
    """Where artifacts go for a local store (sqlite / file): ``<storage>/mlartifacts``.

    A tracking server decides itself (``None``): with ``--serve-artifacts`` trials on other
    nodes upload through it.
    """
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        return str(Path(storage_path).resolve() / "mlartifacts")
    return None


def ensure_experiment(mlflow: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the MLflow experiment ``name``, created when missing (race-safe)."""
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        try:
            experiment_id = mlflow.create_experiment(
                name, artifact_location=artifact_location,
                tags={Tag.EXPERIMENT_KIND: EXPERIMENT_KIND})
            return experiment_id
        except MlflowException:
            found = mlflow.get_experiment_by_name(name)  # created meanwhile by another process
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        mlflow.restore_experiment(found.experiment_id)
    if found.tags.get(Tag.EXPERIMENT_KIND) != EXPERIMENT_KIND:  # one made before, or by hand
        mlflow.set_experiment_tag(found.experiment_id, Tag.EXPERIMENT_KIND, EXPERIMENT_KIND)
    return found.experiment_id


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def search_runs(
    mlflow: MlflowClient, experiment_ids: list[str], tags: Mapping[str, str],
    order_by: list[str] | None = None, max_results: int = 10000,
) -> list[Run]:
    """Active runs carrying every tag in ``tags`` (newest first unless ``order_by``)."""
    where = " and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in tags.items())
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow.search_runs(
            experiment_ids, filter_string=where, run_view_type=ViewType.ACTIVE_ONLY,
            max_results=min(max_results, 1000), order_by=order_by or ["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token or len(runs) >= max_results:
            return runs


def all_experiment_ids(mlflow: MlflowClient) -> list[str]:
    return [e.experiment_id for e in mlflow.search_experiments(view_type=ViewType.ACTIVE_ONLY)]


def find_parent(
    mlflow: MlflowClient, search: str, experiment_ids: list[str] | None = None
) -> Run | None:
    """The parent run of a search given by name or by parent run id (newest if several)."""
    ids = experiment_ids or all_experiment_ids(mlflow)
    runs = search_runs(mlflow, ids, {Tag.ROLE: Role.PARENT, Tag.SEARCH: search})
    if runs:
        if len(runs) > 1:
            logger.warning("%d parent runs are named %r; using the newest", len(runs), search)
        return runs[0]
    try:
        run = mlflow.get_run(search)
    except MlflowException:
        return None
    return run if run.data.tags.get(Tag.ROLE) == Role.PARENT else None


def children(mlflow: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of a search, oldest first."""
    return search_runs(
        mlflow, [parent.info.experiment_id],
        {Tag.PARENT_RUN: parent.info.run_id, Tag.ROLE: Role.TRIAL},
        order_by=["attributes.start_time ASC"],
    )


def find_child(
    mlflow: MlflowClient, experiment_id: str, parent_id: str, optuna_trial: int | None,
    tune_trial_id: str,
) -> Run | None:
    """A trial's child run: by Optuna trial number when known, else by Tune trial id."""
    tags = {Tag.PARENT_RUN: parent_id, Tag.ROLE: Role.TRIAL}
    if optuna_trial is not None:
        tags[Tag.OPTUNA_TRIAL] = str(optuna_trial)
    else:
        tags[Tag.TUNE_TRIAL] = tune_trial_id
    runs = search_runs(mlflow, [experiment_id], tags, order_by=["attributes.start_time ASC"])
    return runs[0] if runs else None


def open_parent(
    mlflow: MlflowClient, experiment_id: str, search: str, params: Mapping[str, Any],
    tags: Mapping[str, str], run_name: str | None = None,
) -> tuple[str, bool]:
    """Create the search's parent run, or reopen it (RUNNING again) on resume.

    Returns (run id, whether it already existed).
    """
    runs = search_runs(mlflow, [experiment_id], {Tag.ROLE: Role.PARENT, Tag.SEARCH: search})
    if runs:
        run_id = runs[0].info.run_id
        mlflow.update_run(run_id, status="RUNNING")
        log_batch(mlflow, run_id, tags=tags)
        return run_id, True
    run = mlflow.create_run(
        experiment_id, run_name=run_name or search,
        tags={Tag.ROLE: Role.PARENT, Tag.SEARCH: search, Tag.STATE: State.RUNNING, **tags},
    )
    log_batch(mlflow, run.info.run_id, params=params)
    return run.info.run_id, False


def log_batch(
    mlflow: MlflowClient, run_id: str, metrics: Iterable[Metric] = (),
    params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
) -> None:
    """``log_batch`` in chunks that respect MLflow's per-call limits."""
    metrics = list(metrics)
    param_items = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
    tag_items = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in (tags or {}).items()]
    for i in range(0, len(param_items), MAX_PARAMS):
        mlflow.log_batch(run_id, params=param_items[i : i + MAX_PARAMS])
    for i in range(0, len(tag_items), MAX_TAGS):
        mlflow.log_batch(run_id, tags=tag_items[i : i + MAX_TAGS])
    for i in range(0, len(metrics), MAX_METRICS):
        mlflow.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS])


def _param_text(value: Any) -> str:
    return str(value)


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries MLflow can store as metrics (numbers and bools; NaN kept)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def environment_tags(source_dir: str | Path | None = None) -> dict[str, str]:
    """Git commit (when the code is a checkout), package versions, host and Python."""
    tags = {Tag.HOSTNAME: socket.gethostname(), Tag.PYTHON: _python_version()}
    for name in VERSIONED:
        try:
            tags[Tag.VERSION_PREFIX + name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = git_commit(source_dir or Path(__file__).resolve().parent.parent)
    if commit:
        tags[Tag.MLFLOW_GIT_COMMIT] = commit
        tags[Tag.GIT_COMMIT] = commit
    return tags


def git_commit(directory: str | Path) -> str | None:
    """``HEAD`` of the checkout holding ``directory`` (with ``-dirty`` when modified)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        suffix = "-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
        return head.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return None


def _python_version() -> str:
    import platform

    return platform.python_version()


# --- resilient logging ----------------------------------------------------------------------


def _transient(err: Exception) -> bool:
    """Whether retrying can help: connection problems and server errors, not bad requests."""
    if isinstance(err, MlflowException):
        status = err.get_http_status_code()
        return status >= 500 or status == 429
    return True


@dataclass
class _Backoff:
    base: float = 1.0
    cap: float = 60.0
    failures: int = 0
    next_try: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** (self.failures - 1))
        self.next_try = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.next_try = 0, 0.0


class RunBuffer:
    """Logging for one MLflow run that survives an unreachable tracking store.

    Every call queues an operation (params, metrics, tags, artifact) in memory and — when a
    ``spool`` path is given — in that JSON file, then tries to send the queue. A failure
    never raises: the queue waits, the next attempt comes after an exponential backoff
    (``base``·2ⁿ seconds, at most ``cap``), and ``flush(wait_s)`` blocks up to ``wait_s``
    seconds for the store to come back. A new ``RunBuffer`` on the same spool (a retried
    trial, or the driver after the trial ended) picks the queue up; a metric at a step the
    spool already saw for that metric is not sent twice (per metric: a run's stages and folds
    each count their epochs from 1).

    The run itself may be unknown at first: ``resolve`` (find-or-create) is called on the
    first send and its run id is kept in the spool.

    With ``send_every_s`` a queued operation is only spooled until the first one queued that
    many seconds after the last send, which sends them all (consecutive metric records in one
    ``log_batch``): a trial's epoch then pays no store round trip (10–22 ms a call measured
    with a sqlite store), and records reach MLflow later. ``flush`` always sends.
    """

    def __init__(
        self,
        mlflow: MlflowClient,
        run_id: str | None = None,
        resolve: Callable[[MlflowClient], str] | None = None,
        spool: str | Path | None = None,
        base: float = 1.0,
        cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        send_every_s: float = 0.0,
    ) -> None:
        if run_id is None and resolve is None:
            raise ValueError("RunBuffer needs a run id or a resolve function")
        self._mlflow = mlflow
        self._resolve = resolve
        self._spool = Path(spool) if spool else None
        self._backoff = _Backoff(base, cap)
        self._clock, self._sleep = clock, sleep
        self._send_every_s = send_every_s
        self._last_send = -math.inf
        self._ops: list[dict[str, Any]] = []
        self._high: dict[str, int] = {}  # per metric, the largest step queued (any attempt)
        self._replayed: dict[str, int] = {}  # per metric, steps an earlier attempt queued
        self._replayed_all = -math.inf  # an older spool's one step for every metric
        self._warned = False
        self.run_id = run_id
        if self._spool and self._spool.exists():
            self._load()

    # --- queueing -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._ops)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._queue({"op": "params", "items": {k: _param_text(v) for k, v in params.items()}})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._queue({"op": "tags", "items": {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items()}})

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        values = {k: v for k, v in numeric_metrics(metrics).items()
                  if step > self._replayed.get(k, self._replayed_all)}  # else logged before
        if not values:
            return
        ts = int(time.time() * 1000)
        for key in values:
            self._high[key] = max(self._high.get(key, int(step)), int(step))
        self._queue({"op": "metrics", "step": int(step), "time": ts, "items": values})

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._queue({"op": "artifact", "path": str(local_path), "dest": artifact_path})

    def _queue(self, op: dict[str, Any]) -> None:
        self._ops.append(op)
        self._save()
        if self._clock() - self._last_send >= self._send_every_s:
            self.flush()

    # --- sending --------------------------------------------------------------------------

    def flush(self, wait_s: float = 0.0) -> bool:
        """Send what is queued; True when nothing is left.

        Without ``wait_s`` this returns at once while a backoff is running (a training loop
        calls it every epoch); with it, it retries until the queue is empty or time is up.
        """
        deadline = self._clock() + wait_s
        self._last_send = self._clock()
        while self._ops or self.run_id is None:
            now = self._clock()
            if now < self._backoff.next_try:
                if self._backoff.next_try > deadline:
                    return False
                self._sleep(self._backoff.next_try - now)
                continue
            try:
                self._send()
            except Exception as err:  # the store is down or refused: keep the queue
                if not _transient(err) and self.run_id is not None and self._ops:
                    dropped = self._ops.pop(0) if self._ops else None
                    logger.warning("MLflow refused %s: %s; dropped", _describe(dropped), err)
                    self._save()
                    continue
                delay = self._backoff.failed(self._clock())
                if not self._warned or self._backoff.failures % 10 == 0:
                    logger.warning(
                        "MLflow tracking unavailable (%s: %s); %d operation(s) kept, "
                        "retrying in %.0f s", type(err).__name__, _short(err), len(self._ops),
                        delay,
                    )
                    self._warned = True
                self._save()
                if self._backoff.next_try > deadline:
                    return False
                continue
            if self._warned:
                logger.warning("MLflow tracking reachable again; queue flushed")
                self._warned = False
            self._backoff.succeeded()
        return True

    def _send(self) -> None:
        if self.run_id is None:
            self.run_id = self._resolve(self._mlflow)
            self._save()
        while self._ops:
            op = self._ops[0]
            kind = op["op"]
            if kind == "params":
                log_batch(self._mlflow, self.run_id, params=op["items"])
            elif kind == "tags":
                log_batch(self._mlflow, self.run_id, tags=op["items"])
            elif kind == "metrics":
                done = self._send_metrics()
            elif kind == "artifact":
                if Path(op["path"]).exists():
                    self._mlflow.log_artifact(self.run_id, op["path"], op["dest"])
                else:
                    logger.warning("artifact %s no longer exists; not logged", op["path"])
            before = len(self._ops)
            del self._ops[:done if kind == "metrics" else 1]
            if before // 20 != len(self._ops) // 20:
                self._save()
        self._save()

    def _send_metrics(self) -> int:
        """Send the leading run of metric records in one call (at most ``MAX_METRICS``
        values, so a call is all or nothing); how many records went. A refused batch of
        several is sent record by record, so only the refused record is dropped."""
        count, values = 0, 0
        for op in self._ops:
            if op["op"] != "metrics" or (count and values + len(op["items"]) > MAX_METRICS):
                break
            count, values = count + 1, values + len(op["items"])
        try:
            log_batch(self._mlflow, self.run_id, metrics=_metrics(self._ops[:count]))
        except Exception as err:
            if count == 1 or _transient(err):
                raise
            log_batch(self._mlflow, self.run_id, metrics=_metrics(self._ops[:1]))
            return 1
        return count

    # --- the spool ------------------------------------------------------------------------

    def _save(self) -> None:
        if self._spool is None:
            return
        state = {"run_id": self.run_id, "high_steps": self._high, "ops": self._ops}
        if self._replayed_all > -math.inf:  # an older spool's bound still holds for its keys
            state["high_step"] = self._replayed_all
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._spool.with_name(self._spool.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._spool)

    def _load(self) -> None:
        try:
            state = json.loads(self._spool.read_text())
        except (OSError, ValueError) as err:
            logger.warning("unreadable MLflow spool %s (%s); starting a new one", self._spool, err)
            return
        self.run_id = self.run_id or state.get("run_id")
        self._ops = list(state.get("ops", []))
        self._high = {k: int(v) for k, v in (state.get("high_steps") or {}).items()}
        self._replayed = dict(self._high)
        high = state.get("high_step")  # written before steps were kept per metric
        if high is not None:
            self._replayed_all = float(high)


def _metrics(ops: list[dict[str, Any]]) -> list[Metric]:
    return [Metric(k, v, op["time"], op["step"]) for op in ops for k, v in op["items"].items()]


def _describe(op: dict[str, Any] | None) -> str:
    if op is None:
        return "the run lookup"
    return f"{op['op']} {list(op.get('items', {}))[:5] if 'items' in op else op.get('path')}"


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def spool_run_id(spool: str | Path) -> str | None:
    """The run a spool file's records belong to (None when absent, unreadable or unknown)."""
    try:
        return json.loads(Path(spool).read_text()).get("run_id")
    except (OSError, ValueError):
        return None


def spool_pending(spool: str | Path) -> int:
    """How many operations a spool file still holds (0 when absent or unreadable)."""
    try:
        return len(json.loads(Path(spool).read_text()).get("ops", []))
    except (OSError, ValueError):
        return 0


# --- trial runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchTracking:
    """Where a search's runs live; handed to every trial."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search: str


def trial_resolver(
    tracking: SearchTracking, tune_trial_id: str, optuna_trial: int | None,
    tags: Mapping[str, str] | None = None,
) -> Callable[[MlflowClient], str]:
    """Find-or-create of a trial's child run (for ``RunBuffer``): reopens it when found."""

    def resolve(mlflow: MlflowClient) -> str:
        base = {
            Tag.ROLE: Role.TRIAL, Tag.SEARCH: tracking.search,
            Tag.SEARCH_RUN: tracking.parent_run_id, Tag.STATE: State.RUNNING, **(tags or {}),
        }
        if tune_trial_id:  # unknown when the driver sends a dead trial's spool
            base[Tag.TUNE_TRIAL] = tune_trial_id
        if optuna_trial is not None:
            base[Tag.OPTUNA_TRIAL] = str(optuna_trial)
        run = find_child(
            mlflow, tracking.experiment_id, tracking.parent_run_id, optuna_trial, tune_trial_id
        )
        if run is not None:
            if run.info.status != "RUNNING":
                mlflow.update_run(run.info.run_id, status="RUNNING")
            if Tag.ERROR in run.data.tags:  # left by an interrupted attempt
                mlflow.delete_tag(run.info.run_id, Tag.ERROR)
            log_batch(mlflow, run.info.run_id, tags=base)
            return run.info.run_id
        name = trial_name(optuna_trial) if optuna_trial is not None else tune_trial_id
        created = mlflow.create_run(
            tracking.experiment_id, run_name=name,
            tags={Tag.PARENT_RUN: tracking.parent_run_id, **base},
        )
        return created.info.run_id

    return resolve


def trial_run_name(number: int | None, state: str) -> str | None:
    """A trial run's name once it ended: its trial name, with the state unless COMPLETE (a
    pruned run is FINISHED like a complete one, so its name is what tells them apart)."""
    if number is None:
        return None
    name = trial_name(number)
    return name if state == State.COMPLETE else f"{name} ({state.lower()})"


def finish_run(mlflow: MlflowClient, run_id: str, state: str, error: str | None = None,
               number: int | None = None) -> None:
    """Set a trial's final state tag (and error), its name by state, and end its run with the
    matching status."""
    tags = {Tag.STATE: state}
    if error:
        tags[Tag.ERROR] = error
    name = trial_run_name(number, state)
    if name:
        tags[Tag.RUN_NAME] = name
    log_batch(mlflow, run_id, tags=tags)
    mlflow.set_terminated(run_id, status=RUN_STATUS.get(state, "KILLED"))
