"""Teacher reuse: wall time of a distillation-only search with the teacher store vs without.

Pairs of searches built by the project's ``run_search`` from ``experiments/synthetic_search.yaml``
with the space ``search_spaces/distill_only.yaml`` (student and distillation keys only, so every
trial's teacher stage is the same) on a small synthetic dataset, the same seed and trials:

- ``store``: the default, ``<search>/teacher_store``: the first trial trains the teachers, the
  others load them (and replay their curves);
- ``no store``: ``search.teacher_store: none``: every trial trains its own teachers.

The sampler is Optuna's seeded random sampler, so both searches run the same configurations;
``same results`` counts those whose best validation accuracy agrees (it should not depend on
where a trial's teachers came from). Each search has its own storage (MLflow and Optuna
databases); the data cache is built and the search modules imported before any search is timed;
the pairs' order alternates and medians over ``--repetitions`` are compared. Per-trial seconds
come from Tune's ``result.json``; the teacher stage's seconds are estimated from its epochs'
``time_this_iter_s``. Target (issue 8): ≥ 40 % less wall time with the store.

    python benchmarks/teacher_reuse.py                       # 2 × 2 searches of 6 trials
    python benchmarks/teacher_reuse.py --trials 10 --teacher-epochs 12 --repetitions 1
    python benchmarks/teacher_reuse.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import harness

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
SPACE = harness.REPO / "search_spaces" / "distill_only.yaml"
TARGET_SAVING = 0.40  # issue 8: ≥ 40 % less wall time with the teacher store


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "teacher_reuse")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--teacher-epochs", type=int, default=8, help="the experiment's value")
    p.add_argument("--student-epochs", type=int, default=15, help="the experiment's value")
    p.add_argument("--concurrency", type=int, default=1, help="trials at a time")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repetitions", type=int, default=2,
                   help="pairs of searches (the order alternates; medians are compared)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    if args.quick:
        args.trials, args.teacher_epochs, args.student_epochs, args.repetitions = 2, 2, 1, 1
    return args


def overrides(args: argparse.Namespace, storage: Path,
              space: dict[str, str]) -> dict[str, Any]:
    if args.quick:
        root = harness.synthetic(args.workdir, classes=3, subjects=4, repetitions=2,
                                 frame_size=32, duration=1.0)
    else:  # the search_efficiency dataset: 48 training and 16 validation clips, 32 px
        root = harness.synthetic(args.workdir, classes=4, subjects=8, repetitions=4,
                                 frame_size=32, duration=1.5)
    keys: dict[str, Any] = {
        "data.root": root, "data.frame_size": 32,
        "teacher.epochs": args.teacher_epochs, "student.epochs": args.student_epochs,
        "train.num_threads": args.threads,
        **space, "search.num_samples": args.trials,
        "search.max_concurrent_trials": args.concurrency, "search.seed": args.seed,
        # seeded random sampling: both searches run the same configurations, whatever the
        # trials' results (TPE would follow them, and results may differ, see the module doc)
        "search.sampler": "random", "search.sampler_options": "{}",
        "search.storage_path": storage, "search.time_budget_s": 0, "search.log_models": "false",
        # every trial runs to the end in both searches (pruning would mix in another effect)
        "search.pruner": "none", "search.pruner_options": "{}", "search.scheduler": "fifo",
    }
    if args.quick:
        keys.update({"gaf.image_size": 16, "student.width": 4, "teacher.width": 4,
                     "teacher.batch_size": 4})
    for item in args.set:
        key, _, value = item.partition("=")
        keys[key.strip()] = value
    return keys


def teacher_seconds(results: list[dict[str, Any]]) -> float:
    """A trial's teacher-stage seconds: its teacher epochs × their median epoch time.

    The first report's ``time_this_iter_s`` also holds the trial's start-up, so the first
    epoch is counted at the median of the others; replayed epochs (a store hit) take ~0 s.
    """
    times = [r.get("time_this_iter_s", 0.0) for r in results if r.get("stage") == "teacher"]
    if len(times) < 2:
        return float("nan")
    return harness.median(times[1:]) * len(times)


def measure(name: str, result: Any, wall: float) -> dict[str, Any]:
    trials = harness.tune_trials(result.path)
    teacher_s = sum(teacher_seconds(t["results"]) for t in trials)
    trial_s = sum(t["results"][-1].get("time_total_s", 0.0) for t in trials if t["results"])
    trained = (result.teacher_lookups - result.teacher_hits) if result.teacher_lookups else len(
        trials)
    return {
        "search": name, "wall_s": wall, "trials": len(trials), "trial_seconds": trial_s,
        "teacher_stage_seconds": teacher_s, "teacher_sets_trained": trained,
        "store_hits": result.teacher_hits, "store_lookups": result.teacher_lookups,
        "configs": [t["config"] for t in trials],
        "results": [t["results"][-1].get("student/best_val_acc") for t in trials],
        "best_value": result.best_value,
    }


VARIANTS = {"store": {}, "no store": {"search.teacher_store": "none"}}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--repetitions`` pairs of searches, the order alternating, each with its own storage."""
    storage = harness.fresh_dir(Path(args.workdir) / "searches")
    experiment, space = harness.snapshot(args.workdir, EXPERIMENT, SPACE)
    keys = overrides(args, storage, space)
    harness.warm_up(experiment, keys)
    ray_s = harness.start_ray(args.cpus)
    print(f"local Ray started in {ray_s:.1f} s; searches log to {storage}/*.log", flush=True)
    rows = []
    try:
        for rep in range(args.repetitions):
            names = list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]
            for name in names:
                search = f"{name.replace(' ', '_')}_r{rep}"
                own = {**keys, **VARIANTS[name], "search.name": search,
                       "search.storage_path": storage / search}  # own MLflow, Optuna stores
                result, wall = harness.run_search(experiment, own, storage / f"{search}.log")
                rows.append({**measure(name, result, wall), "repetition": rep})
                print(f"{name} (repetition {rep}): {wall:.0f} s", flush=True)
    finally:
        harness.stop_ray()
    return rows


