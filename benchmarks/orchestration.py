"""Orchestration overhead: N short trials through Tune vs the same trials in a plain loop.

The Tune side is the project's ``run_search`` (Tune + Optuna + MLflow, the experiment's
trainable, per-epoch reports with checkpoints, teacher store, the search report), with trials
one at a time, no pruning and the space ``search_spaces/smoke.yaml`` (four keys that do not
change a trial's cost). The loop side calls ``sakdn.train.train`` on the same sampled
configurations, one after the other, in one process, with a teacher store of its own.

Every ``train()`` call writes ``config.yaml`` first and ``metrics.json`` last, so the files'
modification times in each trial's work directory time ``train()`` inside Tune too. The
search's wall time splits into

    wall = fixed + Σ train() in Tune + Σ gaps between consecutive trials' train() calls

``fixed`` (once per search): validation, data-cache check, MLflow parent run, the first
trial's start and the last one's end, the report. Per trial: the gap (Tune and the searcher
between trials, the MLflow child run, flushes; with ``--no-reuse-actors`` also a new process
and its imports) plus what ``train()`` itself takes longer inside Tune
(per-epoch ``tune.report`` with its checkpoint), the latter also per epoch. The share is that
overhead for a trial of the default search (``experiments/synthetic_search.yaml`` on the default
synthetic dataset, its epochs) against that trial's ``train()`` time, measured here too.
A completed trial's figures (``sakdn.figures.write_trial_figures``) are drawn after the trial
ends, by a low-priority task the driver starts (``sakdn.search.trial_figures``): in no gap,
but timed apart on a finished short trial to show what they would add. Targets: < 5 %
(issue 8), < 10 % (issue 16).

    python benchmarks/orchestration.py
    python benchmarks/orchestration.py --trials 10 --default-trial-s 45   # reuse a measurement
    python benchmarks/orchestration.py --no-reuse-actors   # a new trial process per trial
    python benchmarks/orchestration.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
SPACE = harness.REPO / "search_spaces" / "smoke.yaml"
TARGET_SHARE = 0.10  # issue 16: < 10 % of a default trial (issue 8 hoped for < 5 %)
PROCESSES = {False: "Tune reusing the trial process", True: "a new trial process per trial"}


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "orchestration")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--teacher-epochs", type=int, default=2)
    p.add_argument("--student-epochs", type=int, default=3)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--default-trial-s", type=float, default=0.0,
                   help="train() seconds of a default trial, if known (else measured)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more overrides for the search and the loop (config or search.* keys)")
    p.add_argument("--no-reuse-actors", action="store_true",
                   help="run the Tune side with TuneConfig(reuse_actors=False): a new trial "
                        "process per trial (run_search passes True: one process serves all)")
    args = p.parse_args()
    if args.quick:
        args.trials, args.teacher_epochs, args.student_epochs = 2, 1, 1
    return args


def short_overrides(args: argparse.Namespace, storage: Path,
                    space: dict[str, str]) -> dict[str, Any]:
    if args.quick:
        root = harness.tiny(args.workdir)
    else:
        root = harness.synthetic(args.workdir, classes=4, subjects=8, repetitions=4,
                                 frame_size=32, duration=1.5)
    keys: dict[str, Any] = {
        "data.root": root, "data.frame_size": 32,
        "teacher.epochs": args.teacher_epochs, "student.epochs": args.student_epochs,
        "train.num_threads": args.threads,
        **space, "search.name": "tune", "search.num_samples": args.trials,
        "search.max_concurrent_trials": 1, "search.storage_path": storage,
        "search.time_budget_s": 0, "search.pruner": "none", "search.pruner_options": "{}",
        "search.scheduler": "fifo",
    }
    if args.quick:
        keys.update(harness.quick_sizes())
    for item in args.set:
        key, _, value = item.partition("=")
        keys[key.strip()] = value
    return keys


def train_span(workdir: Path) -> tuple[float, float]:
    """(start, end) of the ``train()`` call that ran in ``workdir`` (file modification times)."""
    return (workdir / "config.yaml").stat().st_mtime, (workdir / "metrics.json").stat().st_mtime


@contextlib.contextmanager
def reusing_actors(enabled: bool) -> Iterator[None]:
    """While active, every ``ray.tune.TuneConfig`` is built with ``reuse_actors=enabled``."""
    from ray import tune

    original = tune.TuneConfig
    if not enabled:
        tune.TuneConfig = lambda *a, **k: original(*a, **{**k, "reuse_actors": False})
    try:
        yield
    finally:
        tune.TuneConfig = original


def through_tune(experiment: Path, keys: dict[str, Any], storage: Path,
                 reuse_actors: bool) -> dict[str, Any]:
    from sakdn.search.trainable import read_ticket, trial_workdir

    with reusing_actors(reuse_actors):
        result, wall = harness.run_search(experiment, keys, storage / "tune.log")
    trials = harness.tune_trials(result.path)
    spans = [train_span(trial_workdir(result.path, read_ticket(result.path, t["id"]), t["id"]))
             for t in trials]
    trains = [end - start for start, end in spans]
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
    return {
        "wall_s": wall, "train_s": trains, "gaps_s": gaps,
        "trainable_s": [t["results"][-1]["time_total_s"] for t in trials],
        "fixed_s": wall - (spans[-1][1] - spans[0][0]),
        "configs": [t["config"] for t in trials],
    }


def in_a_loop(args: argparse.Namespace, experiment: Path, keys: dict[str, Any],
              configs: list[dict[str, Any]]) -> dict[str, Any]:
    from sakdn.search.run import prepare
    from sakdn.search.trainable import trial_config
    from sakdn.train import train

    items = [f"{k}={v}" for k, v in keys.items()]
    base = prepare(experiment, items).config.to_flat()
    root = harness.fresh_dir(Path(args.workdir) / "loop")
    seconds = []
    start = time.perf_counter()
    for i, sampled in enumerate(configs):
        t0 = time.perf_counter()
        train(trial_config(base, sampled), workdir=root / f"{i:05d}",
              teacher_store=root / "teacher_store", log=lambda m: None)
        seconds.append(time.perf_counter() - t0)
    return {"wall_s": time.perf_counter() - start, "train_s": seconds}


def figure_seconds(workdir: Path) -> float:
    """Seconds of ``write_trial_figures`` on a finished run (best of 2 after a warm-up): the
    per-trial figures each trial draws after ``train()``, here outside any trial."""
    import tempfile

    from sakdn.figures import write_trial_figures

    best = float("inf")
    for i in range(3):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_trial_figures(workdir, out)
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def default_trial(args: argparse.Namespace, experiment: Path) -> dict[str, Any]:
    """``train()`` seconds and epochs of one trial of the default search on the dataset the
    main job writes (``sakdn data synth`` defaults: 16 subjects; cache built first)."""
    from sakdn.config import load_config
    from sakdn.train import train
    from sakdn.train.data import build_data

    root = harness.synthetic(args.workdir)
    config = load_config(experiment, {"data.root": str(root), "train.progress": False,
                                      "train.num_threads": args.threads})
    epochs = config.teacher.epochs + config.student.epochs
    if args.default_trial_s:
        return {"seconds": args.default_trial_s, "epochs": epochs, "measured": False}
    build_data(config)  # the driver builds the cache before a search's trials start
    start = time.perf_counter()
    workdir = harness.fresh_dir(Path(args.workdir) / "default_trial")
    train(config, workdir=workdir, log=lambda m: None)
    return {"seconds": time.perf_counter() - start, "epochs": epochs, "measured": True,
            "figures_s": figure_seconds(workdir)}


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    storage = harness.fresh_dir(Path(args.workdir) / "searches")
    experiment, space = harness.snapshot(args.workdir, EXPERIMENT, SPACE)
    keys = short_overrides(args, storage, space)
    harness.warm_up(experiment, keys)
    ray_s = harness.start_ray(args.cpus)
    try:
        tune = through_tune(experiment, keys, storage, not args.no_reuse_actors)
    finally:
        harness.stop_ray()
    loop = in_a_loop(args, experiment, keys, tune["configs"])
    n, epochs = len(loop["train_s"]), args.teacher_epochs + args.student_epochs
    gap = harness.median(tune["gaps_s"]) if tune["gaps_s"] else float("nan")
    slower = [a - b for a, b in zip(tune["train_s"], loop["train_s"])]
    per_epoch = harness.median(slower) / epochs  # < 0 when the machine's load moved between
    figures = figure_seconds(Path(args.workdir) / "loop" / "00000")
    # inside each trial's process but outside train(): MLflow child run, figures (imports too
    # where a trial has a process of its own); the first trial's process start is in no gap
    outside = [a - b for a, b in zip(tune["trainable_s"], tune["train_s"])]
    inside = harness.median(outside[1:] or outside)

    harness.print_table(
        f"{n} short trials ({args.teacher_epochs} teacher + {args.student_epochs} student epochs), "
        f"one at a time, {PROCESSES[args.no_reuse_actors]}",
        ["", "wall s", "Σ train() s", "median train() s", "fixed per search s",
         "median gap between trials s"],
        [["Tune (run_search)", tune["wall_s"], sum(tune["train_s"]),
          harness.median(tune["train_s"]), tune["fixed_s"], gap],
         ["plain loop", loop["wall_s"], sum(loop["train_s"]), harness.median(loop["train_s"]),
          0.0, 0.0]],
    )
    default = (default_trial(args, experiment) if not args.quick
               else {"seconds": harness.median(loop["train_s"]), "epochs": epochs,
                     "measured": True, "short_trial": True})
    projected = gap + max(per_epoch, 0.0) * default["epochs"]
    share = projected / default["seconds"]
    with_figures = (projected + figures) / default["seconds"]  # were they drawn in the trial
    label = "the short trial (--quick)" if default.get("short_trial") else "a default trial"
    harness.print_table(
        "Per-trial overhead of Tune",
        ["quantity", "value"],
        [["Ray start (once per process; not in the search wall)", f"{ray_s:.1f} s"],
         ["fixed cost per search", f"{tune['fixed_s']:.1f} s"],
         ["gap between consecutive train() calls (median)", f"{gap:.2f} s"],
         ["  of it inside the trial's trainable, outside train()", f"{inside:.2f} s"],
         ["  of it between trainables (Tune, actor start)", f"{gap - inside:.2f} s"],
         ["the trial's figures (drawn after the trial, off its clock; timed apart)",
          f"{figures:.2f} s"],
         ["train() slower inside Tune, per epoch (median; < 0 counts 0)", f"{per_epoch:.3f} s"],
         [f"{label}: train() time, {default['epochs']} epochs", f"{default['seconds']:.1f} s"],
         *([[f"{label}: its figures (timed apart)", f"{default['figures_s']:.2f} s"]]
           if "figures_s" in default else []),
         ["its overhead: gap + per-epoch × epochs", f"{projected:.2f} s"],
         [f"share (target < {100 * TARGET_SHARE:.0f} %)", f"{100 * share:.1f} % "
          + ("met" if share < TARGET_SHARE else "not met")],
         ["share had the trial drawn its figures", f"{100 * with_figures:.1f} %"]],
    )
    harness.write_json(args.json, "orchestration", args, {
        "tune": {k: v for k, v in tune.items() if k != "configs"}, "loop": loop,
        "ray_start_s": ray_s, "gap_median_s": gap, "per_epoch_s": per_epoch,
        "inside_trainable_s": inside, "figures_s": figures, "default_trial": default,
        "projected_overhead_s": projected, "share": share, "share_with_figures": with_figures,
        "target_met": share < TARGET_SHARE})


if __name__ == "__main__":
    main()
