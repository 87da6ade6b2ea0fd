"""What each part of SAKDN buys: the fixed grid of ablation variants and its paired table.

Every variant is the experiment's own configuration with some parts switched off, trained on
the same seeds; "CE only" is the reference every other variant is paired with (same seed: same
data order, same initial student, same teacher set through the teacher store). The grid is
fixed before anything runs, so nothing is selected: the table may rank by test accuracy.

- ``CE only``: every distillation weight 0.
- ``CE + ST``, ``CE + SP``, ``CE + GSDM``: one term at the experiment's weight.
- ``full SAKDN``: the experiment as it is.
- ``full − SPAMFM``: the experiment with teachers trained without fusion
  (``teacher.spamfm_stages: none``); it trains its own teacher set per seed.
- ``control``: CE only plus soft targets at weight 1e-4, a change of the training gradient by
  about 1e-4 of its size that should buy nothing. Training is chaotic (a change that small
  moves single runs by several points), so the control's spread is the noise floor every
  other difference is judged against (``sakdn.stats``).

This module is pure (no Ray, no MLflow): ``sakdn.search.ablate`` runs the grid as trials and
hands the results here.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sakdn import stats
from sakdn.config import ExperimentConfig, Scalar
from sakdn.errors import ConfigError

REFERENCE = "CE only"
CONTROL = "control"
CONTROL_LAMBDA_ST = 1e-4
LABEL_KEY = "train.label"  # where a trial carries its variant's name
WEIGHTS = ("distill.lambda_st", "distill.lambda_sp", "distill.lambda_gsdm",
           "distill.lambda_sp_gram")
# what the table ranks by, and the other figures it shows (run metrics)
RANK_METRIC = "student/test_acc"
METRICS = {
    "student/test_acc": "test acc (val-chosen model)",
    "student/best_val_acc": "best val acc",
    "student/val_acc_last5": "val acc, last 5 epochs",
}


def _only(flat: Mapping[str, Scalar], *keep: str) -> dict[str, Scalar]:
    """Every distillation weight 0 except ``keep``, which keep the experiment's values."""
    return {k: (flat[k] if k in keep else 0.0) for k in WEIGHTS}


def variant_overrides(config: ExperimentConfig) -> dict[str, dict[str, Scalar]]:
    """The grid's variants, in table order: name → config overrides."""
    flat = config.to_flat()
    return {
        REFERENCE: _only(flat),
        "CE + ST": _only(flat, "distill.lambda_st"),
        "CE + SP": _only(flat, "distill.lambda_sp"),
        "CE + GSDM": _only(flat, "distill.lambda_gsdm"),
        "full SAKDN": {k: flat[k] for k in WEIGHTS},
        "full − SPAMFM": {**{k: flat[k] for k in WEIGHTS}, "teacher.spamfm_stages": "none"},
        CONTROL: {**_only(flat), "distill.lambda_st": CONTROL_LAMBDA_ST},
    }


def choose_variants(config: ExperimentConfig, names: Sequence[str] | None) -> list[str]:
    """The variants to run, in table order; the reference and the control always run."""
    known = list(variant_overrides(config))
    wanted = list(names) if names else known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError("--variants", unknown[0], "unknown variant; choose from "
                          + ", ".join(known))
    return [n for n in known if n in wanted or n in (REFERENCE, CONTROL)]


def grid(config: ExperimentConfig, variants: Sequence[str],
         seeds: Sequence[int]) -> list[dict[str, Scalar]]:
    """One point per (seed, variant): every varying key set, so any trial can be read back.

    Seeds are the outer loop, so the variants of one seed run close together and reuse its
    teacher set while it is fresh.
    """
    overrides = variant_overrides(config)
    keys = sorted({k for name in variants for k in overrides[name]})
    flat = config.to_flat()
    points = []
    for seed in seeds:
        for name in variants:
            point = {k: overrides[name].get(k, flat[k]) for k in keys}
            points.append({**point, "train.seed": int(seed), LABEL_KEY: name})
    return points


