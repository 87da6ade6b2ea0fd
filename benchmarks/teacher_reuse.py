"""Teacher reuse: wall time of a distillation-only search with the teacher store vs without.

Searches built by the project's ``run_search`` from ``experiments/synthetic_search.yaml`` with
the space ``search_spaces/distill_only.yaml`` (student and distillation keys only, so every
trial's teacher stage is the same) on a small synthetic dataset, the same seed and trials, in
three variants:

- ``no store``: ``search.teacher_store: none``: every trial trains its own teachers and runs
  them on every student batch;
- ``store, teachers``: the store with ``train.cache_teacher_outputs: false``: the first trial
  trains the teachers, the others load them (and replay their curves), every trial still runs
  the frozen teachers on its student batches;
- ``store + outputs``: the default: the stored teacher set also keeps the teachers' outputs on
  each student batch (logits, fc2 features, ablated-pass logits, stage-map channel sums), so a
  trial whose batches were computed before runs no teacher at all.

Two configurations (``--config``):

- ``synthetic``: the main search's experiment as it is (8 teacher + 15 student epochs, 32² GAF
  images): a cheap teacher (its forward pass costs half the student's per sample);
- ``paper-ratio``: the paper's proportions: as many teacher as student epochs (UTD-MHAD: 100 and
  100) and a teacher forward pass twice the student's per sample (64² GAF images: 2.0×; the
  paper's two VGG16-BN teachers on 224² GAF images against BN-Inception on 8 segments of 224²
  frames: 2 × 15.5 / (8 × 2.0) ≈ 1.9×). ``--set`` changes either further.

The sampler is Optuna's seeded random sampler, so all variants run the same configurations;
``same results`` counts those whose best validation accuracy agrees across all of them (it must
not depend on where a trial's teachers or their outputs came from). Each search has its own
storage (MLflow and Optuna databases); the data cache is built and the search modules imported
before any search is timed; the variants' order rotates per repetition and medians over
``--repetitions`` are compared. Per-trial seconds come from Tune's ``result.json``; each stage's
seconds are its epochs × its median epoch time (the first report also holds the trial's
start-up, the last the run's summary). Target (issue 8): ≥ 40 % less wall time with the store.

    python benchmarks/teacher_reuse.py                               # synthetic, 2 × 3 searches
    python benchmarks/teacher_reuse.py --config paper-ratio
    python benchmarks/teacher_reuse.py --config paper-ratio --drop student.batch_size
    python benchmarks/teacher_reuse.py --trials 10 --set teacher.epochs=12 --repetitions 1
    python benchmarks/teacher_reuse.py --quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import harness

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
SPACE = harness.REPO / "search_spaces" / "distill_only.yaml"
QUICK_SPACE = harness.REPO / "search_spaces" / "smoke.yaml"  # one batch size: outputs shared
TARGET_SAVING = 0.40  # issue 8: ≥ 40 % less wall time with the teacher store
VARIANTS = {
    "no store": {"search.teacher_store": "none"},
    "store, teachers": {"train.cache_teacher_outputs": "false"},
    "store + outputs": {"train.cache_teacher_outputs": "true"},
}
BASE = "no store"
# configuration → (config keys, teacher epochs: None = the experiment's / --teacher-epochs)
CONFIGS: dict[str, dict[str, Any]] = {
    "synthetic": {},
    "paper-ratio": {"gaf.image_size": 64},  # teacher epochs = student epochs, set below
}


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "teacher_reuse")
    p.add_argument("--config", choices=sorted(CONFIGS), default="synthetic")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--teacher-epochs", type=int, default=None,
                   help="default: the experiment's 8 (synthetic), the student's (paper-ratio)")
    p.add_argument("--student-epochs", type=int, default=15, help="the experiment's value")
    p.add_argument("--concurrency", type=int, default=1, help="trials at a time")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repetitions", type=int, default=2,
                   help="rounds of the three searches (the order rotates; medians are compared)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--drop", nargs="+", default=[], metavar="KEY",
                   help="leave these keys out of the space (they keep the experiment's value), "
                        "e.g. student.batch_size: every trial then has the same batches")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    if args.teacher_epochs is None:
        args.teacher_epochs = args.student_epochs if args.config == "paper-ratio" else 8
    if args.quick:
        args.trials, args.teacher_epochs, args.student_epochs, args.repetitions = 2, 2, 1, 1
    if BASE not in args.variants:
        args.variants = [BASE, *args.variants]
    return args


def overrides(args: argparse.Namespace, storage: Path,
              space: dict[str, str]) -> dict[str, Any]:
    if args.quick:
        root = harness.tiny(args.workdir)
    else:  # the search_efficiency dataset: 48 training and 16 validation clips, 32 px
        root = harness.synthetic(args.workdir, classes=4, subjects=8, repetitions=4,
                                 frame_size=32, duration=1.5)
    keys: dict[str, Any] = {
        "data.root": root, "data.frame_size": 32,
        "teacher.epochs": args.teacher_epochs, "student.epochs": args.student_epochs,
        "train.num_threads": args.threads, **CONFIGS[args.config],
        **space, "search.num_samples": args.trials,
        "search.max_concurrent_trials": args.concurrency, "search.seed": args.seed,
        # seeded random sampling: every search runs the same configurations, whatever the
        # trials' results (TPE would follow them)
        "search.sampler": "random", "search.sampler_options": "{}",
        "search.storage_path": storage, "search.time_budget_s": 0, "search.log_models": "false",
        # every trial runs to the end in every search (pruning would mix in another effect)
        "search.pruner": "none", "search.pruner_options": "{}", "search.scheduler": "fifo",
    }
    if args.quick:
        keys.update(harness.quick_sizes())
    for item in args.set:
        key, _, value = item.partition("=")
        keys[key.strip()] = value
    return keys


def drop_keys(space_file: Path, keys: list[str]) -> None:
    """Remove ``keys`` from a copied space file (and every condition that names them)."""
    import yaml

    space = yaml.safe_load(space_file.read_text())
    missing = [k for k in keys if k not in space]
    if missing:
        raise SystemExit(f"--drop: {missing} not in {space_file}")
    kept = {}
    for key, spec in space.items():
        if key in keys or any(k in (spec.get("when") or {}) for k in keys):
            continue
        kept[key] = spec
    space_file.write_text(yaml.safe_dump(kept, sort_keys=False))


def stage_seconds(results: list[dict[str, Any]], stage: str) -> float:
    """A trial's seconds in one stage: its epochs × their median epoch time.

    The trial's first report (``time_this_iter_s``) also holds the trial's start-up and its last
    one the run's summary (evaluation, model files, figures), so neither enters the median;
    replayed teacher epochs (a store hit) take ~0 s.
    """
    inner = results[1:-1]
    times = [r.get("time_this_iter_s", 0.0) for r in inner if r.get("stage") == stage]
    count = sum(1 for r in results if r.get("stage") == stage)
    return harness.median(times) * count if times else float("nan")


def output_events(store: Path) -> tuple[int, int]:
    """(student batches read from stored teacher outputs, batches computed) over a search."""
    hits = misses = 0
    for path in store.glob("*/outputs/events.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                hits, misses = hits + event["hits"], misses + event["misses"]
    return hits, misses


def measure(name: str, result: Any, wall: float) -> dict[str, Any]:
    trials = harness.tune_trials(result.path)
    teacher_s = sum(stage_seconds(t["results"], "teacher") for t in trials)
    student_s = sum(stage_seconds(t["results"], "student") for t in trials)
    trial_s = sum(t["results"][-1].get("time_total_s", 0.0) for t in trials if t["results"])
    trained = (result.teacher_lookups - result.teacher_hits) if result.teacher_lookups else len(
        trials)
    hits, misses = output_events(Path(result.path) / "teacher_store")
    return {
        "search": name, "wall_s": wall, "trials": len(trials), "trial_seconds": trial_s,
        "teacher_stage_seconds": teacher_s, "student_stage_seconds": student_s,
        "teacher_sets_trained": trained, "store_hits": result.teacher_hits,
        "store_lookups": result.teacher_lookups, "output_hits": hits, "output_misses": misses,
        "configs": [t["config"] for t in trials],
        "results": [t["results"][-1].get("student/best_val_acc") for t in trials],
        "best_value": result.best_value,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--repetitions`` rounds of the variants, the order rotating, each with its storage."""
    storage = harness.fresh_dir(Path(args.workdir) / "searches")
    experiment, space = harness.snapshot(args.workdir, EXPERIMENT,
                                         QUICK_SPACE if args.quick else SPACE)
    if args.drop:
        drop_keys(Path(space["search.space"]), args.drop)
    keys = overrides(args, storage, space)
    harness.warm_up(experiment, keys)
    ray_s = harness.start_ray(args.cpus)
    print(f"local Ray started in {ray_s:.1f} s; searches log to {storage}/*.log", flush=True)
    rows = []
    try:
        for rep in range(args.repetitions):
            shift = rep % len(args.variants)
            for name in args.variants[shift:] + args.variants[:shift]:
                search = f"{name.replace(' ', '_').replace(',', '').replace('+', 'and')}_r{rep}"
                own = {**keys, **VARIANTS[name], "search.name": search,
                       "search.storage_path": storage / search}  # own MLflow, Optuna stores
                result, wall = harness.run_search(experiment, own, storage / f"{search}.log")
                rows.append({**measure(name, result, wall), "repetition": rep})
                print(f"{name} (repetition {rep}): {wall:.0f} s", flush=True)
    finally:
        harness.stop_ray()
    return rows


