"""Student-stage data path: the preprocessing cache vs decoding videos and GAFs on the fly.

Both paths serve the same samples with the same TSN sampling: the on-the-fly dataset is the
project's ``ClipDataset`` (same rows, same per-(seed, epoch, clip) generator, same segment
indices) whose items decode the chosen frames with PyAV, resize them, and compute every
sensor's GAF image, instead of reading the memory-mapped cache. ``max |Δ|`` compares one
batch of each (frames are identical; GAF images differ by the cache's float16 rounding).

Tables:

1. loader throughput — clips/s through the training ``DataLoader`` alone, median of
   ``--passes`` epochs, the two paths alternating;
2. student-stage training — ``--epochs`` epochs of ``StudentStage.run_epoch`` (training +
   validation), with the time spent inside the loaders' ``next()`` (waiting for data) against
   the stage's wall time (target: < 10 %);
3. one short trial through ``train()`` on the cache (teacher + student stages), split into data
   preparation (a cache hit), waiting for data, checkpoint / model writes and the rest.

The default config is the main search's trial (``experiments/synthetic_search.yaml``) on the
default synthetic dataset (8 classes × 8 subjects × 4 repetitions), written once under
``--workdir``. One torch thread (as a search trial), no loader workers (the configs' default).

    python benchmarks/data_path.py
    python benchmarks/data_path.py --workers 2 --epochs 5 --json runs/bench/data_path.json
    python benchmarks/data_path.py --quick        # tiny dataset, seconds
    python benchmarks/data_path.py --device cuda --set train.channels_last=true   # bf16: amp
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
import numpy as np

if TYPE_CHECKING:
    from sakdn.config import ExperimentConfig
    from sakdn.train.data import DataBundle

TARGET_WAIT = 0.10  # issue 8: < 10 % of a trial's wall time waiting for data


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "data_path")
    p.add_argument("--config", default=str(harness.REPO / "experiments/synthetic_search.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides (e.g. student.segments=8)")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--repetitions", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3, help="student epochs of tables 2 and 3")
    p.add_argument("--teacher-epochs", type=int, default=2, help="teacher epochs of table 3")
    p.add_argument("--passes", type=int, default=3, help="loader epochs per path in table 1")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (both paths)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where tables 2 and 3 train (train.amp / channels_last from --set)")
    args = p.parse_args()
    if args.quick:
        args.subjects, args.repetitions, args.passes = 4, 2, 1
        args.epochs, args.teacher_epochs = 1, 1
    return args


# --- the on-the-fly dataset -----------------------------------------------------------------


def decoding_dataset_class():
    """``ClipDataset`` whose items are decoded from the dataset's files (imports torch late)."""
    import torch

    from sakdn.data.dataset import ClipDataset
    from sakdn.data.registry import load_sensor
    from sakdn.data.video import (augment_frames, count_clip_frames, normalize_frames,
                                  read_clip_frames, resize_frames, tsn_indices)
    from sakdn.gaf import sensor_images

    class DecodingClipDataset(ClipDataset):
        """The same rows, labels and sampling as ``ClipDataset``; every item from the files.

        The cache keeps at most ``spec.max_frames`` frames per clip, uniformly subsampled;
        the same subsampling is applied here before the TSN indices are drawn.
        """

        def __init__(self, data, split, index, spec, segments: int, train: bool,
                     augment: bool = False, seed: int = 0) -> None:
            super().__init__(data, split, segments, train, augment, seed)
            by_key = {s.key: s for s in index.samples}
            self.samples = [by_key[data.sample_keys[r]] for r in self.rows]
            self.dataset, self.sensor_names, self.spec = index.dataset, index.sensor_names, spec

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            row, sample, spec = self.rows[i], self.samples[i], self.spec
            n = count_clip_frames(sample.video)
            keep = np.arange(n)
            if n > spec.max_frames:
                keep = np.linspace(0, n - 1, spec.max_frames).round().astype(int)
            rng = np.random.default_rng((self.seed, self.epoch, int(row))) if self.train else None
            idx = tsn_indices(len(keep), self.segments, train=self.train, rng=rng)
            frames = resize_frames(read_clip_frames(sample.video, keep[idx]), spec.frame_size)
            if self.train and self.augment:
                frames = augment_frames(frames, rng, frames.shape[1])
            size = spec.image_size
            sensors = torch.zeros(len(self.sensor_names), 3, size, size)
            mask = torch.zeros(len(self.sensor_names), dtype=torch.bool)
            present = dict(sample.sensors)
            for m, name in enumerate(self.sensor_names):
                if name in present:
                    signal = load_sensor(self.dataset, name, present[name])  # (T, 3)
                    x = torch.from_numpy(np.ascontiguousarray(signal.T[None], dtype=np.float64))
                    sensors[m] = sensor_images(x, size, spec.gaf_method,
                                               channel_scaling=spec.channel_scaling)[0]
                    mask[m] = True
            return {
                "frames": torch.from_numpy(normalize_frames(frames)),
                "sensors": sensors,
                "mask": mask,
                "label": torch.tensor(self.labels[i]),
            }

    return DecodingClipDataset


