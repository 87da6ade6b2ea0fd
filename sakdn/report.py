"""One HTML report per search, and the search-level plots on its parent run.

``write_report(search)`` reads a search back from MLflow (parent run, child runs, metric
histories, the best trial's figures) and from its Optuna study (the parent's ``sakdn.study``
tag), and writes into one folder:

- ``report.html``: a single self-contained page (CSS inline, images as data URIs: it opens
  from disk, no server): the summary (trial states, best trial, pruning savings, teacher
  store hits, the command that reproduces the best model), the leaderboard, the search
  plots and the best trial's figures;
- ``plots/*.png``: optimisation history, slice plots and parallel coordinates with the pruned
  trials marked, parameter importances from enough completed trials, Optuna's intermediate
  values and timeline, and the Pareto front for a multi-objective search (``sakdn.report_plots``
  says which trials each plot uses); ``plots.html``: the same plots interactive (plotly, its
  script inlined once);
- ``leaderboard.csv`` / ``leaderboard.html``: one row per trial: state, objective value(s),
  epochs run, compute spent, teacher-store hit, sampled params (on the page: in a box that
  scrolls sideways, the trial column kept in view, so the page itself fits a 1280 px window).

Everything is also logged to the parent run (``report/``, ``plots/``, ``leaderboard/``).

Pruning savings: a pruned trial ran ``e`` of its ``E`` planned student epochs; the search
saved Σ (E − e) student epochs over its pruned trials, and about that many times the
median measured seconds per student epoch (from the metric timestamps of the trials).

Wall time: every run of ``sakdn search`` on a search (the first, each ``--resume``) logs its
own seconds as one point of the parent's ``time/wall_s``; the report sums the history, so a
resumed search shows all its time, not its last run's. A run during which no trial ran (a
``--resume`` of a finished search) is named apart and not added: rewriting the report after
it changes nothing the search did.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sakdn import tracking as tr
from sakdn.config import DEFAULT_METRIC
from sakdn.errors import ConfigError
from sakdn.names import Origin, SearchMetric, State, StudyAttr, Tag
from sakdn.outcome import from_study
from sakdn.report_plots import Drawn, PlotTrial, draw, importance_note
from sakdn.tracking_auth import is_server

logger = logging.getLogger(__name__)

TEACHER_STEP_METRIC, STUDENT_STEP_METRIC = "teacher/loss", "student/loss"  # one point / epoch
STATE_ORDER = {State.COMPLETE: 0, State.PRUNED: 1, State.STOPPED: 2, State.FAILED: 3,
               State.RUNNING: 4}


@dataclass
class TrialRow:
    """One trial of the leaderboard."""

    number: int | None
    state: str
    run_id: str
    values: list[float | None]  # per objective: the study's value, else the best reported
    teacher_epochs: int
    student_epochs: int
    planned_epochs: int
    seconds: float
    seconds_per_student_epoch: float | None
    teacher_cache_hit: str
    params: dict[str, Any]
    error: str = ""
    pareto: bool = False
    start_ms: int = 0  # the child run's start and end (or now, for a run still open)
    end_ms: int = 0


@dataclass
class Savings:
    """What pruning saved, in student epochs and (estimated) trial seconds."""

    pruned: int
    epochs_run: int  # by the pruned trials
    epochs_not_run: int
    planned_total: int  # student epochs of every finished trial run to the end
    seconds_per_epoch: float | None
    seconds_saved: float | None

    @property
    def fraction(self) -> float:
        return self.epochs_not_run / self.planned_total if self.planned_total else 0.0


@dataclass(frozen=True)
class WallTime:
    """Seconds of each run of ``sakdn search`` on one search (the first and every resume)."""

    runs: tuple[float, ...] = ()  # runs during which a trial ran
    idle: tuple[float, ...] = ()  # runs during which none did (a --resume with nothing to run)

    @property
    def total(self) -> float:
        return sum(self.runs)


@dataclass
class SearchRecord:
    """A search read back from MLflow and its Optuna study."""

    name: str
    tracking_uri: str
    parent: Any
    metrics: list[str]
    modes: list[str]
    rows: list[TrialRow]
    study: Any = None
    study_error: str = ""
    param_names: list[str] = field(default_factory=list)
    wall: WallTime = field(default_factory=WallTime)

    @property
    def best(self) -> TrialRow | None:
        complete = [r for r in self.rows
                    if r.state == State.COMPLETE and r.values[0] is not None]
        if not complete:
            return None
        sign = -1.0 if self.modes[0] == "max" else 1.0
        return min(complete, key=lambda r: (sign * r.values[0], r.number or 0))

    def origin(self, number: int | None) -> str:
        """How trial ``number``'s configuration came about (an ``Origin`` value; "" unknown)."""
        if self.study is None or number is None:
            return ""
        return next((str(t.user_attrs.get(StudyAttr.ORIGIN, "")) for t in
                     self.study.get_trials(deepcopy=False) if t.number == number), "")

    @property
    def reference(self) -> TrialRow | None:
        """The trial of ``search.start_point`` (the experiment's own values), if one ran."""
        if self.study is None:
            return None
        numbers = {t.number for t in self.study.get_trials(deepcopy=False)
                   if t.user_attrs.get(StudyAttr.REFERENCE)}
        return next((r for r in self.rows if r.number in numbers), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out


# --- entry points ---------------------------------------------------------------------------


def write_report(
    search: str, out: str | Path | None = None, tracking_uri: str | None = None,
    log_to_run: bool = True,
) -> Path:
    """Write the report of a search (name or parent run id); returns ``report.html``'s path.

    ``out`` defaults to ``<search dir>/report`` (the parent's ``sakdn.search_dir``), else
    ``reports/<name>``. With ``log_to_run`` the files are also logged to the parent run.
    """
    uri = tracking_uri or tr.default_tracking_uri()
    record = collect(search, uri)
    out = Path(out) if out else _default_out(record)
    out.mkdir(parents=True, exist_ok=True)
    plots = search_plots(record, out / "plots")
    board_csv, board_html = write_leaderboard(record, out)
    figures = best_trial_figures(record, out / "best_trial")
    page = out / "report.html"
    page.write_text(render_report(record, plots, figures, savings(record.rows)))
    if log_to_run:
        mlflow = tr.client(uri)
        run_id = record.parent.info.run_id
        mlflow.log_artifact(run_id, str(page), "report")
        for path in (board_csv, board_html):
            mlflow.log_artifact(run_id, str(path), "leaderboard")
        for path in [*(plot.png for plot in plots), out / "plots.html"]:
            if path.exists():
                mlflow.log_artifact(run_id, str(path), "plots")
    return page


def report_search(result: Any) -> Path | None:
    """The end of ``run_search``: write and log the report; never raises (the search's
    own outcome is already recorded)."""
    if not getattr(result, "parent_run_id", None):
        return None
    try:
        page = write_report(result.parent_run_id, out=Path(result.path) / "report",
                            tracking_uri=result.tracking_uri)
    except Exception as err:  # a report is a view of the results, not one of them
        logger.warning("search report not written: %s: %s", type(err).__name__, err,
                       exc_info=True)
        return None
    print(f"report: {page}", flush=True)
    return page


def _default_out(record: SearchRecord) -> Path:
    search_dir = record.parent.data.tags.get(Tag.SEARCH_DIR)
    if search_dir and Path(search_dir).is_dir():
        return Path(search_dir) / "report"
    return Path("reports") / record.name


# --- reading the search back ----------------------------------------------------------------


def collect(search: str, tracking_uri: str) -> SearchRecord:
    """Parent run, one ``TrialRow`` per child run, and the Optuna study when reachable."""
    mlflow = tr.client(tracking_uri)
    parent = tr.find_parent(mlflow, search)
    if parent is None:
        raise ConfigError("search", search,
                          f"no search of this name or parent run id in {tracking_uri}")
    tags = parent.data.tags
    metrics = tags.get(Tag.METRIC, DEFAULT_METRIC).split(",")
    modes = tags.get(Tag.MODE, "max").split(",")
    study, study_error = _load_study(tags.get(Tag.STUDY, ""))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)} if study else {}
    pareto = {t.number for t in study.best_trials} if study and len(metrics) > 1 else set()
    param_names = sorted({k for t in trials.values() for k in t.params})
    hits = _store_hits(tags.get(Tag.SEARCH_DIR))
    rows = []
    for run in tr.children(mlflow, parent):
        rows.append(_row(mlflow, run, metrics, modes, trials, param_names, hits))
    for row in rows:
        row.pareto = row.number in pareto
    if not param_names:  # no study: the params that differ between trials
        param_names = _varying(rows)
        for row in rows:
            row.params = {k: row.params.get(k) for k in param_names}
    rows.sort(key=lambda r: _rank(r, modes[0]))
    wall = wall_time(_driver_runs(mlflow, parent.info.run_id),
                     [(r.start_ms, r.end_ms) for r in rows])
    return SearchRecord(tags.get(Tag.SEARCH, search), tracking_uri, parent, metrics, modes, rows,
                        study, study_error, param_names, wall)


