"""Live progress: trial states and the best value as a search sees them, in the terminal
line and as the parent run's metrics (step = trials finished)."""

from __future__ import annotations

import math
from types import SimpleNamespace

from sakdn.search.progress import (
    EventPrinter,
    ProgressCallback,
    best_so_far,
    live_counts,
    status_line,
    trial_state,
)
from sakdn.search.trainable import write_ticket

M = "student/best_val_acc"


def trial(tid: str, status: str, **last) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status=status, last_result=last)


def some_trials() -> list[SimpleNamespace]:
    return [
        trial("a", "TERMINATED", **{M: 0.5, "step": 6, "completed": True}),
        trial("b", "TERMINATED", **{M: 0.9, "step": 4}),  # stopped early: pruned, not the best
        trial("c", "TERMINATED", **{M: 0.7, "step": 6, "completed": True}),
        trial("d", "ERROR", **{M: 0.95, "step": 5}),
        trial("e", "TERMINATED", failed="bad sampled value"),
        trial("f", "RUNNING", **{M: 0.99, "step": 5}),
        trial("g", "PENDING"),
        trial("h", "TERMINATED", **{M: math.nan, "step": 5, "diverged": "loss nan"}),
    ]


def test_states_from_status_and_last_result() -> None:
    assert trial_state("TERMINATED", {M: 0.5, "completed": True}, [M]) == "completed"
    assert trial_state("TERMINATED", {"completed": True}, [M]) == "failed"  # no objective
    assert trial_state("TERMINATED", {M: 0.1, "step": 3}, [M]) == "pruned"
    assert trial_state("TERMINATED", {M: math.nan, "diverged": "x"}, [M]) == "pruned"
    assert trial_state("TERMINATED", {"failed": "x"}, [M]) == "failed"
    assert trial_state("ERROR", {M: 0.5, "completed": True}, [M]) == "failed"
    assert trial_state("RUNNING", {}, [M]) == "running"
    assert trial_state("PAUSED", {}, [M]) == "running"
    assert trial_state("PENDING", None, [M]) == "pending"
    assert live_counts(some_trials(), [M]) == {
        "pending": 1, "running": 1, "completed": 2, "pruned": 2, "failed": 2,
    }


def test_best_counts_completed_trials_only_in_the_search_direction() -> None:
    trials = some_trials()
    (value, holder), = best_so_far(trials, [M], ["max"]).values()
    assert (value, holder.trial_id) == (0.7, "c")
    (value, holder), = best_so_far(trials, [M], ["min"]).values()
    assert (value, holder.trial_id) == (0.5, "a")
    assert best_so_far(trials[1:2], [M], ["max"]) == {}


def test_a_trial_tune_still_calls_running_counts_as_ended_when_it_just_ended() -> None:
    ended = trial("f", "RUNNING", **{M: 0.99, "completed": True})
    counts = live_counts([ended], [M], ended=ended)
    assert counts["completed"] == 1 and counts["running"] == 0
    assert best_so_far([ended], [M], ["max"], ended=ended)[M][0] == 0.99


def test_status_line_names_trials_by_optuna_number(tmp_path) -> None:
    write_ticket(tmp_path, "c", 7)
    line = status_line(some_trials(), [M], ["max"], search_dir=str(tmp_path))
    assert line.startswith("trials: 1 running, 1 pending, 2 completed, 2 pruned, 2 failed")
    assert line.endswith(f"best {M} = 0.7 (trial 7)")