# --- timing the loaders ---------------------------------------------------------------------


class WaitClock:
    """Seconds spent inside loaders' ``next()`` while :meth:`patch` is active."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.batches = 0

    def wrap(self, loader):
        clock = self

        class Timed:
            def __len__(self) -> int:
                return len(loader)

            def __iter__(self) -> Iterator:
                it = iter(loader)
                while True:
                    start = time.perf_counter()
                    try:
                        batch = next(it)
                    except StopIteration:
                        clock.seconds += time.perf_counter() - start
                        return
                    clock.seconds += time.perf_counter() - start
                    clock.batches += 1
                    yield batch

        return Timed()

    @contextlib.contextmanager
    def patch(self, *modules) -> Iterator[WaitClock]:
        """Make every ``make_loader`` call in ``modules`` return a timed loader."""
        originals = [m.make_loader for m in modules]
        for module, original in zip(modules, originals):
            module.make_loader = lambda *a, _o=original, **k: self.wrap(_o(*a, **k))
        try:
            yield self
        finally:
            for module, original in zip(modules, originals):
                module.make_loader = original


@contextlib.contextmanager
def timed(module, name: str, totals: dict[str, float], label: str) -> Iterator[None]:
    """Add the seconds spent in ``module.name(...)`` to ``totals[label]`` while active."""
    original = getattr(module, name)

    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


# --- the measurements -----------------------------------------------------------------------


def setup(args: argparse.Namespace) -> tuple[ExperimentConfig, DataBundle]:
    """The config (dataset written, cache dir in the workdir) and its data bundle."""
    from sakdn.config import load_config, parse_overrides
    from sakdn.train.data import build_data

    params = dict(classes=8, subjects=args.subjects, repetitions=args.repetitions,
                  frame_size=64, duration=2.0)
    if args.quick:
        root, overrides = harness.tiny(args.workdir), harness.quick_sizes()
    else:
        root, overrides = harness.synthetic(args.workdir, **params), {}
    overrides.update({"data.root": str(root), "data.cache_dir": str(Path(args.workdir) / "cache"),
                      "data.num_workers": args.workers, "train.progress": False,
                      "train.num_threads": args.threads, "train.device": args.device})
    overrides.update(parse_overrides(args.set))
    config = load_config(args.config, overrides)
    return config, build_data(config)


def datasets(config: ExperimentConfig, bundle: DataBundle, split: str) -> dict[str, Any]:
    """The cached and the decoding dataset of one split, student-stage training sampling."""
    from sakdn.data.cache import PreprocessSpec
    from sakdn.data.dataset import ClipDataset

    sc, train = config.student, split == "train"
    part = getattr(bundle, split)
    kw = dict(train=train, augment=sc.augment and train, seed=config.train.seed)
    spec = PreprocessSpec.from_config(config)
    return {
        "cache": ClipDataset(bundle.data, part, sc.segments, **kw),
        "on the fly": decoding_dataset_class()(bundle.data, part, bundle.index, spec,
                                               sc.segments, **kw),
    }


def loader_throughput(config: ExperimentConfig, bundle: DataBundle,
                      args: argparse.Namespace) -> list[dict[str, Any]]:
    """Table 1: clips/s through the training loader, the paths alternating pass by pass."""
    import torch

    from sakdn.train.loop import make_loader

    sets = datasets(config, bundle, "train")
    rates: dict[str, list[float]] = {name: [] for name in sets}
    first: dict[str, dict] = {}
    for epoch in range(1, args.passes + 1):
        for name, ds in sets.items():
            ds.set_epoch(epoch)
            loader = make_loader(ds, config.student.batch_size, True, epoch, args.workers,
                                 torch.device("cpu"))
            start = time.perf_counter()
            seen = 0
            for batch in loader:
                seen += len(batch["label"])
                first.setdefault(name, batch)
            rates[name].append(seen / (time.perf_counter() - start))
    ref = first["cache"]
    rows = []
    for name, values in rates.items():
        rate = harness.median(values)
        delta = {k: float((first[name][k].float() - ref[k].float()).abs().max())
                 for k in ("frames", "sensors", "label")}
        rows.append({"path": name, "samples_per_s": rate, "ms_per_sample": 1000 / rate,
                     "speedup_vs_on_the_fly": rate / harness.median(rates["on the fly"]),
                     "max_abs_delta_vs_cache": delta, "passes": len(values),
                     "samples_per_pass": len(sets[name])})
    return rows


def student_stage(config: ExperimentConfig, bundle: DataBundle,
                  args: argparse.Namespace) -> list[dict[str, Any]]:
    """Table 2: short student-stage trainings, time inside the loaders' next() vs wall time."""
    import sakdn.train.student_stage as student_module
    from sakdn.seeding import seed_everything
    from sakdn.train.loop import RunContext, resolve_device
    from sakdn.train.attention import gsdm_plan
    from sakdn.train.student_stage import StudentStage
    from sakdn.train.teacher_stage import build_teachers

    rows = []
    for name in ("cache", "on the fly"):
        seed_everything(config.train.seed, config.train.deterministic)
        tc = config.train
        ctx = RunContext(device=resolve_device(tc.device), amp=tc.amp,
                         channels_last=tc.channels_last, seed=tc.seed, progress=False,
                         log=lambda m: None)
        teachers = build_teachers(config, bundle)  # untrained: the same cost as trained ones
        stage = StudentStage(config, bundle, ctx, teachers, gsdm_plan(config))
        if name == "on the fly":
            stage.train_set = datasets(config, bundle, "train")[name]
            stage.val_set = datasets(config, bundle, "val")[name] if stage.val_set else None
        clock = WaitClock()
        with clock.patch(student_module):
            start = time.perf_counter()
            for epoch in range(1, args.epochs + 1):
                stage.run_epoch(epoch)
            wall = time.perf_counter() - start
        trained = args.epochs * len(stage.train_set)
        rows.append({"path": name, "epochs": args.epochs, "wall_s": wall,
                     "data_wait_s": clock.seconds, "data_wait_share": clock.seconds / wall,
                     "train_samples_per_s": trained / wall, "batches": clock.batches,
                     "target_met": clock.seconds / wall < TARGET_WAIT})
    return rows


