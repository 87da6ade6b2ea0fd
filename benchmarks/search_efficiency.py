"""Search efficiency: compute until a target validation accuracy is first reached, with and
without early stopping.

Three searches per repetition, built by the project's ``run_search`` from the main search's
experiment (``experiments/synthetic_search.yaml``, space ``search_spaces/synthetic.yaml``) on a
small synthetic dataset, with the same seed (``search.seed`` = repetition), the same TPE sampler
and the same number of trials:

- ``no pruning``: ``pruner: none``, ``scheduler: fifo``;
- ``Optuna <pruner>``: the experiment's own ``pruner`` and ``pruner_options`` (what a user of the
  main search gets) through the project's Optuna scheduler;
- ``Tune ASHA``: Tune's asynchronous successive halving on the student epoch, with the rungs of
  the experiment's pruner where it has them (``--asha``).

Trials run one at a time (``--concurrency``), so the compute spent before any moment is the sum
of the trials that ran before it. The per-epoch results are read back from Tune's
``result.json`` of each trial. Measures, per search:

- **to the target** (issue 8's measure): the student epochs trained by all trials
  (``trial-epochs``), the seconds of those epochs (``epoch-s``: each student epoch's
  ``time_this_iter_s``; a trial's last report, which also holds the run's summary, counts as
  its median epoch) and the trials' whole seconds (``trial-s``: Tune's ``time_total_s``,
  start-up and summary included) until the first epoch whose ``student/val_acc`` ≥
  ``--target``. A search that never reaches it counts its whole compute, marked ``>``;
- **per hit**: all trial-epochs of the search / the trials that reached the target: the expected
  compute to the target of a search whose trials were drawn alike (renewal estimate); it uses
  every trial, not only the ones before a lucky or unlucky first hit;
- **oracle** (from the unpruned search): the trial-epochs to its first hit had every trial that
  never reaches the target been stopped at epoch ``--oracle-epoch`` — no pruner that first acts
  at that epoch can do better on the same trials.

Target (issue 8): the pruned searches reach the target with ≤ 50 % of the unpruned compute.

Issue 16 asks the same of a level set by the unpruned search itself: **to the unpruned best**,
the trial-epochs until a pruned search first reaches the unpruned search's best validation
accuracy less ``--epsilon`` (paired by seed), as a share of (a) the unpruned search's whole
compute — the speed-up of the multi-fidelity literature, which counts the baseline's whole
budget — and (b) the unpruned search's own trial-epochs until that level. (a) also depends on
where in the order the best trial fell, so it is printed for the unpruned search too; (b) is the
share pruning saves on the way to the same result.

``--data main`` runs the same three searches on the main job's own dataset and epochs (the
experiment file's data, 8 teacher and 15 student epochs, 96 validation clips) instead of the
small one, with ``--target`` and ``--oracle-epoch`` to suit it (e.g. 0.5 and 5): the main job's
curves sit at chance for several epochs, where the small dataset's leave it by epoch 2–3.

    python benchmarks/search_efficiency.py                  # 3 repetitions × 3 searches
    python benchmarks/search_efficiency.py --repetitions 1  # a quick look
    python benchmarks/search_efficiency.py --quick          # 1 search per method, 3 tiny trials
    python benchmarks/search_efficiency.py --data main --trials 20 --target 0.5 --oracle-epoch 5
    python benchmarks/search_efficiency.py --from-json runs/bench/search_efficiency.json
    python benchmarks/search_efficiency.py --replay runs/bench/search_efficiency.json
    python benchmarks/search_efficiency.py --replay PATH --decide-on student/val_p_true

``--replay`` trains nothing: it replays the complete learning curves of an earlier run's unpruned
searches, in random orders, through Optuna's own pruners (and ASHA's rung rule) with several
settings, to choose the settings that match when the curves separate; ``--decide-on`` lets the
pruners see another recorded validation signal (the mean probability of the true class, or the
validation loss) while hits are still judged on the accuracy. ``--objective last5`` judges hits
on a lower-noise objective instead: a trial's mean validation accuracy over its last five
epochs (``student/val_acc_last5``), known only when it trains to its end, so a pruned trial
never reaches a level.

    python benchmarks/search_efficiency.py --replay PATH --objective last5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import harness

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
QUICK_SPACE = harness.REPO / "search_spaces" / "smoke.yaml"
METRIC = "student/val_acc"
TARGET_RATIO = 0.5  # issues 8 and 16: ≤ 50 % of the unpruned compute
# validation signals recorded per epoch beside METRIC, for --replay --decide-on
SIGNALS = ("student/val_p_true", "student/val_loss")
LOWER_IS_BETTER = ("student/val_loss",)
OBJECTIVES = ("best", "last5")  # --replay: hits on the running best, or on the late mean
EPSILON = 0.02  # issue 16's ε: half the per-seed noise of a trial's best validation accuracy
BASE = "no pruning"
OPTUNA = "Optuna"  # + the experiment's pruner name
ASHA = "Tune ASHA"
FILE_EPOCHS = "the file's"  # --data main: the experiment's own student epochs


def methods(experiment: Path, asha: dict[str, int], quick: bool = False
            ) -> dict[str, dict[str, Any]]:
    """Method name → the search keys that make it (the Optuna method keeps the file's pruner,
    except in ``--quick`` mode: 3 trials of 3 epochs, pruned from the first epoch on)."""
    import yaml

    search = (yaml.safe_load(experiment.read_text()) or {}).get("search", {})
    pruner, options = search.get("pruner", "median"), search.get("pruner_options") or {}
    own: dict[str, Any] = {"search.scheduler": "optuna"}
    if quick:
        pruner, options = "median", {"n_startup_trials": 1, "n_warmup_steps": 0}
        asha = {"grace_period": 1, "reduction_factor": 2}
        own.update({"search.pruner": pruner, "search.pruner_options": _flow(options)})
    return {
        BASE: {"search.pruner": "none", "search.pruner_options": "{}",
               "search.scheduler": "fifo"},
        f"{OPTUNA} {pruner} ({_shown(options)})": own,
        f"{ASHA} ({_shown(asha)})": {
            "search.pruner": "none", "search.pruner_options": "{}",
            "search.scheduler": "asha", "search.scheduler_options": _flow(asha)},
    }


def _shown(options: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items())


def _flow(options: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "search_efficiency")
    p.add_argument("--repetitions", type=int, default=3,
                   help="search seeds first-seed .. first-seed + repetitions - 1")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first search seed (to add seeds to an earlier run: its last + 1)")
    p.add_argument("--trials", type=int, default=24, help="trials per search")
    p.add_argument("--data", choices=["small", "main"], default="small",
                   help="small: 4 classes, 32-px frames, 32 validation clips (default); main: "
                        "the experiment's own dataset and epochs")
    p.add_argument("--target", type=float, default=1.0,
                   help="validation accuracy to reach (default: all 32 validation clips)")
    p.add_argument("--student-epochs", type=int,
                   help="default: 10 on the small dataset, the file's with --data main")
    p.add_argument("--teacher-epochs", type=int,
                   help="default: 4 on the small dataset, the file's with --data main")
    p.add_argument("--asha", default="grace_period=3,reduction_factor=3",
                   help="ASHA options, k=v,... (default: rungs at epochs 3 and 9, the small "
                        "dataset's; give the experiment's pruner's rungs to match it)")
    p.add_argument("--epsilon", type=float, default=EPSILON,
                   help="to the unpruned best: reach the unpruned search's best validation "
                        f"accuracy less this (default {EPSILON}: half the per-seed noise)")
    p.add_argument("--oracle-epoch", type=int, default=3,
                   help="the oracle stops non-reaching trials at this student epoch")
    p.add_argument("--concurrency", type=int, default=1, help="trials at a time")
    p.add_argument("--cpus", type=int, default=2, help="CPUs the local Ray may hand out")
    p.add_argument("--methods", nargs="+", choices=["none", "optuna", "asha"],
                   default=["none", "optuna", "asha"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more overrides for every search (config or search.* keys)")
    p.add_argument("--from-json", metavar="PATH",
                   help="print the tables of an earlier run's --json output; run nothing")
    p.add_argument("--replay", metavar="PATH",
                   help="replay the unpruned curves of an earlier run's --json output through "
                        "pruner settings; run nothing")
    p.add_argument("--orders", type=int, default=200, help="random trial orders (--replay)")
    p.add_argument("--replay-seed", type=int, default=0,
                   help="--replay of a fidelity_ranking.py run: the training seed whose "
                        "full-fidelity curves are replayed (with --trials and --target)")
    p.add_argument("--decide-on", default=None, choices=[METRIC, *SIGNALS],
                   help="the curves the replayed pruners see (default: those of --judge-on)")
    p.add_argument("--judge-on", default=METRIC, choices=[METRIC, *SIGNALS],
                   help="--replay: the curves whose values decide a hit and the unpruned best "
                        f"(default {METRIC}; a loss counts negated)")
    p.add_argument("--objective", default="best", choices=OBJECTIVES,
                   help="--replay: a hit is a student epoch's value at a level (best), or a "
                        "trial's mean over its last 5 epochs there, once it trained to its end "
                        "(last5)")
    args = p.parse_args()
    if args.quick:
        args.repetitions, args.trials, args.student_epochs, args.teacher_epochs = 1, 3, 3, 1
        args.target, args.oracle_epoch, args.data = 0.5, 1, "small"
    if args.data == "small":
        args.student_epochs = args.student_epochs or 10
        args.teacher_epochs = args.teacher_epochs or 4
    return args


def dataset(args: argparse.Namespace) -> Path | None:
    """The data root of the searches; None: the experiment file's own (``--data main``)."""
    if args.data == "main":
        return None
    if args.quick:
        return harness.tiny(args.workdir)
    # 4 classes (two video-confusable pairs) × 12 subjects × 4 repetitions, 32-px frames: the
    # cross-subject split trains on 6 subjects, of which 2 are carved out for validation: 64
    # training and 32 validation clips (a target of 1.0 is 32 of 32).
    return harness.synthetic(args.workdir, classes=4, subjects=12, repetitions=4,
                             frame_size=32, duration=1.5)


