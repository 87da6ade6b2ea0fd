"""The search report, from a search written by hand into real MLflow and Optuna stores
(SQLite in ``tmp_path``, no Ray): leaderboard rows for every trial in a box of their own,
embedded images only, pruning savings as counted by hand, the search plots (pruned trials at
their best reported value, importances only from enough completed trials) and their copies on
the parent run, the wall time of every run of a resumed search."""

from __future__ import annotations

import base64
import csv
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sakdn.errors import ConfigError
from sakdn.names import SearchMetric
from sakdn.report import (collect, plot_trials, savings, search_wall_time, wall_time,
                          write_report)
from sakdn.report_plots import MIN_IMPORTANCE_TRIALS, history, importance_note, parallel, slices

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ACC, FLOPS = "student/best_val_acc", "student/gflops"
T0 = 1_700_000_000_000  # ms
# number, study state, objective values, student epochs run, planned, teacher cache hit
PLAN = [
    (0, "COMPLETE", (0.5, 2.0), 3, 3, "false"),
    (1, "PRUNED", None, 1, 3, "true"),
    (2, "COMPLETE", (0.75, 3.0), 3, 3, "true"),
    (3, "FAIL", None, 0, 4, ""),
    (4, "PRUNED", None, 2, 4, "true"),
    (5, "COMPLETE", (0.6, 1.0), 3, 3, "true"),
]
CURVES = {1: [0.3], 4: [0.4, 0.45]}  # what the pruned trials reported per student epoch
# enough completed trials for parameter importances, and two pruned ones
MANY = [(n, "COMPLETE", (0.3 + 0.04 * n,), 3, 3, "false") for n in range(MIN_IMPORTANCE_TRIALS)]
MANY += [(MIN_IMPORTANCE_TRIALS, "PRUNED", None, 1, 3, "false"),
         (MIN_IMPORTANCE_TRIALS + 1, "PRUNED", None, 2, 3, "false")]
MANY_CURVES = {MIN_IMPORTANCE_TRIALS: [0.2], MIN_IMPORTANCE_TRIALS + 1: [0.25, 0.35]}