def main() -> None:
    args = parse_args()
    rows = run(args)
    med = {name: {k: harness.median([r[k] for r in rows if r["search"] == name])
                  for k in ("wall_s", "trial_seconds", "teacher_stage_seconds")}
           for name in VARIANTS}
    first = {r["search"]: r for r in rows if r["repetition"] == 0}
    pairs = list(zip(first["store"]["configs"], first["no store"]["configs"],
                     first["store"]["results"], first["no store"]["results"]))
    same_configs = sum(a == b for a, b, _, _ in pairs)
    same_results = sum(a == b and x == y for a, b, x, y in pairs)
    with_store, without = med["store"], med["no store"]
    saving = 1 - with_store["wall_s"] / without["wall_s"]
    trial_saving = 1 - with_store["trial_seconds"] / without["trial_seconds"]
    share = without["teacher_stage_seconds"] / without["trial_seconds"]
    expected = (without["teacher_stage_seconds"] - with_store["teacher_stage_seconds"]) / (
        without["trial_seconds"])
    harness.print_table(
        f"Distillation-only search, {args.trials} trials ({args.teacher_epochs} teacher + "
        f"{args.student_epochs} student epochs each), {args.concurrency} at a time",
        ["teacher store", "repetition", "search wall s", "Σ trial s", "Σ teacher-stage s",
         "teacher sets trained", "store hits / lookups", "best val acc"],
        [[r["search"], r["repetition"], r["wall_s"], r["trial_seconds"],
          r["teacher_stage_seconds"], r["teacher_sets_trained"],
          f"{r['store_hits']} / {r['store_lookups']}", r["best_value"]] for r in rows],
    )
    verdicts = [
        ["search wall time saved by the store (medians)", f"{100 * saving:.1f} %"],
        ["trial time saved by the store (medians)", f"{100 * trial_saving:.1f} %"],
        ["teacher-stage time saved / trial time without the store", f"{100 * expected:.1f} %"],
        ["teacher stage's share of a trial without the store", f"{100 * share:.1f} %"],
        ["trials with the same config in both searches", f"{same_configs} / {len(pairs)}"],
        ["  of them with the same best val acc", f"{same_results} / {same_configs}"],
        ["target ≥ 40 % less wall time", "met" if saving >= TARGET_SAVING else "not met"],
    ]
    harness.print_table("Saving", ["", "value"], verdicts)
    harness.write_json(args.json, "teacher_reuse", args, {
        "searches": rows, "medians": med, "same_configs": same_configs,
        "same_results": same_results, "wall_saving": saving, "trial_saving": trial_saving,
        "teacher_stage_saving": expected, "teacher_share_without_store": share,
        "target_met": saving >= TARGET_SAVING})


if __name__ == "__main__":
    main()
