"""Does a pruned search choose as well as the unpruned one, for less compute? Each search's
choice at a compute budget, retrained on fresh training seeds.

A search's recorded best value is one draw: a trial's objective reproduces across training
seeds at ρ ≈ 0.4 on the main job (docs/benchmarks.md §3, ``fidelity_ranking.py``), so "the
pruned search reaches the unpruned search's best" is judged here on what the chosen
configurations are worth, not on the values they happened to record. For each search seed of a
``search_efficiency.py`` run (``--json``; its Optuna studies in ``--storage``):

- the trials in the order they ran, with the student epochs each used (as the run recorded
  them); at a budget of B trial-epochs, a share of the same seed's unpruned search's whole
  compute, a search's choice is its best *completed* trial among those that ended within B:
  what ``sakdn best`` would have read had the search been stopped there;
- every chosen configuration is trained at fresh training seeds (``--train-seeds``; the
  searches trained at seed 0) with the experiment's settings, recording its objective (best
  validation accuracy) and, for context only, the kept model's test accuracy.

Prints per method and budget the compute share, the chosen trials, their fresh-seed objective,
and the paired difference against the unpruned whole search's choice (same search seed, same
training seed) with 95 % t intervals (``sakdn.stats.paired``) at two levels: over all (search
seed, training seed) pairs, which says how these particular choices compare, and over the
search seeds' means, which says how a search of each kind chooses (the unit a search is drawn
at; few seeds, so wide). A method **chooses non-inferiorly within ε** when the search-level
interval's lower end is above −ε.

    python benchmarks/pruned_choice.py --json-in runs/bench/search_efficiency_main.json \\
        --storage runs/bench/search_efficiency_main/searches/optuna.db --json a.json
    python benchmarks/pruned_choice.py --from-json a.json b.json   # two runs' seeds pooled

``--replay`` asks the same without a sampler and without training anything, of many pruner
settings at once: a ``fidelity_ranking.py`` run holds each configuration's curves at training
seeds 0 and 1; random orders of ``--trials`` of them are put through the settings of
``search_efficiency.py --replay`` deciding on seed 0's curves, each order's choice at each
budget is read as above (only trials that trained to their end are chosen), and what it is
worth is its objective at seed 1. Orders drawn from one pool are not independent searches:
``--bootstrap B`` gives each mean difference a percentile interval over B pools of the
configurations resampled with replacement (what the pool's finite size leaves open; the
sampler's adaptation is not in it). Several runs given to ``--replay`` are pooled (their
configurations one pool). ``--screen FIDELITY`` replays a search run at one of the
run's low fidelities (its curves decide and choose; its epochs cost their measured share of a
full one), the chosen configuration judged by its full training at seed 1 as before.

    python benchmarks/pruned_choice.py --replay runs/bench/fidelity_ranking_main.json --trials 20
    python benchmarks/pruned_choice.py --replay runs/bench/fidelity_ranking_frames.json \
        --screen data.frame_size=16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from search_efficiency import BASE, EPSILON, EXPERIMENT, _kind  # noqa: E402

WHOLE = "whole search"


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n\n")[0], "pruned_choice")
    p.add_argument("--json-in", help="a search_efficiency.py --json output")
    p.add_argument("--storage", help="that run's Optuna SQLite file (<workdir>/searches/optuna.db)")
    p.add_argument("--experiment", default=str(EXPERIMENT))
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5],
                   help="shares of the unpruned search's whole compute (the whole search too)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--epsilon", type=float, default=EPSILON)
    p.add_argument("--workers", type=int, default=2, help="trainings at a time")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="overrides for the retrainings (as the searches had them)")
    p.add_argument("--from-json", nargs="+", metavar="PATH",
                   help="print earlier runs' tables, their search seeds pooled (same training "
                        "seeds)")
    p.add_argument("--replay", metavar="PATH", nargs="+",
                   help="a fidelity_ranking.py --json output: replayed pruner settings' choices "
                        "on seed 0's curves, worth at seed 1; trains nothing")
    p.add_argument("--trials", type=int, default=20, help="trials per order (--replay)")
    p.add_argument("--orders", type=int, default=200, help="random orders (--replay)")
    p.add_argument("--setting", action="append", metavar="NAME",
                   help="--replay: only these settings (as printed; 'none' is always kept)")
    p.add_argument("--screen", metavar="FIDELITY",
                   help="--replay: the settings search on this low fidelity of the run (as "
                        "printed by fidelity_ranking.py, e.g. data.frame_size=16), its epochs "
                        "costed at their measured share of a full one; the reference stays the "
                        "unpruned full-fidelity search")
    p.add_argument("--promote", type=int, nargs="+", default=[], metavar="K",
                   help="--replay with --screen: also a two-stage search that screens every "
                        "configuration at that fidelity and trains its K best in full")
    p.add_argument("--screen-epochs", type=int, metavar="M",
                   help="--promote: the screen is a run's first M epochs (default: all)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="--replay: a 95 %% interval for each mean Δ from B pools of "
                        "configurations resampled with replacement")
    args = p.parse_args()
    if not args.from_json and not args.replay and not (args.json_in and args.storage):
        p.error("give --json-in and --storage (or --from-json, or --replay)")
    if (args.promote or args.screen_epochs) and not args.screen:
        p.error("--promote and --screen-epochs are for a two-stage search: give --screen")
    return args


def chosen_at(curves: list[list[float]], complete: list[bool], values: list[float | None],
              budget: float, cost: float = 1.0) -> tuple[int | None, float]:
    """The best completed trial among those that ended within ``budget`` trial-epochs (trials
    in the order they ran; ties go to the earlier, as in ``sakdn best``), and the trial-epochs
    spent by then; an epoch of these curves costs ``cost`` trial-epochs (a screen's cheaper
    epochs in a full trial's units)."""
    spent, best = 0, None
    for i, (curve, done, value) in enumerate(zip(curves, complete, values)):
        if spent + cost * len(curve) > budget + 1e-9:
            break
        spent += cost * len(curve)
        if done and value is not None and (best is None or value > values[best]):
            best = i
    return best, spent


def searches(path: str, storage: str) -> list[dict[str, Any]]:
    """Each search of the run with its trials' curves, states, values and sampled keys (the
    curves in Tune's order, checked against the study's trial numbers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{Path(storage).resolve()}"
    out = []
    for row in json.loads(Path(path).read_text())["results"]["searches"]:
        name = f"{_kind(row['method'])}_r{row['repetition']}"
        trials = optuna.load_study(study_name=name, storage=url).trials
        if len(trials) != len(row["curves"]):
            raise SystemExit(f"{storage}: study {name} has {len(trials)} trials, "
                             f"{path} {len(row['curves'])} curves")
        complete = [t.state == optuna.trial.TrialState.COMPLETE for t in trials]
        for t, curve, done in zip(trials, row["curves"], complete):
            best = harness.best_of_curve(curve)
            if done and not math.isclose(t.value, best, abs_tol=1e-9):
                raise SystemExit(f"{storage}: study {name} trial {t.number} has value {t.value}"
                                 f", its curve in {path} a best of {best}: not one run")
        out.append({"method": row["method"], "seed": row["seed"], "curves": row["curves"],
                    "complete": complete, "values": [t.value for t in trials],
                    "params": [dict(t.params) for t in trials]})
    return out


def choices(runs: list[dict[str, Any]], budgets: list[float]) -> list[dict[str, Any]]:
    """Each search's choice at each budget (a share of its seed's unpruned whole compute)."""
    whole = {r["seed"]: sum(map(len, r["curves"])) for r in runs if r["method"] == BASE}
    out = []
    for r in runs:
        for share in [*budgets, math.inf]:
            trial, spent = chosen_at(r["curves"], r["complete"], r["values"],
                                     share * whole[r["seed"]])
            out.append({"method": r["method"], "seed": r["seed"],
                        "budget": WHOLE if share == math.inf else f"{100 * share:.0f} %",
                        "trial": trial, "share": spent / whole[r["seed"]],
                        "value": None if trial is None else r["values"][trial],
                        "params": None if trial is None else r["params"][trial]})
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sakdn.config import load_config, parse_overrides
    from sakdn.train.data import build_data

    config = load_config(args.experiment).replace(dict(parse_overrides(args.set)), file="--set")
    base = config.to_flat()
    build_data(config, log=lambda m: None)  # written once, before the trainings share it
    picked = choices(searches(args.json_in, args.storage), args.budgets)
    distinct = sorted({json.dumps(c["params"], sort_keys=True) for c in picked if c["params"]})
    root = harness.fresh_dir(Path(args.workdir) / "runs")
    jobs = [{"config": key, "seed": seed,
             "flat": {**base, **json.loads(key), "train.seed": seed, "train.progress": False,
                      "train.num_threads": args.threads, "train.evaluate_test": True},
             "workdir": str(root / f"c{i:03d}_s{seed}"), "store": str(root / "teachers")}
            for i, key in enumerate(distinct) for seed in args.train_seeds]
    started = time.time()
    trained = harness.train_runs(jobs, args.workers)
    worth = {(t["config"], t["seed"]): {
        "objective": harness.best_of_curve(t["curves"]["student/val_acc"]),
        "test": t["metrics"].get("student/test_acc")} for t in trained}
    for c in picked:
        key = json.dumps(c["params"], sort_keys=True) if c["params"] else None
        c["fresh"] = {str(s): worth[key, s] for s in args.train_seeds} if key else None
    return {"choices": picked, "train_seeds": args.train_seeds, "epsilon": args.epsilon,
            "wall_s": time.time() - started}


def comparisons(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method and budget, pooled over search seeds: the fresh-seed objective of its choices
    paired with the unpruned whole search's choice of the same search seed."""
    from sakdn import stats

    seeds = [str(s) for s in results["train_seeds"]]
    ref = {c["seed"]: c for c in results["choices"] if c["method"] == BASE and c["budget"] == WHOLE}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in results["choices"]:
        groups.setdefault((c["method"], c["budget"]), []).append(c)
    out = []
    for (method, budget), cs in groups.items():
        row = {"method": method, "budget": budget,
               "share": statistics.median(c["share"] for c in cs),
               "trials": " ".join("-" if c["trial"] is None else str(c["trial"]) for c in cs),
               "recorded": [c["value"] for c in cs]}
        for measure in ("objective", "test"):
            mine = [c["fresh"][s][measure] if c["fresh"] else math.nan for c in cs for s in seeds]
            theirs = [ref[c["seed"]]["fresh"][s][measure] for c in cs for s in seeds]
            row[measure] = statistics.mean(mine)
            row[f"{measure}_diff"] = stats.paired(mine, theirs)
            k = len(seeds)  # the same, one mean per search: the unit a search is drawn at
            row[f"{measure}_by_search"] = stats.paired(
                [statistics.mean(mine[i:i + k]) for i in range(0, len(mine), k)],
                [statistics.mean(theirs[i:i + k]) for i in range(0, len(theirs), k)])
        d = row["objective_by_search"]
        row["non_inferior"] = bool(d.ci_low > -results["epsilon"]) if d.n > 1 else False
        out.append(row)
    return out