def search_wall_time(mlflow: Any, parent: Any) -> WallTime:
    """The wall time of every run of a search so far (for the driver's closing summary)."""
    now = int(time.time() * 1000)
    spans = [(r.info.start_time, r.info.end_time or now) for r in tr.children(mlflow, parent)]
    return wall_time(_driver_runs(mlflow, parent.info.run_id), spans)


def _driver_runs(mlflow: Any, parent_run_id: str) -> list[tuple[int, float]]:
    """(end in ms, seconds) of each run of ``sakdn search`` that logged its wall time."""
    return [(m.timestamp, m.value) for m in _history(mlflow, parent_run_id, SearchMetric.WALL_S)]


def wall_time(driver_runs: Sequence[tuple[int, float]],
              trial_spans: Sequence[tuple[int, int]]) -> WallTime:
    """The search's wall time from each driver run's (end in ms, seconds) and each trial's
    (start, end) in ms.

    A driver run during which no trial's run was open ran nothing (a ``--resume`` of a
    finished search): it is kept apart, so that it neither adds to the search's time nor
    replaces it.
    """
    runs, idle = [], []
    for end, seconds in sorted(driver_runs):
        start = end - seconds * 1000.0
        busy = any(t_start <= end and t_end >= start for t_start, t_end in trial_spans)
        (runs if busy else idle).append(float(seconds))
    return WallTime(tuple(runs), tuple(idle))


