"""The search plots of a report: each drawn from the trials whose values it can use.

Optuna's optimisation history, slice and parallel-coordinate plots (optuna 5.1) take completed
trials only, with no option to add pruned ones: a search that prunes most of its trials (12 of
14 in the main job) showed two points. These three are drawn here from every trial with a
value: a completed trial's objective, and for a pruned trial the best value it reported before
it was stopped (the leaderboard's value). Pruned trials are drawn in orange, hollow markers
and dashed lines: their values come from fewer epochs, so they show where the search looked
and what it gave up on, not results to compare one to one. The best-so-far line follows
completed trials only.

Parameter importances use completed trials only, and only from ``MIN_IMPORTANCE_TRIALS`` of
them: Optuna's evaluator (PED-ANOVA) compares the best trials with all completed ones, its
documentation advises at least 5 best trials, and with fewer than twice that many there is
little left to compare them with (the main job's 2 completed trials gave student.lr 0.50,
dropout 0.48, the rest < 0.01: noise that reads as a finding). Below the minimum the report
says why instead (``importance_note``).

Optuna draws the rest as they are: intermediate values (every trial's curve; pruned curves
stop), the timeline (every trial, by state) and, for several objectives, the Pareto front.
Every plot is a PNG (matplotlib) and an interactive plotly figure.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sakdn.names import State

logger = logging.getLogger(__name__)

DPI = 80
COMPLETE_COLOUR, PRUNED_COLOUR, BEST_COLOUR = "#1f77b4", "#d9822b", "#cf222e"
PRUNED_LABEL = "pruned (best value reported before it was stopped)"
TOP_TRIALS = 5  # best trials PED-ANOVA compares with the rest (Optuna's advice: at least 5)
MIN_IMPORTANCE_TRIALS = 2 * TOP_TRIALS
MISSING = -0.15  # where parallel coordinates put a key a trial did not sample
SLICE_COLUMNS = 4


@dataclass(frozen=True)
class PlotTrial:
    """A trial as the plots see it."""

    number: int
    state: str  # State.COMPLETE or State.PRUNED
    value: float  # the (first) objective, or the best value reported before pruning
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Axis:
    """How a sampled key is placed on a plot: a range (log or linear) or a list of choices."""

    name: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def position(self, value: Any) -> float | None:
        """The value's place on the axis, from 0 (low, first choice) to 1 (high, last)."""
        if value is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                return None
            last = len(self.choices) - 1
            return self.choices.index(value) / last if last else 0.5
        lo, hi, v = self.low, self.high, float(value)
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(v)
        return (v - lo) / (hi - lo) if hi > lo else 0.5

    def ticks(self, middle: bool = False) -> list[tuple[float, str]]:
        """(position, label) of the choices, or of the range's ends (and middle)."""
        if self.choices is not None:
            return [(self.position(c) or 0.0, str(c)) for c in self.choices]
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        ends = [(0.0, self.low), *([(0.5, mid)] if middle else []), (1.0, self.high)]
        return [(p, f"{v:.3g}") for p, v in ends]


@dataclass(frozen=True)
class Drawn:
    """One plot of the report."""

    stem: str  # the PNG's file name, without .png
    title: str
    png: Path
    figure: Any  # the same plot as a plotly figure


def axes_of(study: Any) -> list[Axis]:
    """One axis per sampled key of the study, by name (from the first trial that has it)."""
    from optuna.distributions import CategoricalDistribution

    found: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            found.setdefault(name, dist)
    out = []
    for name, dist in sorted(found.items()):
        if isinstance(dist, CategoricalDistribution):
            out.append(Axis(name, choices=tuple(dist.choices)))
        else:
            out.append(Axis(name, float(dist.low), float(dist.high), bool(dist.log)))
    return out


def importance_note(complete: int) -> str | None:
    """Why the report shows no parameter importances, or None when it shows them."""
    if complete >= MIN_IMPORTANCE_TRIALS:
        return None
    return (f"No parameter importances: they need at least {MIN_IMPORTANCE_TRIALS} completed "
            f"trials and this search has {complete}. Optuna's evaluator (PED-ANOVA) compares "
            f"the best trials (at least {TOP_TRIALS}, as Optuna advises) with all completed "
            "ones; from fewer trials its numbers reflect which trials happened to be drawn. "
            "Pruned trials do not count: their values come from fewer epochs.")


def short_names(names: Sequence[str]) -> list[str]:
    """The last dotted part of each key where that is unique (``lambda_sp``), else the key."""
    last = [n.rsplit(".", 1)[-1] for n in names]
    return [s if last.count(s) == 1 else n for n, s in zip(names, last)]


# --- the three plots that show pruned trials --------------------------------------------------