def savings(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, dict[str, float]]:
    """Per variant: medians over repetitions and the fractions saved against ``no store``."""
    keys = ("wall_s", "trial_seconds", "teacher_stage_seconds", "student_stage_seconds")
    med = {name: {k: harness.median([r[k] for r in rows if r["search"] == name]) for k in keys}
           for name in variants}
    base = med[BASE]
    for name in variants:
        m = med[name]
        m["wall_saving"] = 1 - m["wall_s"] / base["wall_s"]
        m["trial_saving"] = 1 - m["trial_seconds"] / base["trial_seconds"]
        m["teacher_stage_saving"] = 1 - m["teacher_stage_seconds"] / base["teacher_stage_seconds"]
        m["student_stage_saving"] = 1 - m["student_stage_seconds"] / base["student_stage_seconds"]
    return med


def agreement(rows: list[dict[str, Any]], variants: list[str]) -> tuple[int, int, int]:
    """(trials, of them with the same config in every variant, of those with the same result)
    in the first repetition."""
    first = {r["search"]: r for r in rows if r["repetition"] == 0}
    searches = [first[v] for v in variants if v in first]
    n = min(len(s["configs"]) for s in searches)
    same_config = [i for i in range(n) if all(s["configs"][i] == searches[0]["configs"][i]
                                              for s in searches)]
    same_result = [i for i in same_config if all(s["results"][i] == searches[0]["results"][i]
                                                 for s in searches)]
    return n, len(same_config), len(same_result)


