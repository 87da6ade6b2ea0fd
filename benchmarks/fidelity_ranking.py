"""Which cheap signal ranks a search's configurations as the objective does? Spearman's ρ against
the objective of *another* training seed, beside the objective's own seed-to-seed agreement.

A pruner, or a low-fidelity screen, can only save compute on the way to the best configuration
if its signal ranks configurations as their full training does. But the full training's value
(the main job's objective, a trial's best validation accuracy) is itself a noisy draw: another
training seed gives another value. This script measures both on the same configurations:

- **the ceiling**: ρ between the objective at training seed 0 and at seed 1: a cheap signal
  from seed 0's runs that ranks seed 1's results as well is as good as a whole trial;
- **early epochs**: ρ between seed 0's validation accuracy (and mean true-class probability)
  at student epoch e and seed 1's objective: what an epoch-based pruner deciding at e sees;
- **low fidelities** (``--low KEY=VALUE``, several allowed): each configuration trained at seed 0
  with those keys changed (fewer segments, a narrower student, …), its objective against seed 1's
  full objective, with the cost of its student epochs against the full ones, measured side by
  side in the same run;

each with its 95 % interval (Fisher's z, ``sakdn.stats.spearman``). Seed 1
is the reference everywhere so that no signal is credited with seed 0's own noise.

The configurations are those of recorded searches (``--storage`` and ``--studies``: the
unpruned searches of ``search_efficiency.py --data main --methods none``, whose Optuna studies
it keeps in ``<workdir>/searches/optuna.db``), or ``--sample N`` drawn at random from the
experiment's search space. Each is trained outside any search with the experiment's settings
(``sakdn.train.train``), two trainings at a time with one thread each, as the main job runs.

    python benchmarks/fidelity_ranking.py \\
        --storage runs/bench/search_efficiency_main/searches/optuna.db \\
        --studies none_r0 none_r1 none_r2
    python benchmarks/fidelity_ranking.py --sample 20
    python benchmarks/fidelity_ranking.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
FULL = "full"
# signals come from OTHER_SEED's runs and are judged against REFERENCE_SEED's objective
REFERENCE_SEED, OTHER_SEED = 1, 0
SIGNALS = harness.VALIDATION_SIGNALS
DEFAULT_LOW = ["student.segments=2", "student.width=8"]
DEFAULT_EPOCHS = [3, 5, 8, 10]
NAN = float("nan")


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n\n")[0], "fidelity_ranking")
    p.add_argument("--experiment", default=str(EXPERIMENT))
    p.add_argument("--storage", help="an Optuna SQLite file holding the searches' studies")
    p.add_argument("--studies", nargs="+", default=[], help="study names in --storage")
    p.add_argument("--sample", type=int, default=0,
                   help="configurations drawn at random from the search space instead")
    p.add_argument("--space", help="the search space of --sample (default: the experiment's)")
    p.add_argument("--sample-seed", type=int, default=0,
                   help="the random sampler's seed for --sample (another seed: another pool)")
    p.add_argument("--low", action="append", metavar="KEY=VALUE[,KEY=VALUE]",
                   help=f"a low fidelity: keys changed from the full training "
                        f"(default: {' and '.join(DEFAULT_LOW)}, one fidelity each; "
                        "'none': the full fidelity only)")
    p.add_argument("--epochs", type=int, nargs="+", default=DEFAULT_EPOCHS,
                   help="student epochs whose validation values are ranked")
    p.add_argument("--workers", type=int, default=2, help="trainings at a time")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more overrides for every training")
    p.add_argument("--from-json", metavar="PATH", help="print an earlier run's tables")
    p.add_argument("--against", metavar="PATH",
                   help="with --from-json: another run of the same configurations; prints how "
                        "much more reproducible each candidate objective is in --from-json's")
    args = p.parse_args()
    if args.low is None:
        args.low = ["student.segments=1"] if args.quick else DEFAULT_LOW
    elif args.low == ["none"]:
        args.low = []
    if args.quick:
        args.sample, args.studies, args.epochs = args.sample or 4, [], [1, 2]
    if not args.from_json and not args.sample and not (args.storage and args.studies):
        p.error("give --storage and --studies, or --sample N (or --quick)")
    return args


def parse_keys(text: str) -> dict[str, Any]:
    """``"a=1,b=2"`` as ``{"a": 1, "b": 2}`` (a fidelity's keys), typed as ``--set`` types them."""
    from sakdn.config import parse_overrides

    return dict(parse_overrides(text.split(",")))


def configurations(args: argparse.Namespace, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The sampled keys of each configuration: the studies' trials, or random draws."""
    import optuna

    from sakdn.search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.sample:
        space = load_space(args.space or _experiment_space(args.experiment))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.sample_seed))
        return [space.suggest(study.ask(), base) for _ in range(args.sample)]
    storage = f"sqlite:///{Path(args.storage).resolve()}"
    out = []
    for name in args.studies:
        study = optuna.load_study(study_name=name, storage=storage)
        out += [dict(t.params) for t in study.trials]
    return out


