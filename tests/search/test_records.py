"""What the search layer writes into MLflow and the Optuna study is what ``sakdn report`` and
``sakdn best`` read back: one set of tag, result-key and metric names (``sakdn.names``).

No Ray: the driver's own functions open the parent run, the searcher and the trial callback
record three trial ends (as the trainable reports them), and the search is closed as
``sakdn search`` closes it; then the readers look."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sakdn.names import Result, State, Tag

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

DIVERGED = "student stage diverged at epoch 1: loss term 'st' = nan"


def test_the_readers_find_what_the_writers_wrote(
    tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from mlflow.entities import Metric

    from sakdn import report
    from sakdn import tracking as tr
    from sakdn.search import run
    from sakdn.search.callbacks import finish_trial_run, trial_end
    from sakdn.search.final import best_of
    from sakdn.search.trainable import read_ticket
    from tests.search.conftest import SMOKE_SPACE
    from tests.tiny import SMOKE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = run.prepare(SMOKE, [f"data.root={tiny_root}", f"search.space={SMOKE_SPACE}",
                            f"search.storage_path={tmp_path / 'store'}", "search.name=records"])
    parts = run._build_parts(p)
    tracking = run._open_tracking(p, resume=False)
    searcher, mlflow, metric = parts["searcher"], tr.client(p.search.tracking_uri), p.search.metric
    ends = {  # the last result of each trial, as the trainable reports it
        "t0": {metric: 0.75, Result.STEP: 5, Result.COMPLETED: True},
        "t1": {metric: 0.25, Result.STEP: 4},  # stopped by the pruner
        "t2": {metric: float("nan"), Result.STEP: 4, Result.DIVERGED: DIVERGED},
    }
    for tune_id, last in ends.items():
        searcher.suggest(tune_id)
        number = read_ticket(p.search.search_dir, tune_id)
        run_id = tr.trial_resolver(tracking, tune_id, number)(mlflow)
        tr.log_batch(mlflow, run_id, metrics=[
            Metric(metric, last[metric], int(time.time() * 1000), last[Result.STEP])])
        searcher.on_trial_complete(tune_id, result=last)
        finish_trial_run(mlflow, tracking, trial_end(tune_id, number, last, p.search.metrics))
    closed = run._close(p, parts, tracking, time.time() - 5, interrupted=False)
    assert closed.counts == {State.COMPLETE: 1, State.PRUNED: 2}

    record = report.collect("records", p.search.tracking_uri)
    assert record.study is not None and len(record.study.trials) == 3  # Tag.STUDY
    assert (record.metrics, record.modes) == ([metric], ["max"])  # Tag.METRIC, Tag.MODE
    assert {r.number: r.state for r in record.rows} == {
        0: State.COMPLETE, 1: State.PRUNED, 2: State.PRUNED}  # Tag.STATE
    assert {r.number: r.error for r in record.rows}[2] == DIVERGED  # Tag.ERROR
    assert record.best is not None and record.best.values == [0.75]
    page = report.render_report(record, {}, [], report.savings(record.rows))
    assert str(SMOKE.resolve()) in page and str(SMOKE_SPACE) in page  # the files' tags
    assert "wall time" in page  # the parent's summary metrics

    best = best_of("records", p.search.tracking_uri)  # Tag.ROLE, Tag.PARENT_RUN, Tag.STATE
    assert (best["trial"], best["value"]) == (0, 0.75)
    parent = mlflow.get_run(best["parent_run_id"])
    assert parent.data.tags[Tag.BEST_TRIAL] == "0"
    assert parent.data.tags[Tag.BEST_RUN] == best["run_id"]
    assert parent.data.tags[Tag.SEARCH_DIR] == str(p.search.search_dir)