def _load_study(ref: str) -> tuple[Any, str]:
    storage, _, name = ref.rpartition("#")
    if not storage or not name:
        return None, "the parent run names no Optuna study"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=name, storage=storage), ""
    except Exception as err:  # a study on another machine: the report goes on without it
        return None, f"Optuna study {name} in {storage} not readable: {err}"


def _store_hits(search_dir: str | None) -> dict[int, str]:
    """Optuna trial number → "true" / "false" from the teacher store's lookup log.

    Completed trials carry the ``sakdn.teacher_cache_hit`` tag; the log also knows the
    trials stopped before that tag was set (it names each trial's work directory).
    """
    path = Path(search_dir or "") / "teacher_store" / "events.jsonl"
    if not search_dir or not path.exists():
        return {}
    out: dict[int, str] = {}
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        number = _int(Path(str(event.get("run", ""))).name)
        if number is not None:
            out[number] = "true" if event.get("hit") else "false"
    return out


def _row(mlflow, run, metrics, modes, trials, param_names, hits) -> TrialRow:
    tags, info = run.data.tags, run.info
    number = _int(tags.get(Tag.OPTUNA_TRIAL))
    hit = tags.get(Tag.TEACHER_CACHE_HIT) or hits.get(number, "")
    trial = trials.get(number) if number is not None else None
    state = tags.get(Tag.STATE) or (
        from_study(trial.state.name, search_ended=False) if trial else State.RUNNING)
    teacher = _history(mlflow, info.run_id, TEACHER_STEP_METRIC)
    student = _history(mlflow, info.run_id, STUDENT_STEP_METRIC)
    values: list[float | None] = []
    for i, (metric, mode) in enumerate(zip(metrics, modes)):
        if trial is not None and trial.state.name == "COMPLETE" and trial.values:
            values.append(float(trial.values[i]))
            continue
        points = [m.value for m in _history(mlflow, info.run_id, metric) if math.isfinite(m.value)]
        values.append((max(points) if mode == "max" else min(points)) if points else None)
    end = info.end_time or int(time.time() * 1000)
    params = dict(trial.params) if trial is not None else {
        k: v for k, v in run.data.params.items() if not param_names or k in param_names}
    return TrialRow(
        number=number, state=state, run_id=info.run_id, values=values,
        # a teacher stage loaded from the store replays its history but trains nothing
        teacher_epochs=0 if hit == "true" else len({m.step for m in teacher}),
        student_epochs=len({m.step for m in student}),
        planned_epochs=_int(run.data.params.get("student.epochs")) or 0,
        seconds=max(0.0, (end - info.start_time) / 1000.0),
        seconds_per_student_epoch=_epoch_seconds(student),
        teacher_cache_hit=hit,
        params=params, error=tags.get(Tag.ERROR, "")[:300],
        start_ms=info.start_time, end_ms=end,
    )


