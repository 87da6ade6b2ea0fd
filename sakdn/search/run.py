"""``sakdn search``: validate, prepare data, open the MLflow parent run, run Tune, summarise.

Order matters: the experiment file, the ``search:`` section, the space, every weights file a
trial can load, sampler, pruner and scheduler are all validated before Ray starts, so a typo or
a weights file that is not staged fails in seconds with a message naming the file; a tracking
server's login is checked before anything is written, so missing or wrong credentials are one
message naming the server, not a failure in every trial. Then the preprocessing caches are
built once (trials only read them), the MLflow parent run is opened (or reopened on
``--resume``), and Ray is joined: the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``)
or ``--address``, else an embedded single-node Ray bound to the loopback interface.

Layout of a search on disk (``search.storage_path``, default ``runs/search``)::

    <storage>/mlflow.db, mlartifacts/     MLflow store (when no tracking URI is given)
    <storage>/optuna.db                   Optuna studies (when no study storage is given)
    <storage>/<name>/tune/                Ray Tune's experiment (what --resume restores)
    <storage>/<name>/trials/<number>/     trial work dirs: checkpoints, models, MLflow spool
    <storage>/<name>/tickets/             Tune trial id → Optuna trial number
    <storage>/<name>/teacher_store/       trained teacher sets, shared by trials
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sakdn.config import ExperimentConfig, Scalar, SearchConfig, dump_yaml, parse_overrides
from sakdn.errors import ConfigError
from sakdn.names import Result, Role, SearchMetric, State, StudyAttr, Tag, trial_name
from sakdn.search.experiment import Sources, read_experiment
from sakdn.search.space import SearchSpace, load_space

logger = logging.getLogger(__name__)

TUNE_DIR = "tune"


@dataclass
class SearchResult:
    """What a finished (or resumed-and-finished) search produced."""

    name: str
    path: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    study_storage: str
    study_name: str
    metric: tuple[str, ...]
    best_value: float | list[float] | None = None
    best_trial: int | None = None
    best_run_id: str | None = None
    best_config: dict[str, Scalar] | None = None
    # the trial of search.start_point and its value (first objective), when it completed
    reference_trial: int | None = None
    reference_value: float | None = None
    best_origin: str = ""  # how the best trial's configuration came about (names.Origin)
    counts: dict[str, int] = field(default_factory=dict)  # child-run states
    study_counts: dict[str, int] = field(default_factory=dict)  # Optuna trial states
    teacher_hits: int = 0
    teacher_lookups: int = 0
    wall_time_s: float = 0.0  # this run of sakdn search
    wall_total_s: float | None = None  # every run of this search, this one included
    wall_runs: int = 0
    interrupted: bool = False  # stopped before every trial ended (Ctrl-C): --resume continues
    resume_command: str = ""  # the command line that continues it


@dataclass(frozen=True)
class Prepared:
    """A validated search, ready to run."""

    search: SearchConfig  # resolved: paths absolute, derived defaults filled
    config: ExperimentConfig  # the experiment, paths absolute
    space: SearchSpace
    experiment_path: str
    sources: Sources  # where each setting came from (errors name the file or --set)


def prepare(experiment_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Prepared:
    """Read and validate everything a search needs, weights files included; raises before
    anything starts."""
    from sakdn.search.prepare import absolute_paths, check_weights

    config, search, sources = read_experiment(experiment_path, parse_overrides(list(overrides)))
    config = absolute_paths(config, Path.cwd()).replace({"train.progress": False})
    space = load_space(search.space)
    config = check_weights(config, space, log=lambda m: print(m, flush=True))
    return Prepared(search, config, space, str(experiment_path), sources)


def run_search(
    experiment_path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    address: str | None = None,
    resume_command: str | None = None,
) -> SearchResult:
    """Run (or with ``resume`` continue) the search an experiment file describes.

    ``resume_command``: what an interrupted search prints to be continued (default: this
    search's ``sakdn search`` command line with ``--resume``)."""
    started = time.time()
    _quiet_logs()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:  # read when ray is imported: loopback-only single-node Ray
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # teacher epochs lack it
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # keep the CLIReporter's columns
    # Short epochs + num_to_keep make Tune snapshot its state often: wanted (resume), not a
    # problem worth a warning per epoch.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    p = prepare(experiment_path, overrides)
    from sakdn.tracking_auth import check_login

    check_login(p.search.tracking_uri)  # a missing or wrong login stops here, before anything
    parts = _build_parts(p)  # sampler, pruner, searcher, scheduler: may raise ConfigError
    tune_dir = p.search.search_dir / TUNE_DIR
    restorable = _check_state(p, parts["searcher"], tune_dir, resume)
    if resume and _is_finished(parts["searcher"].study, p.search.num_samples):
        print(f"search {p.search.name} is finished: nothing to run (its report: "
              f"{p.search.search_dir / 'report' / 'report.html'})", flush=True)
        return SearchResult(name=p.search.name, path=str(p.search.search_dir),
                            tracking_uri=p.search.tracking_uri, experiment_id=None,
                            parent_run_id=None, study_storage=p.search.study_storage,
                            study_name=p.search.study_name, metric=p.search.metrics)

    from sakdn.search.prepare import build_caches

    print(f"preparing data for {p.search.name} ...", flush=True)
    build_caches(p.config, p.space, log=lambda m: print(m, flush=True))

    tracking = _open_tracking(p, resume)
    ray_started = _init_ray(address)
    _stop_on_sigterm()
    resume_command = resume_command or _resume_command(experiment_path, overrides)
    try:
        _fit(p, parts, tracking, tune_dir, restorable)
    except BaseException:
        _close(p, parts, tracking, started, interrupted=True)
        print(f"\nsearch {p.search.name} interrupted; continue it with:\n  {resume_command}",
              flush=True)
        raise
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    # Tune returns normally after Ctrl-C too (and then calls every trial TERMINATED): the
    # study knows better — trials it still holds RUNNING were never told an outcome.
    unfinished = _running_trials(parts["searcher"])
    result = _close(p, parts, tracking, started, interrupted=bool(unfinished))
    result.resume_command = resume_command
    _print_summary(result)
    if not unfinished:
        from sakdn.report import report_search  # plots, leaderboard, report on the parent

        report_search(result)
    return result


# --- validation -----------------------------------------------------------------------------


def _build_parts(p: Prepared) -> dict[str, Any]:
    from sakdn.search.driver import TicketingSearcher, make_scheduler
    from sakdn.search.scheduler import make_pruner
    from sakdn.search.searcher import make_sampler, startup_trials

    s = p.search
    options = s.sampler_kwargs
    unknown = sorted(set(options) - {"n_startup_trials"})
    if unknown:
        raise ConfigError(f"search.sampler_options.{unknown[0]}", options[unknown[0]],
                          "unknown sampler option; use n_startup_trials",
                          p.sources.of("search.sampler_options"))
    try:
        sampler = make_sampler(s.sampler, seed=s.seed, concurrency=s.max_concurrent_trials,
                               **options)
        pruner = make_pruner(s.pruner, **s.pruner_kwargs)
        metric, mode = s.objective()
        s.search_dir.mkdir(parents=True, exist_ok=True)
        _ensure_sqlite_dir(s.study_storage)
        searcher = TicketingSearcher(
            p.space, base=p.config.to_flat(), metric=metric, mode=mode, sampler=sampler,
            pruner=pruner, storage=s.study_storage, study_name=s.study_name,
            points_to_evaluate=s.points or None, reference=_reference(p),
            startup_trials=startup_trials(s.sampler, s.max_concurrent_trials, **options),
            search_dir=str(s.search_dir), num_samples=s.num_samples,
        )
        scheduler = make_scheduler(s.scheduler, searcher, _pruned_on(s), s.modes[0],
                                   s.scheduler_kwargs, max_t=_max_student_epochs(p),
                                   signal_floor=_signal_floor(p))
    except ConfigError as err:
        where = p.sources.of(err.key)
        raise err.with_file(where) if where and not err.file else err
    return {"searcher": searcher, "scheduler": scheduler}


def _reference(p: Prepared) -> dict[str, Any] | None:
    """The experiment's own values of the space's keys (``search.start_point``): trial 0,
    never pruned, so the report can say whether the best trial beats where the search
    started."""
    return p.space.start_point(p.config.to_flat()) if p.search.start_point else None


def _pruned_on(s: SearchConfig) -> str:
    """The result key pruning reads: the prune metric per student epoch, or per fold when
    trials are cross-validated (``fold/<metric>``, reported as each fold ends)."""
    return Result.FOLD_PREFIX + s.prune_metric if s.folds > 1 else s.prune_metric


# pruners that judge a trial by a bound or by its own curve, not against other trials: the
# chance plateau makes no comparison of trials there, so they need no wait for signal
ABSOLUTE_PRUNERS = ("threshold", "patient", "none")


def _signal_floor(p: Prepared) -> float | None:
    """The accuracy some trial must beat at a step before pruning decides there
    (``chance_floor`` of the validation split): None when pruning is not on an accuracy per
    epoch, or when the pruner does not compare trials (``ABSOLUTE_PRUNERS``)."""
    from sakdn.search.scheduler import chance_floor
    from sakdn.train.data import split_sizes

    s = p.search
    if (s.folds > 1 or s.pruner in ABSOLUTE_PRUNERS or s.modes[0] != "max"
            or not s.prune_metric.endswith("acc")):
        return None
    classes, val = split_sizes(p.config)
    return chance_floor(classes, val) if val else None


def _max_student_epochs(p: Prepared) -> int:
    if "student.epochs" in p.space:
        param = p.space["student.epochs"]
        return int(param.high if param.high is not None else max(param.choices))
    return p.config.student.epochs


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _check_state(p: Prepared, searcher, tune_dir: Path, resume: bool) -> bool:
    """Refuse to overwrite an existing search; on resume, say what is restored."""
    from optuna.trial import TrialState
    from ray.tune import Tuner

    restorable = Tuner.can_restore(str(tune_dir))
    # Trials queued from search.points_to_evaluate wait in the study before anything ran.
    asked = sum(t.state != TrialState.WAITING for t in searcher.study.trials)
    if not resume:
        found = []
        if restorable or tune_dir.exists():
            found.append(f"Tune state in {tune_dir}")
        if asked:
            found.append(f"Optuna study {p.search.study_name!r} with {asked} trial(s)")
        if found:
            raise ConfigError(
                "search.name", p.search.name,
                "a search of this name exists (" + "; ".join(found) + "): pass --resume to "
                "continue it, or set another search.name", p.sources.of("search.name"),
            )
        return False
    if not restorable:
        print(f"no Tune state to restore in {tune_dir}: starting Tune afresh "
              f"(the study keeps its {asked} trial(s))", flush=True)
        searcher.adopt_orphans(known=set())
    return restorable


# --- tracking -------------------------------------------------------------------------------


def _open_tracking(p: Prepared, resume: bool):
    from sakdn import tracking as tr

    s = p.search
    tr.configure_http()
    _ensure_sqlite_dir(s.tracking_uri)
    mlflow = tr.client(s.tracking_uri)
    try:
        exp_id = tr.ensure_experiment(
            mlflow, s.experiment_name, tr.local_artifact_root(s.tracking_uri, s.storage_path)
        )
        params = p.config.to_flat()
        existing = tr.search_runs(mlflow, [exp_id], {Tag.ROLE: Role.PARENT, Tag.SEARCH: s.name})
        if existing and not resume:
            raise ConfigError(
                "search.name", s.name, f"MLflow already holds a search of this name (run "
                f"{existing[0].info.run_id} in {s.tracking_uri}): pass --resume to continue it, "
                "or set another search.name", p.sources.of("search.name"),
            )
        if existing:
            _check_same_experiment(existing[0], params, p)
        tags = {**tr.environment_tags(), **parent_tags(p)}
        run_id, reopened = tr.open_parent(mlflow, exp_id, s.name, params, tags)
        if not reopened:
            _log_parent_artifacts(mlflow, run_id, p)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError("search.tracking_uri", s.tracking_uri,
                          f"cannot open the MLflow store: {err}",
                          p.sources.of("search.tracking_uri")) from None
    print(f"MLflow: {'reopened' if reopened else 'parent run'} {run_id} in {s.tracking_uri}",
          flush=True)
    return tr.SearchTracking(s.tracking_uri, exp_id, run_id, s.name)


def parent_tags(p: Prepared) -> dict[str, str]:
    """The search's own tags on its parent run (what ``sakdn report`` and ``sakdn best`` read
    back besides the role and name)."""
    s = p.search
    return {
        Tag.METRIC: ",".join(s.metrics), Tag.MODE: ",".join(s.modes),
        Tag.EXPERIMENT_FILE: str(Path(p.experiment_path).resolve()),
        Tag.SPACE_FILE: s.space, Tag.NUM_SAMPLES: str(s.num_samples),
        Tag.SEARCH_DIR: str(s.search_dir), Tag.STUDY: f"{s.study_storage}#{s.study_name}",
    }


def _check_same_experiment(parent, params: dict[str, Any], p: Prepared) -> None:
    logged = parent.data.params
    changed = [k for k, v in params.items() if k in logged and logged[k] != str(v)]
    if changed:
        k = changed[0]
        raise ConfigError(
            k, params[k], f"the experiment changed since search {p.search.name!r} started (was "
            f"{logged[k]!r}); resume with the same settings or start another search.name",
            p.sources.of(k),
        )


def _log_parent_artifacts(mlflow, run_id: str, p: Prepared) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "search_resolved.yaml"
        resolved.write_text(yaml.safe_dump({
            "search": _plain(dataclasses.asdict(p.search)),
            "space": {param.key: _describe(param) for param in p.space},
        }, sort_keys=False))
        config = Path(tmp) / "experiment_config.yaml"
        config.write_text(dump_yaml(p.config))
        paths = [p.experiment_path, p.search.space, resolved, config]
        if p.search.folds > 1:  # which training subjects validate in which fold
            from sakdn.train.data import fold_subjects

            folds = Path(tmp) / "folds.json"
            subjects = fold_subjects(p.config, p.search.folds)
            folds.write_text(json.dumps({f"fold{i}": list(s) for i, s in enumerate(subjects)},
                                        indent=1))
            paths.append(folds)
        for path in paths:
            mlflow.log_artifact(run_id, str(path), "search")


def _describe(param) -> dict[str, Any]:
    out: dict[str, Any] = {"distribution": param.describe()}
    if param.when:
        out["when"] = {c.key: list(c.values) for c in param.when}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- Ray and Tune ---------------------------------------------------------------------------


def _init_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` or start a loopback-only local Ray; True if joined here."""
    import ray

    if ray.is_initialized():
        return False
    # Trials write their lines to their own trial.log (logged to their MLflow run); the
    # driver's terminal has one line per trial event instead (progress.EventPrinter).
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        # a loopback-only single node needs no token, and must not write ~/.ray/auth_token
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    return True


def _fit(p: Prepared, parts: dict[str, Any], tracking, tune_dir: Path, restorable: bool) -> None:
    """Run (or restore and run) the Tune experiment."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from sakdn.search.callbacks import TrackingCallback
    from sakdn.search.trainable import TrialSetup, run_trial

    s = p.search
    store = None if s.teacher_store == "none" else s.teacher_store
    setup = TrialSetup(
        base=p.config.to_flat(), search_dir=str(s.search_dir), metrics=s.metrics,
        prune_metric=s.prune_metric, tracking=tracking, teacher_store=store,
        log_models=s.log_models, flush_timeout_s=s.flush_timeout_s,
        checkpoint_every=s.checkpoint_every, folds=s.folds,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=setup), s.resources.as_tune()
    )
    if restorable:
        print(f"resuming the Tune experiment in {tune_dir}", flush=True)
        tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_errored=True)
    else:
        searcher = parts["searcher"]
        done = sum(1 for t in searcher.study.trials if t.state.is_finished())
        samples = s.num_samples - done
        if samples <= 0:
            print(f"the study already holds {done} finished trial(s): nothing to run",
                  flush=True)
            return
        from sakdn.search.progress import EventPrinter, ProgressCallback
        from sakdn.search.trial_figures import FigureCallback

        callback = TrackingCallback(tracking, str(s.search_dir), s.metrics)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent_trials),
                scheduler=parts["scheduler"],
                num_samples=samples,
                time_budget_s=s.time_budget_s or None,
                # One trial process serves trial after trial: a new one costs seconds of
                # imports per trial (docs/benchmarks.md §5); run_trial leaves no state behind.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=str(s.search_dir),
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=s.keep_checkpoints),
                callbacks=[callback, ProgressCallback(tracking, s.metrics, s.modes),
                           EventPrinter(s.metrics, s.modes, _pruned_on(s), _rule(s),
                                        str(s.search_dir)),
                           FigureCallback(str(s.search_dir), s.metrics, s.folds,
                                          tracking.tracking_uri if tracking else None,
                                          s.flush_timeout_s)],
                verbose=0,  # the EventPrinter's lines instead of Tune's tables
            ),
        )
    tuner.fit()


def _is_finished(study, num_samples: int) -> bool:
    """Every trial has ended: a ``--resume`` has nothing to run, and rewrites nothing (the
    parent run, the report) with the records of a run that did nothing."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return (sum(t.state.is_finished() for t in trials) >= num_samples
            and not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials))


def _resume_command(experiment_path: str | Path, overrides: list[str] | tuple[str, ...]) -> str:
    """The command that continues this search: the same file and ``--set`` items (a search's
    settings must not change on resume; ``search.name`` among them when it was set so)."""
    import shlex

    items = " ".join(f"--set {shlex.quote(o)}" for o in overrides)
    return f"sakdn search {shlex.quote(str(experiment_path))} --resume" + (f" {items}" if items
                                                                           else "")


def _stop_on_sigterm() -> None:
    """SIGTERM stops the search as Ctrl-C does (Tune saves its state, the summary says how to
    continue). Ray's core installs a crash handler for SIGTERM that dumps a stack trace; this
    Python handler replaces it in the driver and turns the signal into SIGINT."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGTERM, interrupt)


def _rule(s: SearchConfig) -> str:
    """How trials are pruned, as the terminal says it: the pruner with its options."""
    if s.scheduler == "asha":
        return "ASHA"
    options = ", ".join(f"{k}={v}" for k, v in (s.pruner_kwargs or {}).items())
    return f"{s.pruner}" + (f" ({options})" if options else "")


# --- the end --------------------------------------------------------------------------------


def _close(p: Prepared, parts: dict[str, Any], tracking, started: float,
           interrupted: bool) -> SearchResult:
    """Close every child run, write the best config and counts to the parent run."""
    from sakdn import tracking as tr
    from sakdn.search.callbacks import close_children
    from sakdn.train.teacher_store import TeacherStore

    s = p.search
    searcher = parts["searcher"]
    study = searcher.study
    result = SearchResult(
        name=s.name, path=str(s.search_dir), tracking_uri=s.tracking_uri,
        experiment_id=tracking.experiment_id if tracking else None,
        parent_run_id=tracking.parent_run_id if tracking else None,
        study_storage=s.study_storage, study_name=s.study_name, metric=s.metrics,
        interrupted=interrupted,
    )
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    result.study_counts = counts
    _best(result, p, study)
    if s.teacher_store != "none" and Path(s.teacher_store).exists():
        result.teacher_hits, result.teacher_lookups = TeacherStore(s.teacher_store).hit_rate()
    result.wall_time_s = time.time() - started
    if tracking is None:
        return result
    mlflow = tr.client(s.tracking_uri)
    try:
        result.counts = close_children(mlflow, tracking, study, s.search_dir,
                                       wait_s=s.flush_timeout_s)
        if result.best_trial is not None:
            run = tr.find_child(mlflow, tracking.experiment_id, tracking.parent_run_id,
                                result.best_trial, "")
            result.best_run_id = run.info.run_id if run else None
        _log_parent_summary(mlflow, tracking.parent_run_id, result, interrupted)
        from sakdn.report import search_wall_time

        wall = search_wall_time(mlflow, mlflow.get_run(tracking.parent_run_id))
        result.wall_total_s, result.wall_runs = wall.total, len(wall.runs)
    except Exception as err:  # the summary must not hide the search's own outcome
        logger.warning("could not finish the MLflow records: %s", err)
    return result


def _running_trials(searcher) -> list[int]:
    from optuna.trial import TrialState

    return [t.number for t in searcher.study.get_trials(deepcopy=False,
                                                         states=(TrialState.RUNNING,))]


def _best(result: SearchResult, p: Prepared, study) -> None:
    import optuna
    from optuna.trial import TrialState

    from sakdn.search.trainable import trial_config

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    for t in complete:
        if t.user_attrs.get(StudyAttr.REFERENCE):
            result.reference_trial, result.reference_value = t.number, t.values[0]
    if len(study.directions) == 1:
        best = study.best_trial
        result.best_value = best.value
    else:  # the Pareto front, ordered by the first objective
        sign = -1 if p.search.modes[0] == "max" else 1
        best = min(study.best_trials, key=lambda t: sign * t.values[0])
        result.best_value = list(best.values)
    result.best_trial = best.number
    result.best_origin = str(best.user_attrs.get(StudyAttr.ORIGIN, ""))
    base = p.config.to_flat()
    sampled = p.space.suggest(optuna.trial.FixedTrial(best.params), base)  # with fixed keys
    result.best_config = trial_config(base, sampled).to_flat()


def _log_parent_summary(mlflow, run_id: str, result: SearchResult, interrupted: bool) -> None:
    import tempfile

    from mlflow.entities import Metric

    from sakdn import tracking as tr
    from sakdn.config import from_flat

    now = int(time.time() * 1000)
    values: dict[str, float] = {SearchMetric.WALL_S: result.wall_time_s,
                                SearchMetric.TEACHER_HITS: result.teacher_hits,
                                SearchMetric.TEACHER_LOOKUPS: result.teacher_lookups}
    if result.teacher_lookups:
        values[SearchMetric.TEACHER_HIT_RATE] = result.teacher_hits / result.teacher_lookups
    for state in (State.COMPLETE, State.PRUNED, State.FAILED, State.STOPPED):
        values[SearchMetric.TRIALS_PREFIX + state.lower()] = result.counts.get(state, 0)
    best = result.best_value
    if best is not None:
        for name, value in zip(result.metric, best if isinstance(best, list) else [best]):
            values[SearchMetric.BEST_PREFIX + name] = value
    tags = {Tag.STATE: State.INTERRUPTED if interrupted else State.COMPLETE}
    if result.best_trial is not None:
        tags[Tag.BEST_TRIAL] = str(result.best_trial)
    if result.best_run_id:
        tags[Tag.BEST_RUN] = result.best_run_id
    tr.log_batch(mlflow, run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
                 tags=tags)
    if result.best_config is not None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "best_config.json").write_text(json.dumps(result.best_config, indent=1))
            (Path(tmp) / "best_config.yaml").write_text(dump_yaml(from_flat(result.best_config)))
            for name in ("best_config.json", "best_config.yaml"):
                mlflow.log_artifact(run_id, str(Path(tmp) / name), "best")
    mlflow.set_terminated(run_id, status="KILLED" if interrupted else "FINISHED")


def _print_summary(result: SearchResult) -> None:
    c = result.counts or {}
    if result.interrupted:
        print(f"\nsearch {result.name} interrupted; continue it with:\n  {result.resume_command}")
    total = sum(c.values()) or sum(result.study_counts.values())
    print(f"\nsearch {result.name}: {total} trial{'s' if total != 1 else ''} — "
          f"{c.get(State.COMPLETE, 0)} complete, "
          f"{c.get(State.PRUNED, 0)} pruned, {c.get(State.FAILED, 0)} failed"
          + (f", {c[State.STOPPED]} stopped" if c.get(State.STOPPED) else "")
          + f" — in {result.wall_time_s:.0f} s"
          + (f" ({result.wall_total_s:.0f} s over {result.wall_runs} runs of this search)"
             if result.wall_runs > 1 and result.wall_total_s is not None else ""))
    if result.best_value is not None:
        values = result.best_value if isinstance(result.best_value, list) else [result.best_value]
        shown = ", ".join(f"{m} = {v:.4g}" for m, v in zip(result.metric, values))
        origin = f" ({result.best_origin})" if result.best_origin else ""
        print(f"best: {trial_name(result.best_trial)}{origin}  {shown}  "
              f"(MLflow run {result.best_run_id})")
    if result.reference_value is not None and result.best_value is not None:
        best = result.best_value[0] if isinstance(result.best_value, list) else result.best_value
        print(f"start point: {trial_name(result.reference_trial)} (the experiment's own values)  "
              f"{result.metric[0]} = {result.reference_value:.4g}; best − start point = "
              f"{best - result.reference_value:+.4g}")
    if result.teacher_lookups:
        print(f"teacher store: {result.teacher_hits} hits / {result.teacher_lookups} lookups")
    print(f"compare: {_browse(result.tracking_uri, result.experiment_id)}")
    print(f"best config: sakdn best {result.name}"
          + (f" --tracking-uri {result.tracking_uri}" if result.tracking_uri else ""))
    print(f"final model: sakdn train --from-best {result.name}"
          + (f" --tracking-uri {result.tracking_uri}" if result.tracking_uri else ""), flush=True)


def _browse(tracking_uri: str, experiment_id: str | None) -> str:
    """How to open a search's runs: the server's UI, or a UI on this machine's loopback only
    for a local store; the link opens MLflow's runs view (``tracking.ui_url``)."""
    from sakdn.tracking import LOCAL_UI, ui_url
    from sakdn.tracking_auth import is_server

    if is_server(tracking_uri):
        return (f"open {ui_url(tracking_uri, experiment_id)} "
                "(log in as the search user or an admin)")
    return (f"mlflow ui --host 127.0.0.1 --backend-store-uri {tracking_uri}, then open "
            f"{ui_url(LOCAL_UI, experiment_id)}")


def _quiet_logs() -> None:
    """Warnings and errors of the libraries reach the terminal, their progress chatter not
    (study created, store tables made, Ray started, Tune state written): the search prints
    its own lines."""
    import optuna

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sakdn",):
        logging.getLogger(name).setLevel(logging.INFO)
    for name in ("mlflow", "alembic", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Tune's own notices (its resume hint with Tuner.restore, metrics of interrupted trials):
    # the search prints how it ended and how to continue it
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