class Page(HTMLParser):
    """The report's leaderboard cells, image sources, and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self._in_board = self._cell = False

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "leaderboard":
            self._in_board = True
        elif self._in_board and tag == "tr":
            self.rows.append([])
        elif self._in_board and tag in ("td", "th"):
            self._cell = True
            self.rows[-1].append("")
        elif tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link", "iframe") and (a.get("src") or a.get("href")):
            self.external.append(str(a))

    def handle_endtag(self, tag) -> None:
        if tag == "table":
            self._in_board = False
        if tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data) -> None:
        if self._cell:
            self.rows[-1][-1] += data


def build_search(tmp: Path, metrics: tuple[str, ...], name: str = "s", plan: list = PLAN,
                 curves: dict[int, list[float]] = CURVES) -> str:
    """A finished search (by default of six trials) as the search layer records it; returns
    its URI."""
    import optuna
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from sakdn import tracking as tr
    from sakdn.figures import learning_curves_figure
    from sakdn.names import Origin, State, StudyAttr, Tag

    uri, storage = f"sqlite:///{tmp / 'mlflow.db'}", f"sqlite:///{tmp / 'optuna.db'}"
    modes = ("max", "min")[: len(metrics)]
    client = MlflowClient(uri)
    exp = tr.ensure_experiment(client, "report-test", str(tmp / "artifacts"))
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=["maximize", "minimize"][: len(metrics)])
    tags = {Tag.METRIC: ",".join(metrics), Tag.MODE: ",".join(modes),
            Tag.STUDY: f"{storage}#{name}", Tag.SPACE_FILE: "space.yaml"}
    parent, _ = tr.open_parent(client, exp, name, {"student.epochs": 3}, tags)
    tracking = tr.SearchTracking(uri, exp, parent, name)
    dists = {"student.lr": FloatDistribution(1e-4, 1e-2, log=True),
             "distill.lambda_st": CategoricalDistribution([0.0, 1.0])}
    states = {"COMPLETE": State.COMPLETE, "PRUNED": State.PRUNED, "FAIL": State.FAILED}
    for number, state, values, run, planned, hit in plan:
        params = {"student.lr": 1e-3 * (number % 9 + 1), "distill.lambda_st": float(number % 2)}
        curve = curves.get(number) or ([values[0]] * run if values else [])
        study.add_trial(optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state), params=params, distributions=dists,
            values=list(values[: len(metrics)]) if values else None,
            intermediate_values={e + 1: v for e, v in enumerate(curve)},
            user_attrs={StudyAttr.REFERENCE: True, StudyAttr.ORIGIN: Origin.GIVEN} if number == 0
            else {StudyAttr.ORIGIN: Origin.GUIDED if number >= 2 else Origin.STARTUP}))
        run_id = tr.trial_resolver(tracking, f"tune-{number}", number)(client)
        tr.log_batch(client, run_id, params={**params, "student.epochs": planned},
                     tags={Tag.TEACHER_CACHE_HIT: hit} if hit else {})
        points = [Metric("teacher/loss", 1.0, T0, s) for s in (1, 2)]
        for e in range(run):  # one student epoch every 10 s
            t = T0 + 10_000 * (e + 1)
            points += [Metric("student/loss", 1.0, t, 3 + e),
                       Metric(ACC, max(curve[: e + 1]), t, 3 + e)]
        if values and len(metrics) > 1:
            points.append(Metric(FLOPS, values[1], T0, 3 + run))
        tr.log_batch(client, run_id, metrics=points)
        tr.finish_run(client, run_id, states[state], "boom" if state == "FAIL" else None)
    best = 2
    png = tmp / f"{name}-learning_curves.png"
    learning_curves_figure([]).savefig(png)
    best_run = tr.find_child(client, exp, parent, best, "")
    client.log_artifact(best_run.info.run_id, str(png), "figures")
    return uri


@pytest.fixture(scope="module")
def search_uri(tmp_path_factory) -> str:
    """One store with two searches: ``s`` (accuracy) and ``m`` (accuracy and GFLOPs)."""
    tmp = tmp_path_factory.mktemp("search")
    build_search(tmp, (ACC, FLOPS), name="m")
    return build_search(tmp, (ACC,))


@pytest.fixture(scope="module")
def many_uri(tmp_path_factory) -> str:
    """A store with one search, ``many``, that has enough completed trials for importances."""
    return build_search(tmp_path_factory.mktemp("many"), (ACC,), name="many", plan=MANY,
                        curves=MANY_CURVES)


@pytest.fixture(scope="module")
def page(search_uri, tmp_path_factory) -> Path:
    """The report, written once (and logged to the parent run)."""
    return write_report("s", out=tmp_path_factory.mktemp("report"), tracking_uri=search_uri)


def test_the_leaderboard_has_every_trial_best_first_with_its_costs(page) -> None:
    with open(page.parent / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [2, 5, 0, 4, 1, 3]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["PRUNED"] * 2 + ["FAILED"]
    by_trial = {int(r["trial"]): r for r in rows}
    assert float(by_trial[2][ACC]) == 0.75 and float(by_trial[4][ACC]) == 0.45
    assert by_trial[3][ACC] == "" and by_trial[3]["error"] == "boom"
    for number, _, _, run, planned, hit in PLAN:
        row = by_trial[number]
        assert int(row["student_epochs"]) == run and int(row["planned_student_epochs"]) == planned
        # a teacher stage loaded from the store trained no epoch in this trial
        assert int(row["teacher_epochs"]) == (0 if hit == "true" else 2)
        assert float(row["student.lr"]) == pytest.approx(1e-3 * (number + 1))
        assert float(row["compute_s"]) >= 0


def test_pruning_savings_are_counted_from_the_epochs_not_run(search_uri) -> None:
    rows = collect("s", search_uri).rows
    saved = savings(rows)
    # pruned: trial 1 ran 1 of 3 student epochs, trial 4 ran 2 of 4 → 2 + 2 not run;
    # finished trials (3 complete + 2 pruned) planned 3 + 3 + 3 + 3 + 4 epochs
    assert (saved.pruned, saved.epochs_run, saved.epochs_not_run) == (2, 3, 4)
    assert saved.planned_total == 16 and saved.fraction == pytest.approx(4 / 16)
    assert saved.seconds_per_epoch == pytest.approx(10.0)  # the metric timestamps' spacing
    assert saved.seconds_saved == pytest.approx(40.0)


def test_the_page_is_self_contained_and_shows_rows_plots_and_the_best_trial(
    search_uri, page
) -> None:
    from mlflow import MlflowClient

    text = page.read_text()
    parsed = Page()
    parsed.feed(text)
    header, *body = parsed.rows
    assert header[:3] == ["trial", "state", ACC]
    assert sorted(int(r[0]) for r in body) == [n for n, *_ in PLAN]
    # nothing is fetched from anywhere: only the printed MLflow UI link names a URL
    outside = text.replace("http://www.w3.org", "").replace("http://127.0.0.1:5000/#/", "")
    assert parsed.external == [] and "http://" not in outside
    assert "http://127.0.0.1:5000/#/experiments/" in text  # the link opens the runs view
    assert "?workflowType=machine_learning" in text
    plots = sorted(p.stem for p in (page.parent / "plots").glob("*.png"))
    assert plots == sorted(["optimization_history", "parallel_coordinate", "slice",
                            "intermediate_values", "timeline"])  # 3 completed: no importances
    assert len(parsed.images) == len(plots) + 1  # the plots and the best trial's figure
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 trial(s) pruned" in text and "4 student epoch(s) not run" in text
    assert "about 40 s" in text
    assert "4 of 5 teacher stages loaded from the store" in text
    assert f"sakdn train --from-best s --tracking-uri {search_uri}" in text
    assert "trial 2: student/best_val_acc = 0.75" in text
    assert "drawn by the sampler from the trials finished before it (after start-up)" in text
    # trial 0 trained the experiment's own values (search.start_point): the search's gain
    assert ("trial 0, the experiment&#x27;s own values: student/best_val_acc = 0.5; "
            "best − start point = +0.2500") in text
    interactive = (page.parent / "plots.html").read_text()
    assert interactive.count("Plotly.newPlot") == len(plots)

    from sakdn import tracking as tr

    client = MlflowClient(search_uri)
    parent = tr.find_parent(client, "s").info.run_id
    logged = {a.path for d in ("report", "leaderboard", "plots")
              for a in client.list_artifacts(parent, d)}
    assert {"report/report.html", "leaderboard/leaderboard.csv", "leaderboard/leaderboard.html",
            "plots/plots.html", "plots/optimization_history.png"} <= logged


def test_a_multi_objective_search_gets_its_pareto_front(search_uri, tmp_path) -> None:
    page = write_report("m", out=tmp_path / "out", tracking_uri=search_uri, log_to_run=False)
    assert (page.parent / "plots" / "pareto_front.png").exists()
    assert not (page.parent / "plots" / "intermediate_values.png").exists()
    with open(page.parent / "leaderboard.csv") as handle:
        rows = {int(r["trial"]): r for r in csv.DictReader(handle)}
    # (acc ↑, GFLOPs ↓): trial 0 (0.5, 2.0) is beaten by trial 5 (0.6, 1.0); 2 and 5 remain
    assert {n for n, r in rows.items() if r["pareto"] == "True"} == {2, 5}
    assert float(rows[5][FLOPS]) == 1.0


def test_an_unknown_search_names_the_store(search_uri) -> None:
    with pytest.raises(ConfigError, match="no search of this name"):
        write_report("nope", tracking_uri=search_uri)


def test_the_cli_writes_the_page(search_uri, tmp_path, capsys) -> None:
    from sakdn.cli import main

    started = time.time()
    assert main(["report", "s", "--out", str(tmp_path / "cli"),
                 "--tracking-uri", search_uri]) == 0
    assert (tmp_path / "cli" / "report.html").stat().st_mtime >= started - 1
    assert f"wrote {tmp_path / 'cli' / 'report.html'}" in capsys.readouterr().out


def test_the_leaderboard_scrolls_in_its_own_box_with_the_key_columns_first(page) -> None:
    text = page.read_text()
    parsed = Page()
    parsed.feed(text)
    assert parsed.rows[0] == ["trial", "state", ACC, "teacher_epochs", "student_epochs",
                              "planned_student_epochs", "compute_s", "teacher_cache_hit",
                              "distill.lambda_st", "student.lr", "run_id", "error"]
    # the table is wrapped in a box that scrolls, never the page; headers may break
    assert '<div class="board"><table class="leaderboard">' in text
    assert ".board{overflow:auto;max-width:100%" in text
    assert "planned_<wbr>student_<wbr>epochs" in text
    board = (page.parent / "leaderboard.html").read_text()
    assert '<div class="board"><table class="leaderboard">' in board and ".board{" in board


def test_the_plots_place_pruned_trials_at_their_best_reported_value(search_uri, page) -> None:
    record = collect("s", search_uri)
    trials = plot_trials(record)
    # completed: the study's value; pruned: the best value reported; failed trial 3: nothing
    assert {t.number: (t.state, t.value) for t in trials} == {
        0: ("COMPLETE", 0.5), 2: ("COMPLETE", 0.75), 5: ("COMPLETE", 0.6),
        1: ("PRUNED", 0.3), 4: ("PRUNED", 0.45)}

    _, fig = history(trials, ACC, "max")
    traces = {t.name: t for t in fig.data}
    assert sorted(zip(traces["pruned"].x, traces["pruned"].y)) == [(1, 0.3), (4, 0.45)]
    assert traces["pruned"].marker.symbol == "triangle-up-open"  # drawn apart
    best = traces["best completed so far"]
    assert (list(best.x), list(best.y)) == ([0, 2, 5], [0.5, 0.75, 0.75])  # completed only

    from sakdn.report_plots import axes_of

    axes = axes_of(record.study)
    assert [a.name for a in axes] == ["distill.lambda_st", "student.lr"]
    _, fig = slices(trials, axes, ACC)
    pruned = [t for t in fig.data if t.name == "pruned"]
    assert len(pruned) == len(axes) and all(sorted(t.y) == [0.3, 0.45] for t in pruned)
    _, fig = parallel(trials, axes, ACC, "max")
    state = fig.data[0].dimensions[0]
    assert state.label == "state" and sorted(state.values) == [0, 0, 0, 1, 1]
    assert "Pruned trials are drawn in orange" in page.read_text()


def test_importances_need_enough_completed_trials(page, many_uri, tmp_path) -> None:
    assert importance_note(MIN_IMPORTANCE_TRIALS - 1) and not importance_note(
        MIN_IMPORTANCE_TRIALS)
    # 3 completed trials: no importance plot, and a sentence saying why
    text = page.read_text()
    assert not (page.parent / "plots" / "param_importances.png").exists()
    assert (f"No parameter importances: they need at least {MIN_IMPORTANCE_TRIALS} completed "
            "trials and this search has 3") in text
    assert "Parameter importances" not in (page.parent / "plots.html").read_text()

    many = write_report("many", out=tmp_path / "many", tracking_uri=many_uri, log_to_run=False)
    assert (many.parent / "plots" / "param_importances.png").exists()
    assert "No parameter importances" not in many.read_text()
    assert "Parameter importances" in (many.parent / "plots.html").read_text()
    pruned = [t.number for t in plot_trials(collect("many", many_uri)) if t.state == "PRUNED"]
    assert len(pruned) == 2  # drawn in the history, left out of the importances


def test_wall_time_adds_every_run_and_leaves_out_a_run_that_ran_nothing() -> None:
    s = 1000  # ms
    trials = [(10 * s, 100 * s), (50 * s, 180 * s), (300 * s, 360 * s), (120 * s, 330 * s)]
    runs = [(185 * s, 185.0),  # the first run: 0-185 s, interrupted
            (365 * s, 65.0),  # --resume: 300-365 s, trial 4 continued, one more trial
            (400 * s, 15.0)]  # --resume again, on the finished search: 385-400 s
    wall = wall_time(runs, trials)
    assert (wall.runs, wall.idle, wall.total) == ((185.0, 65.0), (15.0,), 250.0)
    assert wall_time([], trials).total == 0.0


def test_a_resumed_search_shows_all_its_time_and_a_no_op_resume_changes_nothing(
    many_uri, tmp_path
) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from sakdn import tracking as tr

    client = MlflowClient(many_uri)
    parent = tr.find_parent(client, "many")
    last_end = max(r.info.end_time for r in tr.children(client, parent))

    def driver_run(end: int, seconds: float) -> None:  # what run.py logs when a run ends
        tr.log_batch(client, parent.info.run_id,
                     metrics=[Metric(SearchMetric.WALL_S, seconds, end, 0)])

    driver_run(last_end + 1_000, 185.0)  # the trials ran during these two runs
    driver_run(last_end + 2_000, 65.0)
    first = write_report("many", out=tmp_path / "a", tracking_uri=many_uri, log_to_run=False)
    shown = "250 s over 2 runs of sakdn search (185 s + 65 s)"
    assert shown in first.read_text()

    driver_run(last_end + 600_000, 15.0)  # a --resume of the finished search: no trial ran
    again = write_report("many", out=tmp_path / "b", tracking_uri=many_uri, log_to_run=False)
    assert f"{shown}; not counted: 1 run(s) during which no trial ran (15 s)" in again.read_text()
    assert (first.parent / "leaderboard.csv").read_text() == (
        again.parent / "leaderboard.csv").read_text()
    wall = search_wall_time(client, parent)  # what the driver's summary can print
    assert (wall.runs, wall.idle, wall.total) == ((185.0, 65.0), (15.0,), 250.0)


@pytest.mark.parametrize("low, high", [(3e-4, 5e-3), (1e-3, 2e-3), (1e-5, 1e-1), (1e-6, 1.0)])
def test_a_log_slice_axis_has_a_few_labels_that_do_not_overlap(low: float, high: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sakdn.report_plots import Axis, _slice_axis

    fig = Figure(figsize=(3.2, 2.7))  # one panel of the slice plot
    ax = fig.subplots()
    ax.scatter([low, high], [0.2, 0.5])
    _slice_axis(ax, Axis("student.lr", low, high, log=True))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    shown = [(loc, label) for loc, label in zip(ax.xaxis.get_majorticklocs(),
                                                  ax.xaxis.get_majorticklabels())
             if lo <= loc <= hi and label.get_text()]
    assert len(shown) >= 2  # the range can be read off
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
    boxes = sorted((label.get_window_extent(renderer) for _, label in shown), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [t.get_text() for _, t in shown]