def _experiment_space(experiment: str) -> Path:
    import yaml

    named = (yaml.safe_load(Path(experiment).read_text()) or {}).get("search", {}).get("space")
    if not named:
        raise SystemExit(f"{experiment}: no search.space; give --space")
    return harness.REPO / named


def jobs(args: argparse.Namespace, base: dict[str, Any], configs: list[dict[str, Any]],
         fidelities: dict[str, dict[str, str]], root: Path) -> list[dict[str, Any]]:
    """Every training: the full fidelity at both seeds, each low one at the signal seed;
    configuration by configuration, so the machine's slow spells fall on all fidelities alike."""
    out = []
    for i, sampled in enumerate(configs):
        for name, keys in fidelities.items():
            seeds = (OTHER_SEED, REFERENCE_SEED) if name == FULL else (OTHER_SEED,)
            for seed in seeds:
                flat = {**base, **sampled, **keys, "train.seed": seed, "train.progress": False,
                        "train.num_threads": args.threads, "train.evaluate_test": True}
                out.append({"config": i, "fidelity": name, "seed": seed, "flat": flat,
                            "workdir": str(root / f"c{i:03d}_{_slug(name)}_s{seed}"),
                            "store": str(root / "teachers")})
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sakdn.config import load_config, parse_overrides
    from sakdn.train.data import build_data

    overrides: dict[str, Any] = {}
    if args.quick:
        overrides.update({**harness.quick_sizes(), "data.root": str(harness.tiny(args.workdir)),
                          "teacher.epochs": 1, "student.epochs": 3, "student.width": 4})
        args.space = args.space or str(harness.REPO / "search_spaces" / "smoke.yaml")
    overrides.update(parse_overrides(args.set))
    config = load_config(args.experiment).replace(overrides, file="--set")
    base = config.to_flat()
    build_data(config, log=lambda m: None)  # written once, before the trainings share it
    configs = configurations(args, base)
    fidelities = {FULL: {}, **{low: parse_keys(low) for low in args.low}}
    for keys in fidelities.values():  # a bad key fails here, before any training
        config.replace(keys, file="--low")
    root = harness.fresh_dir(Path(args.workdir) / "runs")
    todo = jobs(args, base, configs, fidelities, root)
    started = time.time()
    done = harness.train_runs(todo, args.workers)
    return {"configs": configs, "fidelities": list(fidelities), "epochs": args.epochs,
            "runs": done, "wall_s": time.time() - started}