def _history(mlflow, run_id: str, key: str) -> list:
    try:
        return list(mlflow.get_metric_history(run_id, key))
    except Exception:  # a metric the run never logged
        return []


def _epoch_seconds(points: Sequence[Any]) -> float | None:
    """Mean seconds between consecutive epochs of one stage (needs two epochs)."""
    by_step = sorted({m.step: m.timestamp for m in points}.items())
    if len(by_step) < 2:
        return None
    (s0, t0), (s1, t1) = by_step[0], by_step[-1]
    return (t1 - t0) / 1000.0 / (s1 - s0)


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _varying(rows: Sequence[TrialRow]) -> list[str]:
    keys = sorted({k for r in rows for k in r.params})
    return [k for k in keys if len({str(r.params.get(k)) for r in rows}) > 1]


def _rank(row: TrialRow, mode: str) -> tuple:
    value = row.values[0] if row.values else None
    key = math.inf if value is None else (-value if mode == "max" else value)
    return STATE_ORDER.get(row.state, 5), key, row.number if row.number is not None else 1 << 30


def savings(rows: Sequence[TrialRow]) -> Savings:
    """Student epochs (and estimated seconds) that pruning saved against full runs."""
    pruned = [r for r in rows if r.state == State.PRUNED]
    finished = [r for r in rows if r.state in (State.COMPLETE, State.PRUNED)]
    run = sum(r.student_epochs for r in pruned)
    not_run = sum(max(0, r.planned_epochs - r.student_epochs) for r in pruned)
    measured = [r.seconds_per_student_epoch for r in rows if r.seconds_per_student_epoch]
    per_epoch = statistics.median(measured) if measured else None
    return Savings(
        pruned=len(pruned), epochs_run=run, epochs_not_run=not_run,
        planned_total=sum(r.planned_epochs for r in finished), seconds_per_epoch=per_epoch,
        seconds_saved=not_run * per_epoch if per_epoch is not None else None,
    )


# --- the leaderboard ------------------------------------------------------------------------


def leaderboard_columns(record: SearchRecord) -> list[str]:
    cols = ["trial", "state", *record.metrics]
    if len(record.metrics) > 1:
        cols.append("pareto")
    cols += ["teacher_epochs", "student_epochs", "planned_student_epochs", "compute_s",
             "teacher_cache_hit", *record.param_names, "run_id", "error"]
    return cols


def leaderboard_records(record: SearchRecord) -> list[dict[str, Any]]:
    """The leaderboard as plain dicts (best first: completed by objective, then the rest)."""
    out = []
    for r in record.rows:
        row: dict[str, Any] = {"trial": r.number, "state": r.state}
        row.update(zip(record.metrics, r.values))
        if len(record.metrics) > 1:
            row["pareto"] = r.pareto
        row.update(teacher_epochs=r.teacher_epochs, student_epochs=r.student_epochs,
                   planned_student_epochs=r.planned_epochs, compute_s=round(r.seconds, 1),
                   teacher_cache_hit=r.teacher_cache_hit)
        row.update({k: r.params.get(k) for k in record.param_names})
        row.update(run_id=r.run_id, error=r.error)
        out.append(row)
    return out


def write_leaderboard(record: SearchRecord, out: Path) -> tuple[Path, Path]:
    cols = leaderboard_columns(record)
    records = leaderboard_records(record)
    csv_path = out / "leaderboard.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in records)
    html_path = out / "leaderboard.html"
    html_path.write_text(_page(f"Leaderboard of {record.name}", _table(cols, records)))
    return csv_path, html_path


