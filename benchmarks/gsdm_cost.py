"""What each GSDM weighting costs per student epoch, side by side on the same data.

Builds the experiment's data and one teacher set (trained for ``--teacher-epochs``), then times
student epochs of CE only and of the full objective under each ``distill.ablation_weight``,
round-robin (one epoch of each variant per round, ``--rounds`` rounds), so that a slower or
busier moment of the machine hits every variant alike. No teacher store: every epoch computes
the teachers' outputs and maps too, as a first trial of a teacher set does. The ratio column
divides by the ``plain`` epoch (the reference UTD weighting).

For context it also times exact Ablation-CAM on one student batch: every channel of every GSDM
stage zeroed in turn (a batched forward pass of the rest of the network per stage), the cost
that the first-order estimate of ``ablation_cam`` avoids.

    python benchmarks/gsdm_cost.py
    python benchmarks/gsdm_cost.py --rounds 5 --json runs/bench/gsdm_cost.json
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

VARIANTS = {
    "CE only": {"distill.lambda_st": 0.0, "distill.lambda_sp": 0.0, "distill.lambda_gsdm": 0.0},
    "none (w = 1)": {"distill.ablation_weight": "none"},
    "plain": {"distill.ablation_weight": "plain"},
    "graph": {"distill.ablation_weight": "graph"},
    "ablation_cam": {"distill.ablation_weight": "ablation_cam"},
}


def exact_ablation_seconds(stage, batch, pairs) -> float:
    """Seconds for exact channel ablation of the student on one batch: for each GSDM stage,
    every channel zeroed in every segment, the rest of the network run on all of them at once."""
    model = stage.model.eval()
    frames = batch["frames"]
    b, s = frames.shape[:2]
    start = time.perf_counter()
    with torch.no_grad():
        outs = model.backbone.forward_intermediates(frames.flatten(0, 1))
        for p in pairs:
            act = outs[p]  # (B·S, C, H, W)
            c = act.shape[1]
            x = act.unsqueeze(0).repeat(c, 1, 1, 1, 1)  # (C, B·S, C, H, W)
            x[torch.arange(c), :, torch.arange(c)] = 0.0  # copy k has channel k zeroed
            x = x.flatten(0, 1)
            for later in model.backbone.stages[p + 1:]:
                x = later(x)
            f = model.fc(model.dropout(x.mean(dim=(2, 3)))).view(c * b, s, -1)
            model.consensus(f)
    model.train()
    return time.perf_counter() - start


def main() -> None:
    p = harness.parser(__doc__, "gsdm_cost")
    p.add_argument("--experiment", default=str(harness.REPO / "experiments" / "synthetic.yaml"))
    p.add_argument("--rounds", type=int, default=3, help="epochs of each variant, interleaved")
    p.add_argument("--teacher-epochs", type=int, default=4)
    args = p.parse_args()
    harness.set_threads(args.threads)
    from sakdn.config import load_config
    from sakdn.train.attention import gsdm_plan
    from sakdn.train.data import build_data
    from sakdn.train.loop import RunContext
    from sakdn.train.student_stage import StudentStage
    from sakdn.train.teacher_stage import TeacherStage

    work = Path(args.workdir)
    rounds = 1 if args.quick else args.rounds
    overrides = {"train.progress": False, "data.cache_dir": str(work / "cache"),
                 "teacher.epochs": 1 if args.quick else args.teacher_epochs}
    if args.quick:
        overrides.update({"data.root": str(harness.tiny(work)), **harness.quick_sizes(),
                          "student.width": 8, "teacher.width": 8})
    base = load_config(args.experiment, overrides)
    ctx = RunContext(torch.device("cpu"), False, False, 0, False, log=lambda m: None)
    bundle = build_data(base)
    teacher_stage = TeacherStage(base, bundle, ctx)
    for epoch in range(1, base.teacher.epochs + 1):
        teacher_stage.run_epoch(epoch)
    teachers = teacher_stage.model.eval()

    stages = {}
    for name, settings in VARIANTS.items():
        config = base.replace(settings)
        torch.manual_seed(0)
        stages[name] = StudentStage(config, bundle, ctx, teachers, gsdm_plan(config))
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(1, rounds + 1):
        for name, stage in stages.items():
            start = time.perf_counter()
            stage.run_epoch(r)
            seconds[name].append(time.perf_counter() - start)

    plain = statistics.median(seconds["plain"])
    rows, results = [], []
    batches = math.ceil(len(stages["plain"].train_set) / base.student.batch_size)
    for name, values in seconds.items():
        med = statistics.median(values)
        rows.append([name, med, med / batches * 1000, med / plain])
        results.append({"variant": name, "epoch_seconds": values, "median": med,
                        "ratio_to_plain": med / plain})
    full = stages["ablation_cam"]
    batch = torch.utils.data.default_collate(
        [full.train_set[i] for i in range(base.student.batch_size)])
    exact = exact_ablation_seconds(full, batch, full.plan.pairs)
    rows.append(["exact channel ablation (student only)", exact * batches, exact * 1000,
                 exact * batches / plain])
    results.append({"variant": "exact", "batch_seconds": exact, "batches": batches})
    harness.print_table(
        f"Student epoch cost per GSDM weighting ({Path(args.experiment).name}, {batches} batches "
        f"of {base.student.batch_size}, median of {rounds} interleaved epochs, "
        f"{args.threads} thread)",
        ["variant", "s / epoch", "ms / batch", "× plain"], rows)
    harness.write_json(args.json, "gsdm_cost", args, results)


if __name__ == "__main__":
    main()