@dataclass(frozen=True)
class Row:
    """One variant's line of the table (``comparison`` None for the reference itself)."""

    variant: str
    seeds: list[int]  # the paired seeds this variant finished
    values: dict[str, list[float]]  # metric → one value per seed in ``seeds``
    comparison: stats.Paired | None
    verdict: str  # above / within / below the noise floor ("" for the reference)

    def mean(self, metric: str) -> float:
        v = self.values[metric]
        return sum(v) / len(v) if v else float("nan")

    def sd(self, metric: str) -> float:
        v = self.values[metric]
        if len(v) < 2:
            return float("nan")
        m = self.mean(metric)
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass(frozen=True)
class Table:
    """The ablation table: rows, the seeds every row shares, and the noise floor."""

    rows: list[Row]
    seeds: list[int]
    floor: float
    metric: str = RANK_METRIC


def table(results: Mapping[tuple[str, int], Mapping[str, float]], variants: Sequence[str],
          metric: str = RANK_METRIC) -> Table:
    """Pair every variant with the reference over the seeds where both finished.

    ``results`` maps (variant, seed) → run metrics. Seeds missing for the reference or the
    control are left out of every row, so that all comparisons share one set of seeds.
    """
    have = {(v, s) for (v, s), m in results.items() if metric in m}
    seeds = sorted(s for (v, s) in have if v == REFERENCE and (CONTROL, s) in have)
    ref = [results[(REFERENCE, s)][metric] for s in seeds]
    control = _comparison(results, CONTROL, seeds, metric, ref)
    floor = stats.noise_floor(control[1]) if control[1] else float("nan")
    rows = []
    for name in variants:
        used, comparison = _comparison(results, name, seeds, metric, ref)
        values = {m: [results[(name, s)].get(m, float("nan")) for s in used] for m in METRICS}
        verdict = ("" if name == REFERENCE or comparison is None
                   else stats.verdict(comparison, floor))
        rows.append(Row(name, used, values, None if name == REFERENCE else comparison, verdict))
    return Table(rows, seeds, floor, metric)


def _comparison(results, name, seeds, metric, ref) -> tuple[list[int], stats.Paired | None]:
    pairs = [(s, results[(name, s)][metric], r) for s, r in zip(seeds, ref)
             if (name, s) in results and metric in results[(name, s)]]
    if not pairs:
        return [], None
    used = [s for s, _, _ in pairs]
    return used, stats.paired([a for _, a, _ in pairs], [b for _, _, b in pairs])


# --- rendering ------------------------------------------------------------------------------

COLUMNS = ("variant", "seeds", "mean", "sd", "Δ vs CE only", "95 % CI", "Wilcoxon p", "wins",
           "vs noise floor")


def _cells(t: Table, row: Row) -> list[str]:
    c = row.comparison
    fmt = "{:.3f}".format
    cells = [row.variant, str(len(row.values[t.metric])), fmt(row.mean(t.metric)),
             fmt(row.sd(t.metric))]
    if c is None:
        return cells + ["—", "—", "—", "—",
                        "reference" if row.variant == REFERENCE else "no paired runs"]
    return cells + [f"{c.mean:+.3f}", f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                    "—" if math.isnan(c.p_wilcoxon) else f"{c.p_wilcoxon:.3g}",
                    f"{c.wins}/{c.n}", row.verdict]