def trial_breakdown(config: ExperimentConfig, args: argparse.Namespace) -> dict[str, float]:
    """Table 3: where one short ``train()`` trial's wall time goes (cache path)."""
    import sakdn.train as train_package
    import sakdn.train.checkpoint as checkpoint_module
    import sakdn.train.student_stage as student_module
    import sakdn.train.teacher_stage as teacher_module

    config = config.replace({"teacher.epochs": args.teacher_epochs,
                             "student.epochs": args.epochs})
    workdir = harness.fresh_dir(Path(args.workdir) / "trial")
    totals: dict[str, float] = {}
    clock = WaitClock()
    with clock.patch(student_module, teacher_module), \
            timed(train_package, "build_data", totals, "data preparation (cache hit)"), \
            timed(checkpoint_module, "save", totals, "checkpoint and model writes"):
        start = time.perf_counter()
        train_package.train(config, workdir=workdir, log=lambda m: None)
        wall = time.perf_counter() - start
    totals["waiting for data (loaders' next())"] = clock.seconds
    totals["compute and the rest"] = wall - sum(totals.values())
    totals["trial wall time"] = wall
    return totals


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    config, bundle = setup(args)
    print(f"{len(bundle.train)} training / {len(bundle.val)} validation clips, "
          f"{config.student.segments} segments of {config.data.frame_size}², "
          f"{bundle.num_sensors} sensors → {config.gaf.image_size}² GAF, "
          f"batch {config.student.batch_size}, workers {args.workers}, "
          f"torch threads {args.threads}, device {args.device}", flush=True)

    loader = loader_throughput(config, bundle, args)
    harness.print_table(
        f"Loader throughput, student training sampling (median of {args.passes} passes)",
        ["path", "samples/s", "ms/sample", "× on the fly", "max abs Δ frames", "max abs Δ GAF"],
        [[r["path"], r["samples_per_s"], r["ms_per_sample"], f"{r['speedup_vs_on_the_fly']:.1f}×",
          r["max_abs_delta_vs_cache"]["frames"], r["max_abs_delta_vs_cache"]["sensors"]]
         for r in loader],
    )
    stage = student_stage(config, bundle, args)
    harness.print_table(
        f"Student stage, {args.epochs} epoch(s) of training + validation",
        ["path", "wall s", "waiting for data s", "waiting share", "train samples/s",
         "< 10 %"],
        [[r["path"], r["wall_s"], r["data_wait_s"], f"{100 * r['data_wait_share']:.1f} %",
          r["train_samples_per_s"], "yes" if r["target_met"] else "no"] for r in stage],
    )
    trial = trial_breakdown(config, args)
    wall = trial["trial wall time"]
    harness.print_table(
        f"One trial through train() on the cache ({args.teacher_epochs} teacher + "
        f"{args.epochs} student epochs)",
        ["part", "seconds", "share"],
        [[k, v, f"{100 * v / wall:.1f} %"] for k, v in trial.items()],
    )
    harness.write_json(args.json, "data_path", args,
                       {"loader": loader, "student_stage": stage, "trial": trial})


if __name__ == "__main__":
    main()