def main() -> None:
    from sakdn.data.synthetic import VERSION

    args = parse_args()
    rows = run(args)
    med = savings(rows, args.variants)
    n, same_configs, same_results = agreement(rows, args.variants)
    base = med[BASE]
    harness.print_table(
        f"Distillation-only search ({args.config}"
        + (f", without {', '.join(args.drop)} in the space" if args.drop else "")
        + f", synthetic generator v{VERSION}), "
        f"{args.trials} trials ({args.teacher_epochs} "
        f"teacher + {args.student_epochs} student epochs each), {args.concurrency} at a time",
        ["variant", "repetition", "search wall s", "Σ trial s", "Σ teacher-stage s",
         "Σ student-stage s", "teacher sets trained", "store hits / lookups",
         "output batches read / computed", "best val acc"],
        [[r["search"], r["repetition"], r["wall_s"], r["trial_seconds"],
          r["teacher_stage_seconds"], r["student_stage_seconds"], r["teacher_sets_trained"],
          f"{r['store_hits']} / {r['store_lookups']}",
          f"{r['output_hits']} / {r['output_misses']}", r["best_value"]] for r in rows],
    )
    pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
    stores = [v for v in args.variants if v != BASE]
    table = [
        ["search wall time saved (medians)", *(pct(med[v]["wall_saving"]) for v in stores)],
        ["trial time saved (medians)", *(pct(med[v]["trial_saving"]) for v in stores)],
        ["teacher-stage time saved", *(pct(med[v]["teacher_stage_saving"]) for v in stores)],
        ["student-stage time saved", *(pct(med[v]["student_stage_saving"]) for v in stores)],
        ["target ≥ 40 % less wall time",
         *("met" if med[v]["wall_saving"] >= TARGET_SAVING else "not met" for v in stores)],
    ]
    harness.print_table("Saving against no store", ["", *stores], table)
    share = lambda k: base[k] / base["trial_seconds"]  # noqa: E731
    harness.print_table("Without the store", ["", "value"], [
        ["teacher stage's share of the trial time", pct(share("teacher_stage_seconds"))],
        ["student stage's share of the trial time", pct(share("student_stage_seconds"))],
        ["the rest (start-up, summary, files, tracking)",
         pct(1 - share("teacher_stage_seconds") - share("student_stage_seconds"))],
        ["trials with the same config in every variant", f"{same_configs} / {n}"],
        ["  of them with the same best val acc in every variant",
         f"{same_results} / {same_configs}"],
    ])
    harness.write_json(args.json, "teacher_reuse", args, {
        "generator_version": VERSION, "searches": rows, "medians": med,
        "same_configs": same_configs,
        "same_results": same_results, "trials": n,
        "target_met": {v: med[v]["wall_saving"] >= TARGET_SAVING for v in stores}})


if __name__ == "__main__":
    main()
