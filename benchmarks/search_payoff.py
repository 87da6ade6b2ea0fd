"""Does the search pay off? The configuration a search chooses against the experiment's own
starting configuration, both trained the way ``sakdn train --from-best`` trains and tested once.

For each search seed (and each ``--folds`` setting) the main job's search runs as a user runs
it (``experiments/synthetic_search.yaml`` and its space, ``run_search``); its best completed
trial's configuration (``best_of``, what ``train --from-best`` reads) is then trained on the
training + validation subjects and tested once (``train(..., final=True)``) for every training
seed. The starting configuration is the experiment file's own values without the search space
(same epochs, segments and sizes), trained the same way on the same training seeds. Nothing is
selected on the test split: the search sees validation only, the table reads test only.

Per search it prints:

- the chosen trial, how it was drawn (given, random start-up or guided by the sampler) and its
  validation estimate (the search's best value: one split's best epoch with ``--folds 1``, the
  mean over folds otherwise), beside the start point's (trial 0, never pruned);
- test accuracy of chosen and starting configurations (mean over training seeds) and the paired
  difference chosen − starting (same training seed: same data order, same initial student) with
  its 95 % t interval and Wilcoxon p (``sakdn.stats.paired``);
- the **selection optimism**: validation estimate − test accuracy of the chosen configuration.
  The maximum over many noisy trials overstates the winner; cross-validated trials should
  overstate it less. Part of the gap is not selection at all: the final model trains on more
  subjects and is tested on others. The start point is not selected, so its own gap (its
  validation value − its test accuracy) measures that part; the **excess** is the chosen
  configuration's gap beyond it (``excess_optimism``).

    python benchmarks/search_payoff.py                           # 3 searches × folds 1 and 3
    python benchmarks/search_payoff.py --folds 1 --search-seeds 0  # one search: a quick look
    python benchmarks/search_payoff.py --quick                   # tiny data, 3 tiny trials
    python benchmarks/search_payoff.py --tables a.json b.json    # earlier runs' tables together
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
QUICK_SPACE = "student.lr: {loguniform: [1.0e-4, 1.0e-2]}\n"


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n\n")[0], "search_payoff")
    p.add_argument("--experiment", default=str(EXPERIMENT))
    p.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--folds", type=int, nargs="+", default=[1, 3],
                   help="search.folds settings to compare (1: one validation split)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more overrides for the searches and the trainings")
    p.add_argument("--tables", nargs="+", metavar="JSON",
                   help="print the tables of earlier runs' --json files together (trains nothing)")
    return p.parse_args()


def shared_overrides(args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    keys: dict[str, Any] = {"search.storage_path": storage, "train.num_threads": args.threads,
                            "search.log_models": "false"}
    if args.quick:
        keys.update({**harness.quick_sizes(), "data.root": harness.tiny(args.workdir),
                     "teacher.epochs": 1, "student.epochs": 3, "search.num_samples": 3,
                     "search.pruner": "none", "search.pruner_options": "{}"})
    for item in args.set:
        key, _, value = item.partition("=")
        keys[key.strip()] = value
    return keys


def search_overrides(folds: int, seed: int) -> dict[str, Any]:
    keys: dict[str, Any] = {"search.name": f"payoff_f{folds}_s{seed}", "search.seed": seed,
                            "search.folds": folds}
    if folds > 1:  # epoch-based pruners do not apply across folds; with k folds the pruner
        # can stop a trial before its last fold only above p = 2^-(k-1) (docs/experiments.md)
        threshold = min(0.5, 1.2 * 2.0 ** -(folds - 1))
        keys.update({"search.pruner": "wilcoxon",
                     "search.pruner_options": f"{{p_threshold: {threshold:g}}}"})
    return keys


def test_accuracy(config, workdir: Path, store: Path) -> float:
    """Train as ``train --from-best`` does (train + validation subjects, fixed epochs) and
    test once."""
    from sakdn.train import train

    result = train(config, workdir=workdir, teacher_store=store, final=True,
                   log=lambda m: None)
    return float(result.metrics["student/test_acc"])


def trained(config, seeds: list[int], workdir: Path, store: Path, workers: int) -> list[float]:
    """Test accuracy per training seed, ``workers`` trainings at once (a process each, as two
    trials share the machine in the search)."""
    configs = [config.replace({"train.seed": s, "train.progress": False}) for s in seeds]
    dirs = [workdir / f"seed{s}" for s in seeds]
    if workers <= 1:
        return [test_accuracy(c, d, store) for c, d in zip(configs, dirs)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(test_accuracy, configs, dirs, [store] * len(seeds)))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from sakdn import stats
    from sakdn.config import from_flat, load_config, parse_overrides
    from sakdn.search.final import best_of

    storage = harness.fresh_dir(Path(args.workdir) / "searches")
    store = Path(args.workdir) / "final_teachers"
    space_file = None
    if args.quick:
        space_file = Path(args.workdir) / "quick_space.yaml"
        space_file.write_text(QUICK_SPACE)
    # the main job as users run it: trial 0 is its start point (never pruned)
    experiment, space = harness.snapshot(args.workdir, args.experiment, space_file,
                                         start_point=True)
    shared = {**space, **shared_overrides(args, storage)}
    training = {k: v for k, v in shared.items() if not k.startswith("search.")}
    start = load_config(experiment, parse_overrides([f"{k}={v}" for k, v in training.items()]))
    print(f"starting configuration: {args.experiment} without its space; training seeds "
          f"{args.train_seeds}", flush=True)
    baseline = trained(start, args.train_seeds, Path(args.workdir) / "start", store, args.cpus)
    harness.warm_up(experiment, shared)
    harness.start_ray(args.cpus)
    rows = []
    try:
        for folds in args.folds:
            for seed in args.search_seeds:
                keys = {**shared, **search_overrides(folds, seed)}
                result, wall = harness.run_search(experiment, keys,
                                                  storage / f"{keys['search.name']}.log")
                best = best_of(result.name, tracking_uri=result.tracking_uri)
                chosen_config = from_flat(best["config"], file="best configuration")
                chosen = trained(chosen_config, args.train_seeds,
                                 Path(args.workdir) / result.name, store, args.cpus)
                cmp = stats.paired(chosen, baseline)
                rows.append({
                    "folds": folds, "search_seed": seed, "trial": best["trial"],
                    "origin": result.best_origin, "val_start": result.reference_value,
                    "trials": sum(result.counts.values()), "complete": result.counts.get(
                        "COMPLETE", 0),
                    "search_s": wall, "val_estimate": best["value"],
                    "test_chosen": statistics.fmean(chosen), "test_start": statistics.fmean(
                        baseline), "diff": cmp.mean, "ci_low": cmp.ci_low,
                    "ci_high": cmp.ci_high, "p": cmp.p_wilcoxon, "wins": cmp.wins,
                    "n": cmp.n, "chosen": chosen, "start": baseline,
                    "optimism": best["value"] - statistics.fmean(chosen),
                })
                r = rows[-1]
                print(f"{time.strftime('%H:%M:%S')} folds {folds} search seed {seed}: trial "
                      f"{r['trial']}, val {r['val_estimate']:.3f}, test {r['test_chosen']:.3f} "
                      f"vs {r['test_start']:.3f}, {wall:.0f} s", flush=True)
    finally:
        harness.stop_ray()
    return rows


def excess_optimism(row: dict[str, Any]) -> float | None:
    """The chosen configuration's optimism beyond the start point's own validation − test gap:

        (val_chosen − test_chosen) − (val_start − test_start)

    The start point was fixed before the search, so its gap is what the larger final training
    set and the other split do alone; what is left is the selection's. None without the start
    point's validation value."""
    if row.get("val_start") is None:
        return None
    return row["optimism"] - (row["val_start"] - row["test_start"])


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def _pm(low: float, high: float) -> str:
    return "—" if math.isnan(low) else f"[{low:+.3f}, {high:+.3f}]"


