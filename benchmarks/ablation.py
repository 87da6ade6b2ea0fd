"""What each SAKDN term buys: student validation accuracy per loss ablation, over seeds.

Trains, on the experiment's data (default: the synthetic dataset), the student with CE only,
CE + ST, CE + SP, CE + GSDM and the full SAKDN objective, and the teachers with and without
SPAMFM, for several seeds; prints a table of best validation accuracy (mean ± std).
Student variants of one seed share one trained teacher set (the teacher store), so each
comparison sees the same teachers, and the student's initial weights depend on the seed only.

    python benchmarks/ablation.py --seeds 0 1 2
    python benchmarks/ablation.py --seeds 0 1 2 3 4 --jobs 2      # two seeds at a time
    python benchmarks/ablation.py --extra "ST (T 2)=distill.lambda_st=0.5,distill.temperature=2"

``--extra NAME=KEY=VALUE[,KEY=VALUE…]`` adds a student variant: CE only plus those settings
(e.g. a term at another weight than the full objective's). ``--jobs N`` trains N seeds in
parallel processes, each with one torch thread (``train.num_threads=1``); results then match a
``--jobs 1`` run only when that run also sets ``train.num_threads=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from sakdn.config import ExperimentConfig, load_config, parse_overrides
from sakdn.errors import ConfigError
from sakdn.train import train

ZERO = {"distill.lambda_st": 0.0, "distill.lambda_sp": 0.0, "distill.lambda_gsdm": 0.0,
        "distill.lambda_sp_gram": 0.0}


def student_variants(full: dict, extra: dict[str, dict] | None = None) -> dict[str, dict]:
    """CE only, each term alone with its full-objective weight, everything together, extras."""
    variants = {
        "CE only": dict(ZERO),
        "CE + ST": {**ZERO, "distill.lambda_st": full["distill.lambda_st"]},
        "CE + SP": {**ZERO, "distill.lambda_sp": full["distill.lambda_sp"]},
        "CE + GSDM": {**ZERO, "distill.lambda_gsdm": full["distill.lambda_gsdm"]},
        "full SAKDN": {},
    }
    for name, settings in (extra or {}).items():
        variants[name] = {**ZERO, **settings}
    return variants


def parse_extra(specs: list[str]) -> dict[str, dict]:
    """``NAME=KEY=VALUE[,KEY=VALUE…]`` → {NAME: {KEY: VALUE}} (values parsed like ``--set``)."""
    extra: dict[str, dict] = {}
    for spec in specs:
        name, sep, settings = spec.partition("=")
        if not sep or not name.strip() or not settings:
            raise ConfigError("--extra", spec, "expected NAME=KEY=VALUE[,KEY=VALUE...]")
        extra[name.strip()] = parse_overrides(settings.split(","))
    return extra


def run_seed(base: ExperimentConfig, seed: int, extra: dict[str, dict], out: Path) -> dict:
    """Every variant for one seed: {row name: best validation accuracy}."""
    store = out / "teacher_store"
    flat = base.to_flat()
    rows: dict[str, float] = {}

    def run(name: str, overrides: dict) -> dict:
        config = base.replace({**overrides, "train.seed": seed})
        workdir = out / f"{name.replace(' ', '_').replace('+', 'plus')}_seed{seed}"
        started = time.time()
        result = train(config, workdir=workdir, teacher_store=store, log=lambda m: None)
        print(f"  {name:<22} seed {seed}: student {result.metrics.get('student/val_acc', 0):.3f} "
              f"teachers {result.metrics.get('teacher/val_acc', 0):.3f} "
              f"({time.time() - started:.0f} s)", flush=True)
        return result.metrics

    for name, overrides in student_variants(flat, extra).items():
        metrics = run(name, overrides)
        rows[f"student: {name}"] = metrics["student/val_acc"]
        if name == "full SAKDN":
            rows["teachers: with SPAMFM"] = metrics["teacher/val_acc"]
    metrics = run("teachers without SPAMFM", {"teacher.spamfm_stages": "none", "student.epochs": 1})
    rows["teachers: without SPAMFM"] = metrics["teacher/val_acc"]
    return rows


def table(rows: dict[str, list[float]]) -> str:
    """Markdown rows: mean and sample std per variant; students first, then teachers, and the
    paired difference to CE only (same seed, same teachers, same initial student)."""
    ordered = sorted(rows, key=lambda name: not name.startswith("student:"))
    base = rows.get("student: CE only")
    lines = [f"| {'model':<28} | {'mean':>6} | {'std':>6} | {'vs CE only (wins)':>17} | runs |",
             f"|{'-' * 30}|{'-' * 8}|{'-' * 8}|{'-' * 19}|------|"]
    for name in ordered:
        values = rows[name]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        paired = ""
        if base and name.startswith("student:") and name != "student: CE only":
            diff = [v - b for v, b in zip(values, base)]
            paired = f"{statistics.mean(diff):+.3f} ({sum(d > 0 for d in diff)}/{len(diff)})"
        lines.append(f"| {name:<28} | {statistics.mean(values):6.3f} | {std:6.3f} | "
                     f"{paired:>17} | {len(values):4d} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/synthetic.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--extra", action="append", default=[], metavar="NAME=KEY=VALUE,...")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained at a time")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args()

    overrides = parse_overrides(args.set)
    if args.jobs > 1:
        overrides = {"train.num_threads": 1, **overrides}
    base = load_config(args.config, overrides=overrides).replace({"train.progress": False})
    extra = parse_extra(args.extra)
    out = Path(args.out)
    started, load = time.time(), os.getloadavg()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            per_seed = list(pool.map(run_seed, *zip(*[(base, s, extra, out) for s in args.seeds])))
    else:
        per_seed = [run_seed(base, s, extra, out) for s in args.seeds]
    rows: dict[str, list[float]] = {}
    for result in per_seed:
        for name, value in result.items():
            rows.setdefault(name, []).append(value)

    print(f"\nvalidation accuracy over seeds {args.seeds} ({time.time() - started:.0f} s; "
          f"load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    print(f"config: {args.config} {' '.join(args.set)}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