def unpruned_choice(curves: list[list[float]], pick: list[int]) -> int:
    """The configuration an unpruned search of the order ``pick`` chooses: the best of every
    trial trained to its end (ties: the earlier, as ``chosen_at``)."""
    order = [curves[i] for i in pick]
    best, _ = chosen_at(order, [True] * len(order), [harness.best_of_curve(c) for c in order],
                        math.inf)
    return pick[best]


def replay_choices(curves: list[list[float]], worth: list[float], settings: dict[str, Any],
                   trials: int, orders: int, budgets: list[float], epsilon: float,
                   seed: int = 0, screen: list[list[float]] | None = None,
                   screen_cost: float = 1.0, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Replayed settings judged by their choices: ``curves`` (one per configuration) are what
    the pruners see and the values a choice is made on, ``worth`` the same configurations'
    objectives at another training seed. Per setting and budget (a share of the order's
    unpruned whole compute, and the whole search): the median compute used, the mean of the
    choice's worth less the unpruned whole order's choice's (Δ), the choice's mean worth, and
    the orders within ε (Δ ≥ −ε) or with no choice at all.

    ``screen`` (the same configurations trained at a low fidelity, an epoch costing
    ``screen_cost`` of a full one): the settings search on these curves instead (a search run
    at the low fidelity, its choice then trained in full); the reference is still the unpruned
    whole order's choice on ``curves``. ``ids``: as ``random_orders`` takes them."""
    from search_efficiency import random_orders

    seen = screen if screen is not None else curves
    cost = screen_cost if screen is not None else 1.0
    picks = random_orders(len(curves), trials, orders, seed, ids)
    refs = [worth[unpruned_choice(curves, pick)] for pick in picks]
    out = []
    for name, run in settings.items():
        spent = [run([seen[i] for i in pick]) for pick in picks]
        for share in [*budgets, math.inf]:
            used, deltas, worths, empty = [], [], [], 0
            for pick, n, ref in zip(picks, spent, refs):
                cut = [seen[i][:k] for i, k in zip(pick, n)]
                whole = sum(len(curves[i]) for i in pick)
                trial, epochs = chosen_at(cut, [k == len(seen[i]) for i, k in zip(pick, n)],
                                          [harness.best_of_curve(c) for c in cut],
                                          share * whole, cost)
                used.append(epochs / whole)
                if trial is None:
                    empty += 1
                else:
                    worths.append(worth[pick[trial]])
                    deltas.append(worths[-1] - ref)
            out.append({"setting": name,
                        "budget": WHOLE if share == math.inf else f"{100 * share:.0f} %",
                        "share": statistics.median(used),
                        "delta": statistics.mean(deltas) if deltas else math.nan,
                        "worth": statistics.mean(worths) if worths else math.nan,
                        "within": sum(d >= -epsilon for d in deltas), "empty": empty,
                        "orders": len(picks), "reference": statistics.mean(refs)})
    return out


def bootstrap_choices(curves: list[list[float]], worth: list[float], settings: dict[str, Any],
                      trials: int, orders: int, budgets: list[float], epsilon: float,
                      draws: int, seed: int = 0, screen: list[list[float]] | None = None,
                      screen_cost: float = 1.0) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (setting, budget), a 95 % percentile interval of ``replay_choices``' mean Δ over
    ``draws`` pools of the configurations resampled with replacement (each with its own curve
    and worth): how far the mean moves with the configurations a search happens to meet."""
    return bootstrap_rows(
        lambda pool, s: replay_choices(
            [curves[i] for i in pool], [worth[i] for i in pool], settings, trials, orders,
            budgets, epsilon, seed=s, screen=None if screen is None else [screen[i] for i in pool],
            screen_cost=screen_cost, ids=pool),
        len(curves), draws, seed)


def bootstrap_rows(rows_of: Any, size: int, draws: int,
                   seed: int = 0) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (setting, budget) of the rows ``rows_of(pool, seed)`` replays on a pool of
    configuration indices, a 95 % percentile interval of their mean Δ over ``draws`` pools of
    the ``size`` configurations resampled with replacement (``rows_of`` is to hand the pool on
    as ``ids``, so that no replayed search meets a configuration twice)."""
    import random

    rng = random.Random(seed)
    means: dict[tuple[str, str], list[float]] = {}
    for b in range(draws):
        pool = [rng.randrange(size) for _ in range(size)]
        for r in rows_of(pool, b + 1):
            if r["delta"] == r["delta"]:
                means.setdefault((r["setting"], r["budget"]), []).append(r["delta"])
    out = {}
    for key, values in means.items():
        values.sort()
        out[key] = (values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))])
    return out


