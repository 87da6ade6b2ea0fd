"""What each SAKDN term buys: student validation accuracy per loss ablation, over seeds.

Trains, on the experiment's data (default: the synthetic dataset), the student with CE only,
CE + ST, CE + SP, CE + GSDM and the full SAKDN objective, and the teachers with and without
SPAMFM, for several seeds; prints a table of best validation accuracy (mean ± std).
Student variants of one seed share one trained teacher set (the teacher store), so each
comparison sees the same teachers.

    python benchmarks/ablation.py --seeds 0 1 2
    python benchmarks/ablation.py --config experiments/synthetic.yaml --set student.epochs=10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sakdn.config import load_config, parse_overrides
from sakdn.train import train

ZERO = {"distill.lambda_st": 0.0, "distill.lambda_sp": 0.0, "distill.lambda_gsdm": 0.0,
        "distill.lambda_sp_gram": 0.0}


def student_variants(full: dict) -> dict[str, dict]:
    """CE only, each term alone with its full-objective weight, and everything together."""
    return {
        "CE only": dict(ZERO),
        "CE + ST": {**ZERO, "distill.lambda_st": full["distill.lambda_st"]},
        "CE + SP": {**ZERO, "distill.lambda_sp": full["distill.lambda_sp"]},
        "CE + GSDM": {**ZERO, "distill.lambda_gsdm": full["distill.lambda_gsdm"]},
        "full SAKDN": {},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/synthetic.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args()

    base = load_config(args.config, overrides=parse_overrides(args.set))
    base = base.replace({"train.progress": False})
    flat = base.to_flat()
    out = Path(args.out)
    store = out / "teacher_store"
    rows: dict[str, list[float]] = {}
    started = time.time()

    def run(name: str, seed: int, overrides: dict) -> dict:
        config = base.replace({**overrides, "train.seed": seed})
        workdir = out / f"{name.replace(' ', '_').replace('+', 'plus')}_seed{seed}"
        result = train(config, workdir=workdir, teacher_store=store, log=lambda m: None)
        print(f"  {name:<22} seed {seed}: student {result.metrics.get('student/val_acc', 0):.3f} "
              f"teachers {result.metrics.get('teacher/val_acc', 0):.3f}", flush=True)
        return result.metrics

    for seed in args.seeds:
        for name, overrides in student_variants(flat).items():
            metrics = run(name, seed, overrides)
            rows.setdefault(f"student: {name}", []).append(metrics["student/val_acc"])
            if name == "full SAKDN":
                rows.setdefault("teachers: with SPAMFM", []).append(metrics["teacher/val_acc"])
        metrics = run("teachers without SPAMFM", seed,
                      {"teacher.spamfm_stages": "none", "student.epochs": 1})
        rows.setdefault("teachers: without SPAMFM", []).append(metrics["teacher/val_acc"])

    print(f"\nvalidation accuracy over seeds {args.seeds} ({time.time() - started:.0f} s)")
    print(f"config: {args.config} {' '.join(args.set)}")
    print(f"| {'model':<28} | {'mean':>6} | {'std':>6} | runs |")
    print(f"|{'-' * 30}|{'-' * 8}|{'-' * 8}|------|")
    for name, values in rows.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name:<28} | {statistics.mean(values):6.3f} | {std:6.3f} | {len(values):4d} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