def test_the_event_printer_says_how_each_trial_ended_under_its_trial_name(
    tmp_path, capsys
) -> None:
    for tid, number in zip("abcdefgh", range(8)):
        write_ticket(tmp_path, tid, number)
    printer = EventPrinter([M], ["max"], "student/val_acc", "successive_halving (min_resource=3)",
                           str(tmp_path), every_s=0.0)
    started = trial("a", "RUNNING")
    started.config = {"student.lr": 0.00123456, "distill.lambda_st": 1.0}
    printer.on_trial_start(0, [], started)
    ended = {t.trial_id: t for t in some_trials()}
    ended["b"].last_result.update({"stage": "student", "epoch": 3, "student/val_acc": 0.25})
    ended["h"].last_result.update({"stage": "student", "epoch": 5})
    for tid in "abeh":
        printer.on_trial_complete(0, [], ended[tid])
    ended["d"].get_error = lambda: "Traceback (most recent call last):\n  ...\nValueError: bad"
    ended["d"].last_result.update({"stage": "teacher", "epoch": 2})
    printer.on_trial_error(0, [], ended["d"])
    printer.on_trial_result(0, some_trials(), ended["f"], {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "trial 0 started: lr=0.00123, lambda_st=1"
    assert lines[1].startswith(f"trial 0 completed: {M} = 0.5 ")
    assert lines[2] == ("trial 1 pruned at student epoch 3 by successive_halving "
                        "(min_resource=3): student/val_acc = 0.25")
    assert lines[3].startswith("trial 4 failed: bad sampled value (log: ")
    assert lines[3].endswith("/trials/00004/trial.log)")
    assert lines[4] == "trial 7 pruned at student epoch 5: loss nan"
    assert lines[5].startswith("trial 3 failed at teacher epoch 2: ValueError: bad")
    assert "trials: 1 running, 1 pending" in lines[6] and "(trial 2)" in lines[6]


def test_a_cross_validated_trial_is_said_to_be_pruned_at_its_fold(tmp_path, capsys) -> None:
    write_ticket(tmp_path, "b", 1)
    printer = EventPrinter([M], ["max"], f"fold/{M}", "wilcoxon", str(tmp_path), every_s=0.0)
    pruned = trial("b", "TERMINATED", **{"stage": "student", "epoch": 2, "step": 5, "fold": 1,
                                         "prune_step": 1, f"fold/{M}": 0.25})
    printer.on_trial_complete(0, [], pruned)
    assert capsys.readouterr().out.splitlines()[0] == (
        f"trial 1 pruned at fold 1, student epoch 2 by wilcoxon: fold/{M} = 0.25")


def test_the_parent_run_gets_counts_and_best_at_step_trials_finished(tmp_path) -> None:
    from mlflow import MlflowClient

    from sakdn import tracking as tr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = tr.ensure_experiment(client, "progress", str(tmp_path / "artifacts"))
    parent, _ = tr.open_parent(client, exp, "s", {}, {})
    callback = ProgressCallback(tr.SearchTracking(uri, exp, parent, "s"), [M], ["max"])
    trials = [trial("a", "RUNNING", **{M: 0.5, "completed": True}), trial("b", "RUNNING")]
    callback.on_trial_complete(0, trials, trials[0])  # Tune has not marked it TERMINATED yet
    trials[0].status = "TERMINATED"
    trials[1].last_result = {M: 0.8, "step": 2}
    callback.on_trial_complete(1, trials, trials[1])  # stopped early: pruned
    history = {k: [(m.step, m.value) for m in client.get_metric_history(parent, k)]
               for k in ("search/completed", "search/pruned", "search/running",
                         f"search/best_{M}", "search/finished")}
    assert history == {
        "search/completed": [(1, 1.0), (2, 1.0)],
        "search/pruned": [(1, 0.0), (2, 1.0)],
        "search/running": [(1, 1.0), (2, 0.0)],
        f"search/best_{M}": [(1, 0.5), (2, 0.5)],
        "search/finished": [(1, 1.0), (2, 2.0)],
    }


def test_an_unreachable_store_costs_only_the_progress_points(caplog, monkeypatch) -> None:
    from sakdn import tracking as tr

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    callback = ProgressCallback(
        tr.SearchTracking("http://127.0.0.1:9", "0", "nope", "s"), [M], ["max"])
    with caplog.at_level("WARNING"):
        callback.on_trial_error(0, [trial("a", "ERROR")], None)
    assert "search progress not logged" in caplog.text
    assert ProgressCallback(None, [M], ["max"]).log([trial("a", "ERROR")]) is None