def curves_of(results: dict[str, Any], fidelity: str, seed: int, signal: str) -> list[list[float]]:
    """Per configuration (in order), one run's curve of ``signal``."""
    runs = {r["config"]: r for r in results["runs"]
            if r["fidelity"] == fidelity and r["seed"] == seed}
    return [runs[i]["curves"][signal] for i in range(len(results["configs"]))]


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per signal: ρ with the reference seed's full objective, its interval, and the
    cost of the signal against a full training (student epochs only)."""
    from sakdn.stats import spearman

    acc = "student/val_acc"
    reference = [harness.best_of_curve(c) for c in curves_of(results, FULL, REFERENCE_SEED, acc)]
    full_epochs = len(curves_of(results, FULL, OTHER_SEED, acc)[0])
    out = []

    def add(signal: str, values: list[float], cost: float) -> None:
        rho = spearman(values, reference)
        out.append({"signal": signal, "rho": rho.rho, "low": rho.low, "high": rho.high,
                    "cost": cost, "n": rho.n})

    add(f"objective at seed {OTHER_SEED} (full; the ceiling)",
        [harness.best_of_curve(c) for c in curves_of(results, FULL, OTHER_SEED, acc)], 1.0)
    for epoch in results["epochs"]:
        if epoch > full_epochs:
            continue
        for signal in SIGNALS:
            values = [c[epoch - 1] for c in curves_of(results, FULL, OTHER_SEED, signal)]
            add(f"{signal} at student epoch {epoch}", values, epoch / full_epochs)
    for fidelity in results["fidelities"]:
        if fidelity == FULL:
            continue
        values = [harness.best_of_curve(c) for c in curves_of(results, fidelity, OTHER_SEED, acc)]
        add(f"objective at {fidelity}", values,
            _student_seconds(results, fidelity) / _student_seconds(results, FULL))
    return out


def _student_seconds(results: dict[str, Any], fidelity: str) -> float:
    """A training's student stage at ``fidelity``: its median epoch's seconds times its epochs
    (a fidelity may change the epochs, ``student.epochs=…``, as well as an epoch's cost)."""
    epochs = len(curves_of(results, fidelity, OTHER_SEED, "student/val_acc")[0])
    return _median_epoch_s(results, fidelity) * epochs


def candidate_objectives() -> dict[str, Any]:
    """Trial objectives a search could maximise, each from a run (its curves and summary): the
    main job's (the best validation epoch) and smoother ones (late means, the continuous
    true-class probability); and, to tell the validation split's size from the training's own
    chaos, the kept model's accuracy on the larger test split (measured, never selected on)."""
    from sakdn.train.metrics import LATE_EPOCHS, late_mean

    acc, p_true = SIGNALS
    return {
        f"best {acc} (the main job's)": lambda r: harness.best_of_curve(r["curves"][acc]),
        f"mean {acc} of the last {LATE_EPOCHS} epochs": lambda r: late_mean(r["curves"][acc]),
        f"best {p_true}": lambda r: harness.best_of_curve(r["curves"][p_true]),
        f"mean {p_true} of the last {LATE_EPOCHS} epochs":
            lambda r: late_mean(r["curves"][p_true]),
        "student/test_acc of the kept model": lambda r: r["metrics"].get("student/test_acc", NAN),
        "student/test_p_true of the kept model":
            lambda r: r["metrics"].get("student/test_p_true", NAN),
    }


def _objectives_by_seed(results: dict[str, Any], of: Any) -> tuple[list[float], list[float]]:
    """One candidate objective of every configuration's full runs, at the two seeds."""
    runs = {(r["config"], r["seed"]): {"metrics": {}, **r} for r in results["runs"]
            if r["fidelity"] == FULL}
    configs = range(len(results["configs"]))
    return ([of(runs[i, OTHER_SEED]) for i in configs],
            [of(runs[i, REFERENCE_SEED]) for i in configs])


def reproducibility(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per candidate objective, ρ between the two training seeds' full runs: how much of its
    spread over configurations is the configuration rather than the seed."""
    from sakdn.stats import spearman

    out = []
    for name, of in candidate_objectives().items():
        rho = spearman(*_objectives_by_seed(results, of))
        out.append({"objective": name, "rho": rho.rho, "low": rho.low, "high": rho.high})
    return out


def reproducibility_change(results: dict[str, Any], against: dict[str, Any],
                           draws: int = 2000) -> list[dict[str, Any]]:
    """Per candidate objective, how much more reproducible it is in ``results`` than in
    ``against`` (two runs of the same configurations, e.g. a longer student stage against the
    main job's): ρ₁ − ρ₂ with a paired bootstrap interval over the configurations."""
    from sakdn.stats import spearman_difference

    out = []
    for name, of in candidate_objectives().items():
        d = spearman_difference(*_objectives_by_seed(results, of),
                                *_objectives_by_seed(against, of), draws=draws)
        out.append({"objective": name, "difference": d.difference, "low": d.low,
                    "high": d.high, "n": d.n})
    return out


def _median_epoch_s(results: dict[str, Any], fidelity: str) -> float:
    return statistics.median(s for r in results["runs"] if r["fidelity"] == fidelity
                             for s in r["student_epoch_s"])


def _signed(value: float) -> str:
    return "-" if value != value else f"{value:+.2f}"


def print_tables(results: dict[str, Any]) -> None:
    n = len(results["configs"])
    harness.print_table(
        f"Spearman's ρ with the objective (best student/val_acc, full fidelity) at training seed "
        f"{REFERENCE_SEED}, {n} configurations, 95 % interval",
        ["signal (from seed %d's runs)" % OTHER_SEED, "ρ", "95 % interval",
         "cost (of a full trial's student epochs)"],
        [[r["signal"], _signed(r["rho"]), f"[{_signed(r['low'])}, {_signed(r['high'])}]",
          f"{100 * r['cost']:.0f} %"] for r in rows(results)])
    harness.print_table(
        f"Each candidate objective at training seeds {OTHER_SEED} and {REFERENCE_SEED} (full "
        f"fidelity, {n} configurations): Spearman's ρ, 95 % interval",
        ["objective", "ρ", "95 % interval"],
        [[r["objective"], _signed(r["rho"]), f"[{_signed(r['low'])}, {_signed(r['high'])}]"]
         for r in reproducibility(results)])
    acc = "student/val_acc"
    for fidelity in results["fidelities"]:
        seeds = (OTHER_SEED, REFERENCE_SEED) if fidelity == FULL else (OTHER_SEED,)
        for seed in seeds:
            values = [harness.best_of_curve(c) for c in curves_of(results, fidelity, seed, acc)]
            print(f"{fidelity}, seed {seed}: objective mean {statistics.mean(values):.3f}, "
                  f"range {min(values):.3f}–{max(values):.3f}; student epoch "
                  f"{_median_epoch_s(results, fidelity):.2f} s (median)")
    print(f"wall: {results['wall_s']:.0f} s")


def print_change(results: dict[str, Any], against: dict[str, Any],
                 args: argparse.Namespace) -> None:
    from sakdn.stats import paired

    if results["configs"] != against["configs"]:
        raise SystemExit(f"--against: {args.against} trained other configurations than "
                         f"{args.from_json}; ρ can only be compared over the same ones")
    harness.print_table(
        f"Each candidate objective's seed-to-seed ρ in {args.from_json} less that in "
        f"{args.against} (the same {len(results['configs'])} configurations), paired bootstrap "
        "95 % interval over the configurations",
        ["objective", "ρ difference", "95 % interval"],
        [[r["objective"], _signed(r["difference"]), f"[{_signed(r['low'])}, {_signed(r['high'])}]"]
         for r in reproducibility_change(results, against)])
    main_job = next(iter(candidate_objectives().values()))
    mine, theirs = (_objectives_by_seed(r, main_job) for r in (results, against))
    level = paired([(a + b) / 2 for a, b in zip(*mine)], [(a + b) / 2 for a, b in zip(*theirs)])
    print(f"The objective itself (best student/val_acc, mean of the two seeds) moves by "
          f"{level.mean:+.3f} [{level.ci_low:+.3f}, {level.ci_high:+.3f}] (paired over the "
          f"configurations, t interval).")


def main() -> None:
    args = parse_args()
    if args.from_json:
        import json

        results = json.loads(Path(args.from_json).read_text())["results"]
        print_tables(results)
        if args.against:
            print_change(results, json.loads(Path(args.against).read_text())["results"], args)
        return
    results = run(args)
    print_tables(results)
    harness.write_json(args.json, "fidelity_ranking", args, results)


if __name__ == "__main__":
    main()
