"""The names that the writers and the readers of a search's records share.

A search is written by one part of the code and read back by another: the trainable reports
results that the schedulers, the searcher and the callbacks read; the driver tags MLflow runs
that ``sakdn best``, ``sakdn report`` and ``--resume`` look up. Each name is spelled here once,
so a renamed tag cannot leave its reader behind. Plain strings, grouped by what they name;
nothing here imports anything.
"""

from __future__ import annotations


EXPERIMENT_KIND = "custom_model_development"  # the value of Tag.EXPERIMENT_KIND


def trial_name(number: int) -> str:
    """A trial's one name: the terminal, its MLflow run, the report and Optuna all say it."""
    return f"trial {number}"


class Tag:
    """MLflow tag names on a search's runs (docs/experiments.md, "MLflow")."""

    PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: nests a trial's run under the search's
    RUN_NAME = "mlflow.runName"  # MLflow's own: the name its runs table shows
    # MLflow's own, on experiments: its UI opens an experiment of this kind on its runs table,
    # not on its GenAI (traces) view
    EXPERIMENT_KIND = "mlflow.experimentKind"
    MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own: shown in its UI
    ROLE = "sakdn.role"  # a Role value
    SEARCH = "sakdn.search"  # the search's name
    SEARCH_RUN = "sakdn.search_run_id"  # a trial's or final run's parent run id
    STATE = "sakdn.state"  # a State value
    ERROR = "sakdn.error"  # why a trial failed or diverged
    DIVERGED = "sakdn.diverged"  # "true" on a trial whose loss became NaN / inf
    OPTUNA_TRIAL = "sakdn.optuna_trial"  # the lookup key of a trial's run
    TUNE_TRIAL = "sakdn.tune_trial_id"
    NODE_IP = "sakdn.node_ip"  # the node of a trial's latest attempt
    NODE_IPS = "sakdn.node_ips"  # every attempt's node, comma-separated
    TEACHER_CACHE_HIT = "sakdn.teacher_cache_hit"  # "true" when the teacher store had them
    METRIC = "sakdn.metric"  # the objectives, comma-separated
    MODE = "sakdn.mode"  # their directions, comma-separated
    STUDY = "sakdn.study"  # "<Optuna storage URL>#<study name>"
    SEARCH_DIR = "sakdn.search_dir"
    EXPERIMENT_FILE = "sakdn.experiment_file"
    SPACE_FILE = "sakdn.space_file"
    NUM_SAMPLES = "sakdn.num_samples"
    BEST_TRIAL = "sakdn.best_trial"
    BEST_RUN = "sakdn.best_run_id"
    SOURCE_RUN = "sakdn.source_run_id"  # the trial a final model was trained from
    SOURCE_TRIAL = "sakdn.source_trial"
    REGISTERED_MODEL = "sakdn.registered_model"  # "<model name>/<version>"
    HOSTNAME = "sakdn.hostname"
    PYTHON = "sakdn.python"
    GIT_COMMIT = "sakdn.git_commit"
    VERSION_PREFIX = "sakdn.version."  # + a package name: its installed version


class Role:
    """Values of ``Tag.ROLE``."""

    PARENT = "parent"  # one per search
    TRIAL = "trial"  # one per Optuna trial, nested under the parent
    FINAL = "final"  # ``sakdn train --from-best``


class State:
    """How a trial ended (``Tag.STATE`` of its run); ``sakdn.outcome`` decides which."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"  # unfinished when the search ended (time budget, interruption)
    INTERRUPTED = "INTERRUPTED"  # a parent run whose search stopped before every trial ended


class Result:
    """Keys of the results a trial reports to Tune (the trainable writes them)."""

    STAGE = "stage"
    EPOCH = "epoch"
    STEP = "step"  # one monotone counter over both stages' epochs
    PRUNE_STEP = "prune_step"  # the student epoch: what pruners and ASHA compare
    COMPLETED = "completed"  # True on the last result of a trial that trained all its epochs
    DIVERGED = "diverged"  # the reason a loss became NaN / inf
    FAILED = "failed"  # the reason a trial could not run (a bad sampled configuration)
    TEACHER_CACHE_HIT = "teacher_cache_hit"
    SUMMARY_PREFIX = "summary/"  # + a key of the run's summary metrics
    FOLD = "fold"  # the fold a result belongs to (cross-validated trials)
    FOLD_PREFIX = "fold/"  # + an objective: one fold's value, reported when the fold ends


class StudyAttr:
    """User attributes on a search's Optuna trials."""

    # on the trial of ``search.start_point``: the baseline, never pruned
    REFERENCE = "sakdn_reference"
    # how the trial's configuration came about: an Origin value
    ORIGIN = "sakdn_origin"


class Origin:
    """Values of ``StudyAttr.ORIGIN``."""

    GIVEN = "given"  # the start point or points_to_evaluate: nothing was sampled
    STARTUP = "startup"  # at random, by the sampler's start-up phase
    GUIDED = "guided"  # by the sampler, from the trials that had finished


class SearchMetric:
    """Metric names on a search's parent run that the report reads back."""

    WALL_S = "time/wall_s"
    TEACHER_HITS = "teacher_store/hits"
    TEACHER_LOOKUPS = "teacher_store/lookups"
    TEACHER_HIT_RATE = "teacher_store/hit_rate"
    BEST_PREFIX = "best/"  # + an objective
    TRIALS_PREFIX = "trials/"  # + a State in lower case: how many trials ended so