def print_tables(rows: list[dict[str, Any]]) -> None:
    harness.print_table(
        "Chosen vs starting configuration, trained as train --from-best, tested once",
        ["folds", "search seed", "complete / trials", "best trial", "val estimate",
         "val start", "test chosen", "test start", "chosen − start", "95 % CI", "Wilcoxon p",
         "wins", "optimism", "excess"],
        [[r["folds"], r["search_seed"], f"{r['complete']}/{r['trials']}",
          f"{r['trial']} ({r['origin'] or '?'})", f"{r['val_estimate']:.3f}",
          "—" if r["val_start"] is None else f"{r['val_start']:.3f}",
          f"{r['test_chosen']:.3f}", f"{r['test_start']:.3f}", f"{r['diff']:+.3f}",
          _pm(r["ci_low"], r["ci_high"]), f"{r['p']:.3f}", f"{r['wins']}/{r['n']}",
          f"{r['optimism']:+.3f}", _signed(excess_optimism(r))] for r in rows],
    )
    from sakdn import stats

    summary = []
    for folds in sorted({r["folds"] for r in rows}):
        mine = [r for r in rows if r["folds"] == folds]
        # per training seed, the mean over searches: the starting runs are shared by every
        # search, so the pairs are the training seeds
        chosen = [statistics.fmean(v) for v in zip(*(r["chosen"] for r in mine))]
        cmp = stats.paired(chosen, mine[0]["start"])
        optimism = statistics.fmean(r["optimism"] for r in mine)
        excess = [x for x in map(excess_optimism, mine) if x is not None]
        summary.append([folds, len(mine), f"{cmp.mean:+.3f}", _pm(cmp.ci_low, cmp.ci_high),
                        f"{cmp.wins}/{cmp.n}", f"{optimism:+.3f}",
                        _signed(statistics.fmean(excess) if excess else None)])
    harness.print_table(
        "Over all searches (pairs: training seeds; chosen = mean over searches)",
        ["folds", "searches", "chosen − start", "95 % CI", "wins", "mean optimism",
         "mean excess"], summary)


def from_json(paths: list[str]) -> list[dict[str, Any]]:
    """Rows of earlier runs. A row written before the table had its origin and start-point
    columns gets them from its search's Optuna study (kept under the run's workdir)."""
    import json

    import optuna

    from sakdn.names import StudyAttr

    rows = []
    for path in paths:
        payload = json.loads(Path(path).read_text())
        storage = f"sqlite:///{Path(payload['args']['workdir']) / 'searches' / 'optuna.db'}"
        for r in payload["results"]:
            if "origin" not in r:
                study = optuna.load_study(study_name=f"payoff_f{r['folds']}_s{r['search_seed']}",
                                          storage=storage)
                trials = study.get_trials(deepcopy=False)
                r["origin"] = trials[r["trial"]].user_attrs.get(StudyAttr.ORIGIN, "")
                r["val_start"] = next((t.value for t in trials
                                       if t.user_attrs.get(StudyAttr.REFERENCE)), None)
                r["trials"] = len(trials)
                r["complete"] = sum(t.state.name == "COMPLETE" for t in trials)
            rows.append(r)
    return rows


def main() -> None:
    args = parse_args()
    if args.tables:
        print_tables(from_json(args.tables))
        return
    harness.set_threads(args.threads)
    rows = run(args)
    print_tables(rows)
    harness.write_json(args.json, "search_payoff", args, rows)


if __name__ == "__main__":
    main()