def to_text(t: Table) -> str:
    """The table as aligned text (the terminal), with what it ranks by and the floor."""
    rows = [list(COLUMNS)] + [_cells(t, r) for r in t.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([_caption(t), *lines, ""])


def _caption(t: Table) -> str:
    return (f"{METRICS.get(t.metric, t.metric)} ({t.metric}), {len(t.seeds)} paired seeds; "
            f"Δ = variant − {REFERENCE} per seed; noise floor ±{t.floor:.3f} (the {CONTROL}'s "
            "95 % half-width)")


def to_csv(t: Table) -> str:
    """One line per (variant, seed) with every metric (``ablation.csv``)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["variant", "seed", *METRICS])
    for row in t.rows:
        for i, seed in enumerate(row.seeds):
            w.writerow([row.variant, seed, *(row.values[m][i] for m in METRICS)])
    return out.getvalue()


def to_summary_csv(t: Table) -> str:
    """One line per variant: the table's figures unrounded (``ablation_summary.csv``); a
    separate file, so that each CSV is one table with one header."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["variant", "n", "mean", "sd", "delta", "ci_low", "ci_high", "p_wilcoxon", "wins",
                "verdict", "metric", "noise_floor"])
    for row in t.rows:
        c = row.comparison
        w.writerow([row.variant, len(row.values[t.metric]), row.mean(t.metric), row.sd(t.metric),
                    *((c.mean, c.ci_low, c.ci_high, c.p_wilcoxon, c.wins) if c else
                      ("", "", "", "", "")), row.verdict or "reference", t.metric, t.floor])
    return out.getvalue()


def to_html(t: Table, figure: str | None = None) -> str:
    """A self-contained page: the table, its caption, and the figure (a file name) if any."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr class='{}'>{}</tr>".format(r.verdict or "reference",
                                        "".join(f"<td>{html.escape(c)}</td>"
                                                for c in _cells(t, r)))
        for r in t.rows)
    img = f"<p><img src='{html.escape(figure)}' alt='paired differences'></p>" if figure else ""
    return ("<!doctype html><meta charset='utf-8'><title>SAKDN ablation</title><style>"
            "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:"
            "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "td:first-child{text-align:left}.above{background:#e6f4e6}.below{background:#f8e4e4}"
            "img{max-width:100%}</style>"
            f"<h1>SAKDN ablation</h1><p>{html.escape(_caption(t))}</p>"
            f"<table><tr>{head}</tr>{body}</table>{img}")


def figure(t: Table, path: str | Path) -> Path:
    """Paired differences per seed, one row per variant, with the mean, its 95 % CI and the
    noise floor band; saved as PNG."""
    from matplotlib.figure import Figure

    rows = [r for r in t.rows if r.comparison is not None]
    if not rows:
        raise ValueError("no variant has paired runs to draw")
    reference = next(r for r in t.rows if r.variant == REFERENCE)
    ref = dict(zip(reference.seeds, reference.values[t.metric]))
    fig = Figure(figsize=(8.0, 0.55 * len(rows) + 1.6))
    ax = fig.add_axes((0.22, 0.8 / (0.55 * len(rows) + 1.6), 0.74,
                       1 - 1.25 / (0.55 * len(rows) + 1.6)))
    if not math.isnan(t.floor):
        ax.axvspan(-t.floor, t.floor, color="0.88", label="noise floor (control, 95 %)")
    ax.axvline(0.0, color="0.4", lw=0.8)
    for y, row in enumerate(reversed(rows)):
        diffs = [v - ref[s] for s, v in zip(row.seeds, row.values[t.metric])]
        ax.scatter(diffs, [y] * len(diffs), s=14, color="tab:blue", alpha=0.6, zorder=3)
        c = row.comparison
        colour = {"above": "tab:green", "below": "tab:red"}.get(row.verdict, "black")
        ax.errorbar([c.mean], [y], xerr=[[c.mean - c.ci_low], [c.ci_high - c.mean]],
                    fmt="D", color=colour, capsize=4, zorder=4)
    ax.set_yticks(range(len(rows)), [r.variant for r in reversed(rows)])
    ax.set_xlabel(f"paired difference of {t.metric} vs {REFERENCE} (dots: seeds; diamond: mean,"
                  " 95 % CI)", fontsize=8)
    # above the axes, so that no seed's dot hides behind it
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
              borderaxespad=0.2)
    ax.grid(axis="x", alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def results_from_runs(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, float]]:
    """(variant, seed) → metrics from finished runs given as ``{params, metrics}`` mappings."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for run in runs:
        params, metrics = run["params"], run["metrics"]
        if params.get(LABEL_KEY) and "train.seed" in params:
            out[(params[LABEL_KEY], int(params["train.seed"]))] = dict(metrics)
    return out