def overrides(args: argparse.Namespace, root: Path | None, storage: Path,
              space: dict[str, str]) -> dict[str, Any]:
    """Config and search keys shared by every search of the benchmark."""
    keys: dict[str, Any] = {**space, "train.num_threads": args.threads,
        "search.num_samples": args.trials, "search.max_concurrent_trials": args.concurrency,
        "search.storage_path": storage, "search.time_budget_s": 0,
        "search.log_models": "false",
    }
    if root is not None:
        keys.update({"data.root": root, "data.frame_size": 32})
    for key, value in (("teacher.epochs", args.teacher_epochs),
                       ("student.epochs", args.student_epochs)):
        if value is not None:
            keys[key] = value
    if args.quick:
        keys.update(harness.quick_sizes())
    for item in args.set:
        key, _, value = item.partition("=")
        keys[key.strip()] = value
    return keys


def reaches(value: float, level: float) -> bool:
    """The one hit rule: a finite value at or above ``level``, within float rounding (a level
    may be another search's exact best). A diverged trial reports NaN."""
    return value == value and value >= level - 1e-9


def _student_reports(trial: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in trial["results"] if r.get("stage") == "student" and METRIC in r]


def epoch_seconds(trial: dict[str, Any]) -> list[float]:
    """Seconds of each student epoch of a trial; a completed trial's last report also holds
    the run's summary (evaluation, files, figures) and counts as the trial's median epoch."""
    reports = _student_reports(trial)
    times = [float(r.get("time_this_iter_s", 0.0)) for r in reports]
    if times and reports[-1].get("completed") and len(times) > 1:
        times[-1] = harness.median(times[:-1])
    return times