def history(trials: Sequence[PlotTrial], metric: str, mode: str) -> tuple[Any, Any]:
    """Objective per trial number and the best completed value so far (matplotlib, plotly)."""
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from matplotlib.ticker import MaxNLocator

    complete, pruned = _split(trials)
    best_x, best_y = _best_so_far(complete, mode)
    if best_x and max(t.number for t in trials) > best_x[-1]:  # on to the last trial
        best_x, best_y = [*best_x, max(t.number for t in trials)], [*best_y, best_y[-1]]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.scatter([t.number for t in complete], [t.value for t in complete], color=COMPLETE_COLOUR,
               label="complete", zorder=3)
    ax.scatter([t.number for t in pruned], [t.value for t in pruned], facecolors="none",
               edgecolors=PRUNED_COLOUR, marker="^", label=PRUNED_LABEL, zorder=3)
    if best_x:
        ax.step(best_x, best_y, where="post", color=BEST_COLOUR, label="best completed so far",
                zorder=2)
    ax.set(xlabel="trial", ylabel=metric, title="Optimisation history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)
    traces = [
        go.Scatter(x=[t.number for t in complete], y=[t.value for t in complete], mode="markers",
                   name="complete", marker={"color": COMPLETE_COLOUR}),
        go.Scatter(x=[t.number for t in pruned], y=[t.value for t in pruned], mode="markers",
                   name="pruned", marker={"color": PRUNED_COLOUR, "symbol": "triangle-up-open",
                                          "size": 9}),
        go.Scatter(x=best_x, y=best_y, mode="lines", name="best completed so far",
                   line={"color": BEST_COLOUR, "shape": "hv"}),
    ]
    layout = {"title": "Optimisation history", "xaxis_title": "trial", "yaxis_title": metric}
    return fig, go.Figure(traces, layout)


def slices(trials: Sequence[PlotTrial], axes: Sequence[Axis], metric: str) -> tuple[Any, Any]:
    """Objective against each sampled key, one panel per key (matplotlib, plotly)."""
    import matplotlib.pyplot as plt
    from plotly.subplots import make_subplots

    cols = min(SLICE_COLUMNS, len(axes))
    rows = math.ceil(len(axes) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), sharey=True,
                             squeeze=False)
    interactive = make_subplots(rows, cols, subplot_titles=[a.name for a in axes],
                                shared_yaxes=True)
    complete, pruned = _split(trials)
    for i, axis in enumerate(axes):
        ax, row, col = grid.flat[i], i // cols + 1, i % cols + 1
        for group, style in ((complete, "complete"), (pruned, "pruned")):
            xs, ys = _slice_points(group, axis)
            if style == "complete":
                ax.scatter(xs, ys, color=COMPLETE_COLOUR, s=22, zorder=3)
            else:
                ax.scatter(xs, ys, facecolors="none", edgecolors=PRUNED_COLOUR, marker="^", s=26)
            interactive.add_trace(_slice_trace(xs, ys, axis, style, first=i == 0), row, col)
        _slice_axis(ax, axis)
        if axis.log:
            interactive.update_xaxes(type="log", row=row, col=col)
        elif axis.choices is not None:
            interactive.update_xaxes(type="category", row=row, col=col,
                                     categoryorder="array",
                                     categoryarray=[str(c) for c in axis.choices])
        if col == 1:
            ax.set_ylabel(metric, fontsize=9)
    for ax in list(grid.flat)[len(axes):]:
        ax.set_visible(False)
    fig.legend(handles=_legend_handles(marker=True), loc="upper center", ncols=2, fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Slice plots", y=1.04)
    fig.tight_layout()
    interactive.update_layout(title="Slice plots", height=280 * rows)
    return fig, interactive


def parallel(trials: Sequence[PlotTrial], axes: Sequence[Axis], metric: str,
             mode: str) -> tuple[Any, Any]:
    """Each trial as a line through its sampled values and its objective (matplotlib, plotly).

    Every axis runs over the search space's range (or choices), the objective's over the
    values drawn; a key a trial did not sample (a conditional one) sits below the axes.
    """
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    objective = _objective_axis(trials, metric)
    columns = [*axes, objective]
    labels = [*short_names([a.name for a in axes]), short_names([metric])[0]]
    positions = [[_at(c, t.params.get(c.name) if c is not objective else t.value)
                  for c in columns] for t in trials]
    missing = any(p == MISSING for row in positions for p in row)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(columns)), 4.6))
    norm = Normalize(objective.low, objective.high)
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"]
    for t, ys in sorted(zip(trials, positions), key=lambda p: p[0].state == State.COMPLETE):
        if t.state == State.COMPLETE:
            ax.plot(range(len(columns)), ys, color=cmap(norm(t.value)), lw=1.6, zorder=3)
        else:
            ax.plot(range(len(columns)), ys, color=PRUNED_COLOUR, lw=1.0, ls="--", alpha=0.7)
    for x, column in enumerate(columns):
        ax.axvline(x, color="#999", lw=0.8, zorder=1)
        for y, text in column.ticks(middle=column is objective):
            ax.text(x + 0.04, y, text, fontsize=7, va="center", color="#222", zorder=4,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.75})
    if missing:
        ax.axhline(MISSING, color="#bbb", lw=0.8, ls=":")
        ax.text(-0.1, MISSING, "not sampled", fontsize=7, ha="right", va="center", color="#666")
    ax.set_xticks(range(len(columns)), labels, rotation=25, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.3, len(columns) - 0.4)
    ax.set_ylim(MISSING - 0.08 if missing else -0.06, 1.06)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"{metric} (complete)", pad=0.01)
    ax.legend(handles=_legend_handles(marker=False), loc="upper center", fontsize=8, ncols=2,
              bbox_to_anchor=(0.5, -0.24))
    ax.set_title("Parallel coordinates")
    dims = [{"label": "state", "values": [float(t.state != State.COMPLETE) for t in trials],
             "range": [0, 1], "tickvals": [0, 1], "ticktext": ["complete", "pruned"]}]
    for i, (column, label) in enumerate(zip(columns, labels)):
        values = [row[i] for row in positions]
        ticks = column.ticks(middle=column is objective) + (
            [(MISSING, "not sampled")] if MISSING in values else [])
        dims.append({"label": label, "values": values,
                     "range": [MISSING if missing else 0.0, 1.0],
                     "tickvals": [p for p, _ in ticks], "ticktext": [s for _, s in ticks]})
    line = {"color": [t.value for t in trials], "colorscale": "Viridis", "showscale": True,
            "reversescale": mode != "max", "colorbar": {"title": {"text": labels[-1]}}}
    interactive = go.Figure(go.Parcoords(line=line, dimensions=dims),
                            {"title": "Parallel coordinates (the state axis marks pruned trials)"})
    return fig, interactive