def two_stage_choices(curves: list[list[float]], worth: list[float], screen: list[list[float]],
                      trials: int, orders: int, promote: int, epsilon: float,
                      screen_epochs: int | None = None, screen_cost: float = 1.0,
                      seed: int = 0, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """A two-stage search replayed on the same random orders as ``replay_choices``: every
    configuration of an order is screened (the first ``screen_epochs`` epochs of its ``screen``
    curve, all of them if None, valued by their best; an epoch costs ``screen_cost`` of a full
    one), the ``promote`` best screened (ties: the earlier) are trained in full (their
    ``curves``), and the choice is the best of those. One row, the whole search: the median
    compute (every screen and the promoted full trainings, a share of the unpruned order's), and
    the choice's worth against the unpruned whole order's choice's, as ``replay_choices``."""
    from search_efficiency import random_orders

    rows, used, deltas, worths, refs = [], [], [], [], []
    for pick in random_orders(len(curves), trials, orders, seed, ids):
        full = [harness.best_of_curve(curves[i]) for i in pick]
        ref = worth[unpruned_choice(curves, pick)]
        screened = [harness.best_of_curve(screen[i][:screen_epochs]) for i in pick]
        top = sorted(range(len(pick)), key=lambda j: (-screened[j], j))[:promote]
        chosen = max(top, key=lambda j: (full[j], -j))
        spent = (screen_cost * sum(len(screen[i][:screen_epochs]) for i in pick)
                 + sum(len(curves[pick[j]]) for j in top))
        used.append(spent / sum(len(curves[i]) for i in pick))
        worths.append(worth[pick[chosen]])
        deltas.append(worths[-1] - ref)
        refs.append(ref)
    epochs = "" if screen_epochs is None else f" for {screen_epochs} epochs"
    rows.append({"setting": f"two-stage: screen{epochs}, best {promote} in full",
                 "budget": WHOLE, "share": statistics.median(used),
                 "delta": statistics.mean(deltas), "worth": statistics.mean(worths),
                 "within": sum(d >= -epsilon for d in deltas), "empty": 0,
                 "orders": len(deltas), "reference": statistics.mean(refs)})
    return rows


def pooled_runs(paths: list[str]) -> dict[str, Any]:
    """``fidelity_ranking.py`` runs as one pool of configurations (their fidelities those that
    every run trained; an epoch's cost then a median over all their runs)."""
    configs: list[Any] = []
    runs: list[dict[str, Any]] = []
    fidelities: list[str] | None = None
    for path in paths:
        saved = json.loads(Path(path).read_text())
        if saved.get("benchmark") != "fidelity_ranking":
            raise SystemExit(f"{path}: not a fidelity_ranking.py output (--replay reads the "
                             "curves of one configuration at two training seeds)")
        results = saved["results"]
        runs += [{**r, "config": r["config"] + len(configs)} for r in results["runs"]]
        configs += results["configs"]
        fidelities = [f for f in (fidelities or results["fidelities"])
                      if f in results["fidelities"]]
    return {"configs": configs, "runs": [r for r in runs if r["fidelity"] in fidelities],
            "fidelities": fidelities}


def print_replay(args: argparse.Namespace) -> None:
    from fidelity_ranking import FULL, _median_epoch_s, curves_of
    from search_efficiency import METRIC, replay_settings

    results = pooled_runs(args.replay)
    curves = curves_of(results, FULL, 0, METRIC)
    worth = [harness.best_of_curve(c) for c in curves_of(results, FULL, 1, METRIC)]
    screen, cost = None, 1.0
    if args.screen:
        if args.screen == FULL or args.screen not in results["fidelities"]:
            raise SystemExit(f"--screen: {' '.join(args.replay)} has no low fidelity "
                             f"{args.screen!r} (it has "
                             f"{', '.join(results['fidelities'][1:]) or 'none'})")
        screen = curves_of(results, args.screen, 0, METRIC)
        cost = _median_epoch_s(results, args.screen) / _median_epoch_s(results, FULL)
    settings = replay_settings(min(map(len, screen or curves)))
    unknown = sorted(set(args.setting or []) - set(settings))
    if unknown:
        raise SystemExit(f"--setting: no replayed setting {unknown[0]!r} (see the table without "
                         "--setting for the names)")
    if args.setting:
        settings = {k: v for k, v in settings.items() if k in args.setting or k == "none"}
    rows = replay_choices(curves, worth, settings, args.trials, args.orders, args.budgets,
                          args.epsilon, screen=screen, screen_cost=cost)
    ci = (bootstrap_choices(curves, worth, settings, args.trials, args.orders, args.budgets,
                            args.epsilon, args.bootstrap, screen=screen, screen_cost=cost)
          if args.bootstrap else {})
    for k in args.promote:
        def two_stage(pool: list[int], seed: int, k: int = k) -> list[dict[str, Any]]:
            return two_stage_choices(
                [curves[i] for i in pool], [worth[i] for i in pool], [screen[i] for i in pool],
                args.trials, args.orders, k, args.epsilon, args.screen_epochs, cost, seed,
                ids=pool)
        rows += two_stage_choices(curves, worth, screen, args.trials, args.orders, k,
                                  args.epsilon, args.screen_epochs, cost)
        if args.bootstrap:
            ci.update(bootstrap_rows(two_stage, len(curves), args.bootstrap))
    for r in rows:
        low, high = ci.get((r["setting"], r["budget"]), (math.nan, math.nan))
        r["delta_ci"] = "-" if low != low else f"[{low:+.3f}, {high:+.3f}]"
    ref = rows[0]["reference"]
    order = [WHOLE, *(f"{100 * b:.0f} %" for b in args.budgets)]
    rows.sort(key=lambda r: (order.index(r["budget"]),
                             -r["delta"] if r["delta"] == r["delta"] else math.inf))
    harness.print_table(
        f"Replayed pruner settings' choices ({args.orders} random orders of {args.trials} of the "
        f"{len(curves)} configurations in {' and '.join(args.replay)}; pruners and choices "
        "on training seed 0's curves"
        + (f" at {args.screen} (an epoch {100 * cost:.0f} % of a full one)" if screen else "")
        + f", worth = best {METRIC} at seed 1 in full), against the unpruned whole order's "
        "full-fidelity choice",
        ["setting", "budget", "compute (of unpruned whole, median)", "mean Δ worth",
         *([f"95 % interval ({args.bootstrap} resampled pools)"] if args.bootstrap else []),
         f"orders within ε = {args.epsilon}", "orders with no choice"],
        [[r["setting"], r["budget"], f"{100 * r['share']:.0f} %", f"{r['delta']:+.3f}",
          *([r["delta_ci"]] if args.bootstrap else []), f"{r['within']}/{r['orders']}",
          f"{r['empty']}/{r['orders']}"] for r in rows])
    print(f"The unpruned whole order's choice is worth {ref:.3f} at seed 1 (mean "
          f"over orders); a configuration at random {statistics.mean(worth):.3f}, the best of "
          f"all {max(worth):.3f}.")


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs on different search seeds as one (their choices pooled); they must share the
    training seeds and ε, and no search seed may appear twice."""
    first = parts[0]
    seeds = [(c["method"], c["seed"], c["budget"]) for p in parts for c in p["choices"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit("--from-json: a search seed appears in more than one run")
    if any(p["train_seeds"] != first["train_seeds"] or p["epsilon"] != first["epsilon"]
           for p in parts):
        raise SystemExit("--from-json: the runs differ in --train-seeds or --epsilon")
    return {**first, "choices": [c for p in parts for c in p["choices"]],
            "wall_s": sum(p["wall_s"] for p in parts)}


def print_tables(results: dict[str, Any]) -> None:
    eps = results["epsilon"]
    n_seeds = len(results["train_seeds"])
    rows = comparisons(results)

    def interval(p) -> str:
        return "-" if p.sd != p.sd else f"{p.mean:+.3f} [{p.ci_low:+.3f}, {p.ci_high:+.3f}]"

    harness.print_table(
        f"Each search's choice, retrained at training seeds {results['train_seeds']} "
        f"(objective: best student/val_acc), paired with the unpruned whole search's choice "
        f"of the same search seed ({n_seeds} training seeds × search seeds)",
        ["method", "budget", "compute (of unpruned whole, median)", "chosen trials (per seed)",
         "recorded value (per seed)", "fresh objective", "Δ objective, all pairs",
         "Δ objective, per search", "fresh test acc", "Δ test acc, all pairs",
         f"non-inferior within ε = {eps} (per search)"],
        [[r["method"], r["budget"], f"{100 * r['share']:.0f} %", r["trials"],
          " ".join("-" if v is None else f"{v:.3f}" for v in r["recorded"]),
          f"{r['objective']:.3f}", interval(r["objective_diff"]),
          interval(r["objective_by_search"]), f"{r['test']:.3f}", interval(r["test_diff"]),
          "yes" if r["non_inferior"] else "no"] for r in rows])
    print(f"wall: {results['wall_s']:.0f} s")


def main() -> None:
    args = parse_args()
    if args.replay:
        print_replay(args)
        return
    if args.from_json:
        print_tables(merged([json.loads(Path(p).read_text())["results"] for p in args.from_json]))
        return
    results = run(args)
    print_tables(results)
    harness.write_json(args.json, "pruned_choice", args, results)


if __name__ == "__main__":
    main()