def compute_until(trials: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Compute until a student epoch first reaches ``target``, and the search's totals.

    Trials ran one at a time in ``trials`` order: everything the earlier trials spent counts,
    plus the reaching trial's compute up to that epoch (trial-seconds: up to the end of that
    epoch's report).
    """
    epochs = seconds = epoch_s = 0.0
    reached = None
    best = 0.0
    hits = 0
    for trial in trials:
        trial_seconds = 0.0
        e_times = epoch_seconds(trial)
        trial_hit = False
        for r, e_time in zip(_student_reports(trial), e_times):
            value = r[METRIC]
            finite = value == value  # a diverged trial reports NaN
            if finite:
                best = max(best, value)
                trial_hit = trial_hit or reaches(value, target)
            if reached is None:
                epochs += 1
                epoch_s += e_time
                if reaches(value, target):
                    trial_seconds = r.get("time_total_s", trial_seconds)
                    reached = {"epochs": epochs, "seconds": seconds + trial_seconds,
                               "epoch_seconds": epoch_s,
                               "trial": trial["index"], "epoch": r.get("epoch")}
        hits += trial_hit
        if reached is None and trial["results"]:
            seconds += trial["results"][-1].get("time_total_s", 0.0)
    total_epochs = sum(len(_student_reports(t)) for t in trials)
    total_seconds = sum(t["results"][-1].get("time_total_s", 0.0) for t in trials if t["results"])
    total_epoch_s = sum(sum(epoch_seconds(t)) for t in trials)
    stopped = sum(1 for t in trials if not any(r.get("completed") for r in t["results"]))
    return {"reached": reached is not None,
            "epochs_to_target": reached["epochs"] if reached else total_epochs,
            "seconds_to_target": reached["seconds"] if reached else total_seconds,
            "epoch_seconds_to_target": reached["epoch_seconds"] if reached else total_epoch_s,
            "reached_in": reached, "total_epochs": total_epochs, "total_seconds": total_seconds,
            "total_epoch_seconds": total_epoch_s, "hits": hits,
            "epochs_per_hit": total_epochs / hits if hits else float("nan"),
            "trials": len(trials), "stopped_early": stopped, "best_val_acc": best}


def oracle_epochs(curves: list[list[float]], target: float, epoch: int) -> float:
    """Trial-epochs to the first hit had every trial that never reaches ``target`` been
    stopped after ``epoch`` student epochs (the trials' curves as they ran, unpruned)."""
    total = 0
    for values in curves:
        hit = _first_hit([values], [len(values)], target)
        if hit == hit:
            return total + hit
        total += min(epoch, len(values))
    return float("nan")


def to_unpruned_best(curves: list[list[float]], base: list[list[float]],
                     epsilon: float) -> dict[str, float]:
    """Issue 16's measure: the trial-epochs until a search's ``curves`` (trials in the order
    they ran) first reach the level ``max(base) − ε`` set by the unpruned search ``base``, and
    that count as shares of ``base``'s whole trial-epochs and of ``base``'s own trial-epochs to
    the same level. A search that never reaches the level gives NaN counts and shares."""
    finite = [v for c in base for v in c if v == v]
    level = max(finite) - epsilon if finite else float("nan")
    mine = _first_hit(curves, [len(c) for c in curves], level)
    own = _first_hit(base, [len(c) for c in base], level)
    whole = sum(len(c) for c in base)
    return {"level": level, "epochs": mine, "base_epochs": own, "base_whole": float(whole),
            "of_whole": _ratio(mine, whole), "of_same_level": _ratio(mine, own)}


def against_unpruned_best(rows: list[dict[str, Any]], epsilon: float) -> list[dict[str, Any]]:
    """``to_unpruned_best`` for every search, paired with the unpruned search of its seed."""
    base = {r["seed"]: r for r in rows if r["method"] == BASE}
    out = []
    for r in rows:
        ref = base.get(r["seed"])
        if ref is not None:
            out.append({"method": r["method"], "seed": r["seed"],
                        **to_unpruned_best(r["curves"], ref["curves"], epsilon)})
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    root = dataset(args)
    storage = harness.fresh_dir(Path(args.workdir) / "searches")
    experiment, space = harness.snapshot(args.workdir, EXPERIMENT,
                                         QUICK_SPACE if args.quick else None)
    shared = overrides(args, root, storage, space)
    asha = {k: int(v) for k, v in (x.split("=") for x in args.asha.split(",") if x)}
    table = methods(experiment, asha, args.quick)
    chosen = [name for name in table if _kind(name) in args.methods]
    args.method_names = chosen
    harness.warm_up(experiment, shared)
    rows = []
    ray_s = harness.start_ray(args.cpus)
    print(f"local Ray started in {ray_s:.1f} s; searches log to {storage}/*.log", flush=True)
    try:
        for rep in range(args.first_seed, args.first_seed + args.repetitions):
            for method in chosen:
                name = f"{_kind(method)}_r{rep}"
                keys = {**shared, **table[method], "search.name": name,
                        "search.seed": rep}
                start = time.strftime("%H:%M:%S")
                result, wall = harness.run_search(experiment, keys, storage / f"{name}.log")
                trials = harness.tune_trials(result.path)
                row = {"method": method, "repetition": rep, "seed": rep, "wall_s": wall,
                       **compute_until(trials, args.target),
                       "curves": [[r[METRIC] for r in _student_reports(t)] for t in trials],
                       "signals": {m: [[r.get(m, float("nan")) for r in _student_reports(t)]
                                       for t in trials] for m in SIGNALS}}
                row["oracle_epochs"] = oracle_epochs(row["curves"], args.target,
                                                     args.oracle_epoch)
                rows.append(row)
                print(f"{start} {method:<14} seed {rep}: {row['trials']} trials, "
                      f"{row['stopped_early']} stopped early, best {row['best_val_acc']:.3f}, "
                      f"{wall:.0f} s", flush=True)
    finally:
        harness.stop_ray()
    return rows


def _kind(method: str) -> str:
    return "none" if method == BASE else "asha" if method.startswith(ASHA) else "optuna"


def _ratio(value: float, base: float) -> float:
    return value / base if base and base == base and value == value else float("nan")


def summary(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Per method: medians over repetitions, and the ratios to the unpruned search (paired by
    seed; the to-target ratios only where the unpruned search reached the target)."""
    out = []
    base = {r["seed"]: r for r in rows if r["method"] == BASE}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        ratios: dict[str, list[float]] = {k: [] for k in (
            "epochs", "epoch_seconds", "seconds", "per_hit", "total", "oracle")}
        for r in mine:  # paired by seed
            ref = base.get(r["seed"])
            if ref is None:
                continue
            ratios["total"].append(_ratio(r["total_epochs"], ref["total_epochs"]))
            ratios["per_hit"].append(_ratio(r["epochs_per_hit"], ref["epochs_per_hit"]))
            if ref["reached"]:
                ratios["epochs"].append(_ratio(r["epochs_to_target"], ref["epochs_to_target"]))
                ratios["epoch_seconds"].append(
                    _ratio(r["epoch_seconds_to_target"], ref["epoch_seconds_to_target"]))
                ratios["seconds"].append(_ratio(r["seconds_to_target"], ref["seconds_to_target"]))
                if method == BASE:
                    ratios["oracle"].append(_ratio(r["oracle_epochs"], r["epochs_to_target"]))
        med = {k: harness.median([x for x in v if x == x]) for k, v in ratios.items()}
        out.append({
            "method": method, "repetitions": len(mine),
            "reached": sum(r["reached"] for r in mine),
            "median_epochs_to_target": harness.median([r["epochs_to_target"] for r in mine]),
            "median_epoch_seconds_to_target": harness.median(
                [r["epoch_seconds_to_target"] for r in mine]),
            "median_seconds_to_target": harness.median([r["seconds_to_target"] for r in mine]),
            "median_ratio_epochs": med["epochs"],
            "median_ratio_epoch_seconds": med["epoch_seconds"],
            "median_ratio_seconds": med["seconds"],
            "median_ratio_per_hit": med["per_hit"],
            "median_ratio_total_epochs": med["total"],
            "median_oracle_ratio": med["oracle"],
            "hits": sum(r["hits"] for r in mine), "trials": sum(r["trials"] for r in mine),
            "median_best_val_acc": harness.median([r["best_val_acc"] for r in mine]),
            "target_met": None if method == BASE or med["epochs"] != med["epochs"] else (
                med["epochs"] <= TARGET_RATIO and all(r["reached"] for r in mine)),
        })
    return out


# --- replay: pruner settings on recorded curves ---------------------------------------------


def _optuna_setting(make: Any) -> Any:
    """A replay function: the trials' curves in order → student epochs each trial trained."""

    def run(curves: list[list[float]]) -> list[int]:
        import optuna
        from optuna.trial import TrialState

        # a fixed name: Hyperband puts a trial in a bracket by a checksum of the study's name
        # and the trial's number, so a generated name made its rows differ from run to run
        study = optuna.create_study(study_name="replay", direction="maximize", pruner=make(),
                                    sampler=optuna.samplers.RandomSampler(0))
        spent = []
        for curve in curves:
            trial, best, epochs = study.ask(), float("-inf"), len(curve)
            for step, value in enumerate(curve, start=1):
                best = max(best, value)  # the search reports student/best_val_acc
                trial.report(best, step)
                if trial.should_prune():
                    epochs = step
                    break
            if epochs < len(curve):
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, best)
            spent.append(epochs)
        return spent

    return run


def _asha_setting(grace: int, rf: int) -> Any:
    """Tune's ASHA rule, one bracket: at rungs grace·rf^k a trial stops when its best value is
    below the (1 − 1/rf) quantile of the values recorded at that rung before it."""
    import numpy as np

    def run(curves: list[list[float]]) -> list[int]:
        recorded: dict[int, list[float]] = {}
        spent = []
        for curve in curves:
            epochs, best = len(curve), float("-inf")
            rungs = [grace * rf ** k for k in range(8) if grace * rf ** k < len(curve)]
            for step, value in enumerate(curve, start=1):
                best = max(best, value)
                if step in rungs:
                    seen = recorded.setdefault(step, [])
                    cutoff = float(np.nanpercentile(seen, (1 - 1 / rf) * 100)) if seen else None
                    seen.append(best)
                    if cutoff is not None and best < cutoff:
                        epochs = step
                        break
            spent.append(epochs)
        return spent

    return run


def replay_settings(epochs: int = 15) -> dict[str, Any]:
    """Pruner settings to replay: Optuna's median, percentile, successive-halving and
    Hyperband pruners and Tune's ASHA, first acting at student epochs 2–6, and at 8 and 10
    where a trial of ``epochs`` has room for a second rung after them."""
    import warnings

    import optuna

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pr = optuna.pruners
    out: dict[str, Any] = {"none": lambda curves: [len(c) for c in curves]}
    for start in (3, 5):
        for warm in (2, 3, 4, 5):
            out[f"median n_startup_trials {start}, n_warmup_steps {warm}"] = _optuna_setting(
                lambda s=start, w=warm: pr.MedianPruner(n_startup_trials=s, n_warmup_steps=w))
        out[f"percentile 33, n_startup_trials {start}, n_warmup_steps 3"] = _optuna_setting(
            lambda s=start: pr.PercentilePruner(33.0, n_startup_trials=s, n_warmup_steps=3))
    for low in (2, 3, 4, 5, 6, *(m for m in (8, 10) if 2 * m <= epochs)):
        for rf in (2, 3):
            out[f"successive_halving min_resource {low}, reduction_factor {rf}"] = (
                _optuna_setting(lambda m=low, r=rf: pr.SuccessiveHalvingPruner(
                    min_resource=m, reduction_factor=r)))
            out[f"ASHA grace_period {low}, reduction_factor {rf}"] = _asha_setting(low, rf)
        out[f"hyperband min_resource {low}, reduction_factor 3"] = _optuna_setting(
            lambda m=low: pr.HyperbandPruner(min_resource=m, reduction_factor=3))
    return out


def replay(pool: list[list[float]], settings: dict[str, Any], target: float, trials: int,
           orders: int, seed: int = 0, epsilon: float = EPSILON, oracle_epoch: int = 3,
           signals: list[list[float]] | None = None) -> list[dict[str, Any]]:
    """Each setting on ``orders`` random orders of ``trials`` curves drawn from ``pool``
    (without replacement while the pool lasts): medians of the first-hit and per-hit ratios
    to no pruning, the whole search's epochs and the mean best value; and issue 16's measure,
    the epochs to the order's unpruned best less ``epsilon`` as shares of the unpruned order's
    whole epochs and of its own epochs to that level (an order that loses the level to pruning
    counts as infinitely slow in these medians, and in ``lost``); ``best_oracle``: the same
    share had every trial that never reaches the level stopped at ``oracle_epoch``.

    ``signals`` (one curve per ``pool`` curve, larger is better): what the pruners decide on,
    in place of the accuracy curves, which still decide what counts as a hit."""
    picks = random_orders(len(pool), trials, orders, seed)
    draws = [[pool[i] for i in pick] for pick in picks]
    decide_on = [[(signals or pool)[i] for i in pick] for pick in picks]
    base = [_first_hit(c, [len(x) for x in c], target) for c in draws]
    rows = []
    for name, run in settings.items():
        first, totals, bests, spent_all, hits, reached = [], [], [], 0, 0, 0
        of_whole, of_same, lost, oracle = [], [], 0, []
        for curves, ref, seen in zip(draws, base, decide_on):
            spent = run(seen)
            epochs = _first_hit(curves, spent, target)
            reached += epochs == epochs
            if ref == ref:  # an order that never reaches counts its whole search
                first.append((epochs if epochs == epochs else sum(spent)) / ref)
            totals.append(sum(spent) / sum(map(len, curves)))
            bests.append(max(v for c, n in zip(curves, spent) for v in c[:n] if v == v))
            spent_all += sum(spent)
            hits += sum(any(reaches(v, target) for v in c[:n])
                        for c, n in zip(curves, spent))
            level = max(v for c in curves for v in c if v == v) - epsilon
            mine = _first_hit(curves, spent, level)
            lost += mine != mine
            of_whole.append(mine / sum(map(len, curves)) if mine == mine else float("inf"))
            own = _first_hit(curves, [len(c) for c in curves], level)
            of_same.append(mine / own if mine == mine else float("inf"))
            oracle.append(oracle_epochs(curves, level, oracle_epoch) / own)
        rows.append({"setting": name, "first_hit": harness.median(first), "reached": reached,
                     "epochs_per_hit": spent_all / hits if hits else float("nan"),
                     "whole": harness.median(totals),
                     "best": sum(bests) / len(bests),
                     "best_of_whole": harness.median(of_whole),
                     "best_of_same_level": harness.median(of_same), "best_lost": lost,
                     "best_oracle": harness.median(oracle)})
    none = next(r for r in rows if r["setting"] == "none")["epochs_per_hit"]
    for r in rows:
        r["per_hit"] = _ratio(r["epochs_per_hit"], none)
    return sorted(rows, key=lambda r: (r["per_hit"] != r["per_hit"], r["per_hit"]))


def random_orders(pool: int, trials: int, orders: int, seed: int = 0,
                  ids: list[int] | None = None) -> list[list[int]]:
    """``orders`` searches of ``trials`` curves drawn from a pool of ``pool``, without
    replacement while the pool lasts: the replay's stand-in for a sampler.

    ``ids`` (a configuration per curve, for a pool resampled with replacement): no search meets
    one configuration twice, as a sampler of a continuous space never does; a configuration
    that the resampling repeated is only the likelier to be met. Without this a pruner meets
    the best configuration's copies more than once, and gets more chances to keep it."""
    import random

    rng = random.Random(seed)
    if ids is None:
        return [rng.sample(range(pool), min(trials, pool)) for _ in range(orders)]
    out = []
    for _ in range(orders):
        met: set[int] = set()
        order = []
        for i in rng.sample(range(pool), pool):
            if ids[i] not in met and len(order) < trials:
                met.add(ids[i])
                order.append(i)
        out.append(order)
    return out


def late_curve(curve: list[float]) -> list[float]:
    """A trial's late-mean objective as a curve: NaN until its last epoch, then the value a run
    logs as ``student/val_acc_last5`` (``late_mean``). Cut short by pruning, it never hits."""
    from sakdn.train.metrics import late_mean

    return [float("nan")] * (len(curve) - 1) + [late_mean(curve)]


def _first_hit(curves: list[list[float]], spent: list[int], target: float) -> float:
    """Trial-epochs until a value first ``reaches`` ``target``, each curve cut at its
    ``spent`` epochs; NaN: never."""
    total = 0
    for curve, n in zip(curves, spent):
        for value in curve[:n]:
            total += 1
            if reaches(value, target):
                return float(total)
    return float("nan")


def _recorded(unpruned: list[dict[str, Any]], keep: list[tuple[dict[str, Any], int]], name: str,
              path: str) -> list[list[float]]:
    """The recorded curves of ``name`` for the kept trials, negated where lower is better."""
    if name == METRIC:
        return [r["curves"][i] for r, i in keep]
    if any(name not in r.get("signals", {}) for r in unpruned):
        raise SystemExit(f"{path}: no {name} curves recorded (runs of an older version keep "
                         f"{METRIC} only)")
    sign = -1.0 if name in LOWER_IS_BETTER else 1.0
    return [[sign * v for v in r["signals"][name][i]] for r, i in keep]


def replay_pool(saved: dict[str, Any], args: argparse.Namespace
                ) -> tuple[list[dict[str, Any]], int, float, str]:
    """The unpruned curves to replay, the trials per order and the target: an earlier run's
    unpruned searches with their own settings, or a ``fidelity_ranking.py`` run's full-fidelity
    trainings at ``--replay-seed`` (configurations trained outside any search, so a longer
    student stage can be replayed), with ``--trials`` and ``--target``."""
    if saved.get("benchmark") != "fidelity_ranking":
        return ([r for r in saved["results"]["searches"] if r["method"] == BASE],
                saved["args"]["trials"], saved["args"]["target"], "unpruned curves")
    from fidelity_ranking import FULL, curves_of

    results = saved["results"]
    if not any(r["fidelity"] == FULL and r["seed"] == args.replay_seed for r in results["runs"]):
        raise SystemExit(f"{args.replay}: no full-fidelity runs at training seed "
                         f"{args.replay_seed}")
    search = {"curves": curves_of(results, FULL, args.replay_seed, METRIC),
              "signals": {s: curves_of(results, FULL, args.replay_seed, s)
                          for s in harness.VALIDATION_SIGNALS if s != METRIC}}
    return [search], args.trials, args.target, f"seed-{args.replay_seed} full-fidelity curves"


def print_replay(path: str, args: argparse.Namespace) -> None:
    saved = json.loads(Path(path).read_text())
    unpruned, trials, target, what = replay_pool(saved, args)
    keep = [(r, i) for r in unpruned for i, c in enumerate(r["curves"]) if c]
    args.decide_on = args.decide_on or args.judge_on
    pool = _recorded(unpruned, keep, args.judge_on, path)
    signals = (None if args.decide_on == args.judge_on
               else _recorded(unpruned, keep, args.decide_on, path))
    judged = "best " + args.judge_on  # a level reached at an epoch: the running best reaches it
    if args.objective == "last5":  # the pruners still see the epochs; hits need the end
        signals = signals or pool
        pool = [late_curve(c) for c in pool]
        judged = "mean of the last 5 epochs' " + args.judge_on
    rows = replay(pool, replay_settings(min(map(len, pool))), target, trials, args.orders,
                  epsilon=args.epsilon, oracle_epoch=args.oracle_epoch, signals=signals)
    harness.print_table(
        f"Pruner settings replayed on the {len(pool)} {what} of {path} "
        f"({args.orders} random orders of {trials} trials, hits judged on "
        f"{judged}, target {target}; unpruned best less ε = {args.epsilon}; pruners decide on "
        f"{args.decide_on}{' (negated)' if args.decide_on in LOWER_IS_BETTER else ''}), "
        "against no pruning",
        ["setting", "first hit: trial-epochs (median)", "per hit: trial-epochs",
         "whole search: trial-epochs", "orders reaching target", "mean best objective",
         "to unpruned best − ε: of its whole search", "of its epochs to that level",
         "orders losing it"],
        [[r["setting"], _pct(r["first_hit"]), _pct(r["per_hit"]), _pct(r["whole"]),
          f"{r['reached']}/{args.orders}", f"{r['best']:.3f}", _pct(r["best_of_whole"]),
          _pct(r["best_of_same_level"]), f"{r['best_lost']}/{args.orders}"] for r in rows],
    )
    rho = rank_agreement(pool, signals or pool)
    negated = "−" if args.decide_on in LOWER_IS_BETTER else ""
    print(f"\nSpearman's ρ between {negated}{args.decide_on} at student epoch 1, 2, … and the "
          f"trial's {judged} ({len(pool)} curves): " + " ".join(f"{r:+.2f}" for r in rho))
    print(f"Oracle (stops every trial that never reaches the order's unpruned best less ε "
          f"after {args.oracle_epoch} student epoch(s)): {_pct(rows[0]['best_oracle'])} of the "
          "unpruned epochs to that level (median over orders).")


def rank_agreement(pool: list[list[float]], signals: list[list[float]]) -> list[float]:
    """Spearman's ρ, per student epoch, between each trial's signal at that epoch and its best
    accuracy over all epochs (``pool``): how early the curves rank the trials as their ends
    do. Epochs that some trial did not reach are left out; an epoch where every trial ties
    (all at chance) has no ranking: NaN."""
    from sakdn.stats import spearman

    finals = [harness.best_of_curve(c) for c in pool]
    epochs = min(len(c) for c in signals)
    return [spearman([c[e] for c in signals], finals).rho for e in range(epochs)]


def _pct(x: float) -> str:
    return "-" if x != x else "never" if x == float("inf") else f"{100 * x:.0f} %"


def print_unpruned_best(rows: list[dict[str, Any]], methods: list[str], epsilon: float) -> None:
    """Issue 16's measure per search, and its medians over seeds per method."""
    pairs = against_unpruned_best(rows, epsilon)
    harness.print_table(
        f"To the unpruned search's best less ε = {epsilon} (same seed), trial-epochs",
        ["method", "seed", "level", "trial-epochs to it", "of the unpruned whole search",
         "of the unpruned search's epochs to it"],
        [[p["method"], p["seed"], f"{p['level']:.3f}",
          *(["never"] * 3 if p["epochs"] != p["epochs"] else
            [f"{p['epochs']:.0f}", _pct(p["of_whole"]), _pct(p["of_same_level"])])]
         for p in pairs],
    )
    inf = float("inf")
    summary_rows = []
    for method in methods:
        mine = [p for p in pairs if p["method"] == method]
        if not mine:
            continue
        whole = [p["of_whole"] if p["of_whole"] == p["of_whole"] else inf for p in mine]
        same = [p["of_same_level"] if p["of_same_level"] == p["of_same_level"] else inf
                for p in mine]
        met = lambda x: "-" if method == BASE else "yes" if x <= TARGET_RATIO else "no"  # noqa: E731
        summary_rows.append([method, f"{sum(p['epochs'] == p['epochs'] for p in mine)}/"
                             f"{len(mine)}", _pct(harness.median(whole)),
                             met(harness.median(whole)), _pct(harness.median(same)),
                             met(harness.median(same))])
    harness.print_table(
        f"To the unpruned best less ε = {epsilon}, median over seeds (a search that never "
        "reaches it counts as never)",
        ["method", "reached", "(a) of the unpruned whole search", "(a) ≤ 50 %",
         "(b) of the unpruned epochs to it", "(b) ≤ 50 %"],
        summary_rows,
    )


def main() -> None:
    from sakdn.data.synthetic import VERSION

    args = parse_args()
    if args.replay:
        print_replay(args.replay, args)
        return
    if args.from_json:  # print the tables of an earlier run again (with its settings)
        saved = json.loads(Path(args.from_json).read_text())
        rows = saved["results"]["searches"]
        for key in ("trials", "concurrency", "target", "repetitions", "method_names",
                    "oracle_epoch", "student_epochs"):
            setattr(args, key, saved["args"][key])
        args.data = saved["args"].get("data", "small")
        VERSION = saved["results"].get("generator_version", "?")  # noqa: N806
    else:
        rows = run(args)
    mark = lambda r, key: f"{'' if r['reached'] else '>'}{r[key]:.0f}"  # noqa: E731
    harness.print_table(
        f"Searches ({args.trials} trials of {args.student_epochs or FILE_EPOCHS} student "
        f"epochs, {args.concurrency} at a time, target {METRIC} ≥ {args.target}, "
        f"{'the main job' if args.data == 'main' else 'small'} dataset, synthetic generator "
        f"v{VERSION})",
        ["method", "seed", "trial-epochs to target", "epoch-s to target", "trial-s to target",
         "total trial-epochs", "trials reaching target", "trial-epochs per hit",
         "stopped early", "best val acc", "search wall s"],
        [[r["method"], r["seed"], mark(r, "epochs_to_target"), mark(r, "epoch_seconds_to_target"),
          mark(r, "seconds_to_target"), r["total_epochs"], f"{r['hits']}/{r['trials']}",
          r["epochs_per_hit"], f"{r['stopped_early']}/{r['trials']}", r["best_val_acc"],
          r["wall_s"]] for r in rows],
    )
    summ = summary(rows, args.method_names)
    harness.print_table(
        f"Compute until the target, median over {args.repetitions} seed(s), against no pruning",
        ["method", "reached", "trial-epochs", "epoch-s", "trial-s", "≤ 50 %",
         "per hit: trial-epochs", "whole search: trial-epochs", "trials reaching target",
         "best val acc"],
        [[s["method"], f"{s['reached']}/{s['repetitions']}", _pct(s["median_ratio_epochs"]),
          _pct(s["median_ratio_epoch_seconds"]), _pct(s["median_ratio_seconds"]),
          "-" if s["target_met"] is None else ("yes" if s["target_met"] else "no"),
          _pct(s["median_ratio_per_hit"]), _pct(s["median_ratio_total_epochs"]),
          f"{s['hits']}/{s['trials']}", s["median_best_val_acc"]] for s in summ],
    )
    print_unpruned_best(rows, args.method_names, args.epsilon)
    base = next((s for s in summ if s["method"] == BASE), None)
    if base:
        print(f"\nOracle (stops every trial of the unpruned searches that never reaches the "
              f"target after {args.oracle_epoch} student epoch(s)): "
              f"{_pct(base['median_oracle_ratio'])} of the unpruned trial-epochs to the target "
              f"(median over seeds).")
    harness.write_json(args.json, "search_efficiency", args,
                       {"generator_version": VERSION, "searches": rows, "summary": summ,
                        "epsilon": args.epsilon,
                        "to_unpruned_best": against_unpruned_best(rows, args.epsilon)})


if __name__ == "__main__":
    main()