def _cell(value: Any, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


TEXT_COLUMNS = ("error",)  # cells that wrap instead of widening the table


def _table(cols: Sequence[str], records: Sequence[dict[str, Any]]) -> str:
    """The leaderboard in a box of its own that scrolls (sideways and down) with the trial
    column and the header kept in view: the page stays as wide as the window however many
    keys were sampled. Headers break at ``.``, ``_`` and ``/``; numbers are shown to 4
    significant digits (the full value in the cell's tooltip and in leaderboard.csv)."""
    e = html.escape
    head = "".join(f'<th title="{e(c)}">{_breakable(c)}</th>' for c in cols)
    body = []
    for r in records:
        cells = []
        for c in cols:
            short, full = _cell(r.get(c), 4), _cell(r.get(c))
            attrs = (' class="text"' if c in TEXT_COLUMNS else "") + (
                f' title="{e(full)}"' if full != short else "")
            cells.append(f"<td{attrs}>{e(short)}</td>")
        body.append(f'<tr class="{e(str(r.get("state", "")).lower())}">{"".join(cells)}</tr>')
    return (f'<div class="board"><table class="leaderboard"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _breakable(label: str) -> str:
    """The escaped label with a line-break opportunity after each ``.``, ``_`` and ``/``."""
    text = html.escape(label)
    for mark in "._/":
        text = text.replace(mark, mark + "<wbr>")
    return text


# --- search-level plots ---------------------------------------------------------------------


def plot_trials(record: SearchRecord) -> list[PlotTrial]:
    """The trials the search plots can place: completed ones with their objective, pruned ones
    with the best value they reported (the leaderboard's values; first objective)."""
    return [PlotTrial(r.number, r.state, float(r.values[0]), r.params) for r in record.rows
            if r.state in (State.COMPLETE, State.PRUNED) and r.number is not None
            and r.values and r.values[0] is not None and math.isfinite(r.values[0])]


def search_plots(record: SearchRecord, out_dir: Path) -> list[Drawn]:
    """The search plots as PNGs in ``out_dir`` and, together, ``<out_dir>/../plots.html``."""
    if record.study is None:
        return []
    (out_dir.parent / "plots.html").unlink(missing_ok=True)  # from an earlier report
    for old in out_dir.glob("*.png"):
        old.unlink()
    drawn = draw(record.study, plot_trials(record), record.metrics, record.modes, out_dir)
    if drawn:
        _write_interactive(record, drawn, out_dir.parent / "plots.html")
    return drawn


def complete_count(record: SearchRecord) -> int:
    """Completed trials as the study counts them (what importances may use)."""
    if record.study is None:
        return 0
    return sum(t.state.name == "COMPLETE" for t in record.study.get_trials(deepcopy=False))


def _write_interactive(record: SearchRecord, drawn: Sequence[Drawn], path: Path) -> None:
    parts = []
    for i, plot in enumerate(drawn):
        parts.append(f"<h2>{html.escape(plot.title)}</h2>")
        parts.append(plot.figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
    path.write_text(_page(f"Search {record.name}: interactive plots", "\n".join(parts)))


# --- the best trial's figures ---------------------------------------------------------------


def best_trial_figures(record: SearchRecord, out_dir: Path) -> list[Path]:
    """The best trial's per-trial figures: its MLflow ``figures/`` artifacts, else drawn
    from its work directory when that is still on this machine."""
    best = record.best
    if best is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar in logs
    try:
        import mlflow

        local = mlflow.artifacts.download_artifacts(
            run_id=best.run_id, artifact_path="figures", tracking_uri=record.tracking_uri,
            dst_path=str(out_dir))
        found = _in_figure_order(Path(local).glob("*.png"))
        if found:
            return found
    except Exception as err:  # not logged (older trial, figures failed): try the work dir
        logger.info("no figures logged for run %s: %s", best.run_id, err)
    search_dir = record.parent.data.tags.get(Tag.SEARCH_DIR)
    if search_dir and best.number is not None:
        workdir = Path(search_dir) / "trials" / f"{best.number:05d}"
        if (workdir / "models").is_dir():
            from sakdn.figures import write_trial_figures

            try:
                return _in_figure_order(write_trial_figures(workdir, out_dir))
            except Exception as err:
                logger.warning("figures of %s not drawn: %s", workdir, err)
    return []


def _in_figure_order(paths) -> list[Path]:
    """Learning curves, confusion matrix, attention maps, GAF images, then anything else."""
    from sakdn.figures import ATTENTION, CONFUSION, CURVES, GAF

    rank = {name: i for i, name in enumerate((CURVES, CONFUSION, ATTENTION, GAF))}
    return sorted(map(Path, paths), key=lambda p: (rank.get(p.name, len(rank)), p.name))


# --- the page -------------------------------------------------------------------------------


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.muted{color:#666} pre{background:#f5f5f5;padding:8px 12px;overflow-x:auto}
.note{background:#fff8e5;border-left:3px solid #d9822b;padding:6px 10px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 6px;
text-align:right;white-space:nowrap} th{background:#f0f0f0;position:sticky;top:0}
.facts td{text-align:left;white-space:normal;overflow-wrap:anywhere}
.board{overflow:auto;max-width:100%;max-height:70vh;border:1px solid #ccc}
.board table{border-collapse:separate;border-spacing:0}
.board td,.board th{border-width:0 1px 1px 0}
.board th{white-space:normal;vertical-align:bottom;min-width:3.5em;max-width:9em;z-index:1}
.board td.text{white-space:normal;min-width:16em;max-width:32em;text-align:left}
.board td:first-child,.board th:first-child{position:sticky;left:0;background:#fff;z-index:1;
box-shadow:inset -2px 0 #bbb}
.board th:first-child{background:#f0f0f0;z-index:2}
tr.complete td:nth-child(2){color:#1a7f37;font-weight:600}
tr.pruned td:nth-child(2){color:#9a6700} tr.failed td:nth-child(2){color:#cf222e}
figure{display:inline-block;margin:8px;vertical-align:top;max-width:calc(100% - 16px)}
figcaption{font-size:13px} img{max-width:100%;height:auto;border:1px solid #eee}
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figure(path: Path, caption: str) -> str:
    return (f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


ORIGIN_TEXT = {
    Origin.GIVEN: "a given configuration (the start point or points_to_evaluate)",
    Origin.STARTUP: "drawn at random in the sampler's start-up trials",
    Origin.GUIDED: "drawn by the sampler from the trials finished before it (after start-up)",
}


def _reference_text(ref: TrialRow, best: TrialRow | None, metric: str) -> str:
    """The experiment's own configuration against the best trial (first objective)."""
    text = f"trial {ref.number}, the experiment's own values: "
    if ref.state != State.COMPLETE or ref.values[0] is None:
        return text + ref.state.lower()
    text += f"{metric} = {_fmt(ref.values[0])}"
    if best is not None and best.values[0] is not None:
        text += f"; best − start point = {best.values[0] - ref.values[0]:+.4f}"
    return text


def render_report(
    record: SearchRecord, plots: Sequence[Drawn], figures: Sequence[Path], saved: Savings
) -> str:
    """The self-contained page (every image inlined)."""
    e = html.escape
    tags = record.parent.data.tags
    counts = record.counts()
    best = record.best
    objective = ", ".join(f"{m} ({d})" for m, d in zip(record.metrics, record.modes))
    facts = [
        ("search", record.name),
        ("objective", objective),
        ("experiment file", tags.get(Tag.EXPERIMENT_FILE, "")),
        ("search space", tags.get(Tag.SPACE_FILE, "")),
        ("trials", ", ".join(
            f"{counts.get(s, 0)} {s.lower()}"
            for s in (State.COMPLETE, State.PRUNED, State.FAILED, State.STOPPED, State.RUNNING)
            if counts.get(s, 0) or s in (State.COMPLETE, State.PRUNED, State.FAILED))),
        ("MLflow parent run", f"{record.parent.info.run_id} in {record.tracking_uri}"),
    ]
    if record.wall.runs or record.wall.idle:
        facts.append(("wall time", _wall_text(record.wall)))
    if best is not None:
        values = ", ".join(f"{m} = {_fmt(v)}" for m, v in zip(record.metrics, best.values))
        how = ORIGIN_TEXT.get(record.origin(best.number), "")
        facts.append(("best trial", f"trial {best.number}: {values} (run {best.run_id})"
                      + (f"; {how}" if how else "")))
    if (ref := record.reference) is not None:
        facts.append(("start point", _reference_text(ref, best, record.metrics[0])))
    facts.append(("pruning", _savings_text(saved)))
    facts.append(("teacher store", _teacher_text(record)))
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    uri = record.tracking_uri
    commands = "\n".join([
        f"sakdn best {record.name} --tracking-uri {uri}",
        f"sakdn train --from-best {record.name} --tracking-uri {uri}",
        f"open {tr.ui_url(uri, record.parent.info.experiment_id)}" if is_server(uri)
        else f"mlflow ui --host 127.0.0.1 --backend-store-uri {uri}\n"
             f"open {tr.ui_url(tr.LOCAL_UI, record.parent.info.experiment_id)}",
    ])
    body = [
        f"<h1>Search {e(record.name)}</h1>",
        f'<p class="muted">generated {e(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>',
        f'<table class="facts">{rows}</table>',
        "<h2>Reproduce the best model</h2>",
        f"<pre>{e(commands)}</pre>",
        "<h2>Leaderboard</h2>",
        f'<p class="muted">{len(record.rows)} trials, best first. The table scrolls sideways '
        "for every sampled key, the MLflow run id and a failed trial's error; "
        "leaderboard.csv (next to this page) has every value in full.</p>",
        _table(leaderboard_columns(record), leaderboard_records(record)),
        "<h2>Search plots</h2>",
        *_plots_html(record, plots),
    ]
    body.append("<h2>Best trial</h2>")
    if figures:
        label = f"trial {best.number}" if best is not None else ""
        body += [_figure(p, f"{label}: {Path(p).stem.replace('_', ' ')}") for p in figures]
    else:
        body.append("<p>No figures of a completed trial.</p>")
    return _page(f"Search {record.name}", "\n".join(body))


def _plots_html(record: SearchRecord, plots: Sequence[Drawn]) -> list[str]:
    """The plots section: what pruned trials look like, why importances are missing, the
    plots."""
    if record.study is None or not plots:
        return [f"<p>No search plots: {html.escape(record.study_error or 'nothing to plot yet')}"
                "</p>"]
    out = ['<p>Interactive versions: <a href="plots.html">plots.html</a> '
           "(next to this page, and on the parent run under plots/).</p>"]
    if any(t.state == State.PRUNED for t in plot_trials(record)):
        out.append("<p>Pruned trials are drawn in orange (hollow triangles, dashed lines) at "
                   "the best value they reported before they were stopped: a value after fewer "
                   "epochs, not a final result. The best-so-far line follows completed trials "
                   "only.</p>")
    note = importance_note(complete_count(record))
    if note:
        out.append(f'<p class="note">{html.escape(note)}</p>')
    out += [_figure(plot.png, plot.title) for plot in plots]
    return out


def _wall_text(wall: WallTime) -> str:
    text = f"{wall.total:.0f} s"
    if len(wall.runs) > 1:
        text += (f" over {len(wall.runs)} runs of sakdn search ("
                 + " + ".join(f"{s:.0f} s" for s in wall.runs) + ")")
    if wall.idle:
        text += (f"; not counted: {len(wall.idle)} run(s) during which no trial ran ("
                 + ", ".join(f"{s:.0f} s" for s in wall.idle) + ")")
    return text


def _savings_text(s: Savings) -> str:
    if not s.pruned:
        return "no trial was pruned"
    text = (f"{s.pruned} trial(s) pruned after {s.epochs_run} student epoch(s) in all: "
            f"{s.epochs_not_run} student epoch(s) not run "
            f"({100 * s.fraction:.0f}% of the {s.planned_total} that running every finished "
            "trial to the end would take)")
    if s.seconds_saved is not None:
        text += (f", about {s.seconds_saved:.3g} s of trial time at "
                 f"{s.seconds_per_epoch:.3g} s per student epoch")
    return text


def _teacher_text(record: SearchRecord) -> str:
    m = record.parent.data.metrics
    if SearchMetric.TEACHER_LOOKUPS in m:
        hits = int(m.get(SearchMetric.TEACHER_HITS, 0))
        lookups = int(m[SearchMetric.TEACHER_LOOKUPS])
    else:
        flags = [r.teacher_cache_hit for r in record.rows if r.teacher_cache_hit]
        hits, lookups = flags.count("true"), len(flags)
    if not lookups:
        return "not used"
    return (f"{hits} of {lookups} teacher stages loaded from the store instead of trained "
            f"({lookups - hits} trained)")