def _split(trials: Sequence[PlotTrial]) -> tuple[list[PlotTrial], list[PlotTrial]]:
    return ([t for t in trials if t.state == State.COMPLETE],
            [t for t in trials if t.state != State.COMPLETE])


def _best_so_far(complete: Sequence[PlotTrial], mode: str) -> tuple[list[int], list[float]]:
    xs, ys, best = [], [], None
    for t in sorted(complete, key=lambda t: t.number):
        better = best is None or (t.value > best if mode == "max" else t.value < best)
        best = t.value if better else best
        xs.append(t.number)
        ys.append(best)
    return xs, ys


def _slice_points(trials: Sequence[PlotTrial], axis: Axis) -> tuple[list[Any], list[float]]:
    """The trials that sampled ``axis``: x (a choice's index for a categorical key), y."""
    xs, ys = [], []
    for t in trials:
        value = t.params.get(axis.name)
        if value is None or (axis.choices is not None and value not in axis.choices):
            continue
        xs.append(axis.choices.index(value) if axis.choices is not None else value)
        ys.append(t.value)
    return xs, ys


def _slice_axis(ax: Any, axis: Axis) -> None:
    ax.set_title(axis.name, fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    if axis.log:
        ax.set_xscale("log")
        ax.set_xlim(axis.low / 1.3, axis.high * 1.3)
        _log_ticks(ax, axis.low, axis.high)
    elif axis.choices is not None:
        ax.set_xticks(range(len(axis.choices)), [str(c) for c in axis.choices])
        ax.set_xlim(-0.5, len(axis.choices) - 0.5)
        if sum(len(str(c)) for c in axis.choices) > 24:
            ax.tick_params(axis="x", labelrotation=20)
    else:
        pad = (axis.high - axis.low) * 0.05
        ax.set_xlim(axis.low - pad, axis.high + pad)


def _log_ticks(ax: Any, low: float, high: float) -> None:
    """Plain labels at 1, 2, 5 (or 1, 3, or 1) × 10^k, as many as a range of that many decades
    has room for, and none on the minor ticks: across less than two decades matplotlib labels
    every minor tick of a log axis in scientific notation, and the labels run into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(high / low)
    subs = (1.0, 2.0, 5.0) if decades <= 1 else (1.0, 3.0) if decades <= 2 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if decades > 3:
        ax.tick_params(axis="x", labelrotation=30)


def _slice_trace(xs: list[Any], ys: list[float], axis: Axis, style: str, first: bool) -> Any:
    import plotly.graph_objects as go

    if axis.choices is not None:
        xs = [str(axis.choices[i]) for i in xs]
    marker = ({"color": COMPLETE_COLOUR} if style == "complete"
              else {"color": PRUNED_COLOUR, "symbol": "triangle-up-open", "size": 9})
    return go.Scatter(x=xs, y=ys, mode="markers", name=style, legendgroup=style,
                      showlegend=first, marker=marker)


def _objective_axis(trials: Sequence[PlotTrial], metric: str) -> Axis:
    values = [t.value for t in trials]
    lo, hi = min(values), max(values)
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    return Axis(metric, lo, hi)


def _at(axis: Axis, value: Any) -> float:
    position = axis.position(value)
    return MISSING if position is None else position


def _legend_handles(marker: bool) -> list[Any]:
    from matplotlib.lines import Line2D

    if marker:
        return [Line2D([], [], ls="", marker="o", color=COMPLETE_COLOUR, label="complete"),
                Line2D([], [], ls="", marker="^", markerfacecolor="none",
                       markeredgecolor=PRUNED_COLOUR, label=PRUNED_LABEL)]
    return [Line2D([], [], color="#3b528b", label="complete (colour: objective)"),
            Line2D([], [], color=PRUNED_COLOUR, ls="--", label=PRUNED_LABEL)]


# --- drawing them all -------------------------------------------------------------------------


def draw(study: Any, trials: Sequence[PlotTrial], metrics: Sequence[str],
         modes: Sequence[str], out_dir: Path) -> list[Drawn]:
    """Every plot this search gets, as PNGs in ``out_dir`` and plotly figures.

    A plot that cannot be drawn (e.g. a Pareto front without completed trials) is left out
    with a warning: the report goes on.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for stem, title, make in _specs(study, trials, metrics, modes):
        try:
            # Optuna's plots switch matplotlib to ggplot for good: keep that to each plot
            with warnings.catch_warnings(), plt.style.context("default"):
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning and the like
                fig, interactive = make()
                fig.savefig(out_dir / f"{stem}.png", dpi=DPI, bbox_inches="tight")
            drawn.append(Drawn(stem, title, out_dir / f"{stem}.png", interactive))
        except Exception as err:  # a plot is a view: the others and the report go on
            logger.warning("plot %s skipped: %s: %s", stem, type(err).__name__, err)
        finally:
            plt.close("all")
    return drawn


def _specs(study: Any, trials: Sequence[PlotTrial], metrics: Sequence[str],
           modes: Sequence[str]) -> list[tuple[str, str, Callable[[], tuple[Any, Any]]]]:
    """(file stem, title, a function drawing it) of each plot this search gets."""
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl
    from optuna.trial import TrialState

    def optuna_plot(name: str, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
        def make() -> tuple[Any, Any]:
            axes = getattr(vis_mpl, name)(study, **kwargs)
            first = axes if hasattr(axes, "figure") else axes.flat[0]
            return first.figure, getattr(vis, name)(study, **kwargs)
        return make

    metric, mode, multi = metrics[0], modes[0], len(metrics) > 1
    axes = axes_of(study)
    specs: list[tuple[str, str, Callable[[], tuple[Any, Any]]]] = []
    if trials:
        specs.append(("optimization_history", "Optimisation history",
                      lambda: history(trials, metric, mode)))
        if axes:
            specs += [("slice", "Slice plots", lambda: slices(trials, axes, metric)),
                      ("parallel_coordinate", "Parallel coordinates",
                       lambda: parallel(trials, axes, metric, mode))]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if importance_note(len(complete)) is None and axes:
        specs.append(("param_importances", "Parameter importances",
                      optuna_plot("plot_param_importances", **_importance_args(
                          len(complete), metric, mode, multi))))
    if multi and complete:
        specs.append(("pareto_front", "Pareto front",
                      optuna_plot("plot_pareto_front", target_names=list(metrics))))
    if not multi:
        specs.append(("intermediate_values", "Intermediate values (pruning)",
                      optuna_plot("plot_intermediate_values")))
    specs.append(("timeline", "Timeline", optuna_plot("plot_timeline")))
    return specs


def _importance_args(complete: int, metric: str, mode: str, multi: bool) -> dict[str, Any]:
    """PED-ANOVA on the best ``TOP_TRIALS`` completed trials at least (ceil(q·n) of n)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    quantile = max(0.1, (TOP_TRIALS - 0.5) / complete)
    args: dict[str, Any] = {"evaluator": PedAnovaImportanceEvaluator(target_quantile=quantile),
                            "target_name": metric}
    if multi:  # a target is minimised by the evaluator: negate an objective to maximise
        sign = -1.0 if mode == "max" else 1.0
        args["target"] = lambda t: sign * t.values[0]
    return args
