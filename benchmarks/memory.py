"""Memory: peak RSS of one trial and its growth with dataset size; the cache is never copied.

For synthetic datasets of growing size (``--subjects``, default 4 / 8 / 16 subjects of the
default 8 classes × 4 repetitions), with the preprocessing cache built first (as a search's
driver does), two child processes per size report their memory from ``/proc/self/status``
(``VmHWM`` = peak resident set; ``RssAnon`` = private memory; ``RssFile`` = pages of mapped
files, which the page cache shares between processes) and ``resource.getrusage``:

- ``trial``: one short ``train()`` (the main search's experiment, 1 teacher + 1 student epoch);
- ``scan``: opens the cache and reads every byte of it (all clips' frames, all GAF images)
  through the memory maps, then every student-stage item of every split.

A cache that were copied into each trial would add its size to ``RssAnon``; read through the
maps it shows in ``RssFile`` only. Target: the scan's ``RssAnon`` growth stays well below the
cache size (< 10 %), and a trial's private memory grows far slower than the dataset.

    python benchmarks/memory.py
    python benchmarks/memory.py --subjects 4 8 16 32
    python benchmarks/memory.py --malloc-trim       # glibc trims freed heap memory at once
    python benchmarks/memory.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness

if TYPE_CHECKING:
    from sakdn.config import ExperimentConfig

EXPERIMENT = harness.REPO / "experiments" / "synthetic_search.yaml"
COPY_LIMIT = 0.10  # RssAnon growth of a full cache scan, as a share of the cache size
FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "memory")
    p.add_argument("--subjects", type=int, nargs="+",
                   help="dataset sizes (default 4 8 16; with --quick 2 4)")
    p.add_argument("--malloc-trim", action="store_true",
                   help="run the children with MALLOC_TRIM_THRESHOLD_=0 (glibc returns freed "
                        "heap memory to the system at once)")
    p.add_argument("--child", choices=("trial", "scan"), help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--config", default=str(EXPERIMENT), help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.subjects:
        args.subjects = [2, 4] if args.quick else [4, 8, 16]
    return args


def status() -> dict[str, float]:
    """This process's memory, MB: VmHWM, VmRSS, RssAnon, RssFile, and ru_maxrss."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0]) / 1024  # kB
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return out


# --- the children ---------------------------------------------------------------------------


def config_for(args: argparse.Namespace, root: str) -> ExperimentConfig:
    from sakdn.config import load_config

    keys = {"data.root": root, "train.progress": False, "train.num_threads": args.threads,
            "teacher.epochs": 1, "student.epochs": 1, "train.device": "cpu"}
    if args.quick:
        keys.update(harness.quick_sizes())
    return load_config(args.config, keys)


def child_trial(args: argparse.Namespace) -> dict[str, Any]:
    from sakdn.train import train

    config = config_for(args, args.root)
    before = status()
    start = time.perf_counter()
    workdir = harness.fresh_dir(Path(args.workdir) / "trial")
    train(config, workdir=workdir, log=lambda m: None)
    return {"before": before, "after": status(), "seconds": time.perf_counter() - start}


def child_scan(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from sakdn.data.dataset import ClipDataset, RecordingDataset
    from sakdn.train.data import build_data

    config = config_for(args, args.root)
    bundle = build_data(config)  # a cache hit: opens the memory maps
    data = bundle.data
    before = status()
    checksum = 0
    for row in range(len(data.sample_keys)):  # every frame of every clip, through the map
        checksum += int(data.clip(row).sum(dtype=np.uint64))
    gaf_sum = float(sum(float(data.gaf[r].sum(dtype=np.float64)) for r in range(len(data.gaf))))
    touched = status()
    for split in (bundle.train, bundle.val, bundle.test):
        for ds in (ClipDataset(data, split, config.student.segments, train=True),
                   RecordingDataset(data, split)):
            for i in range(len(ds)):
                ds[i]
    return {"before": before, "touched": touched, "after": status(), "checksum": checksum,
            "gaf_sum": gaf_sum, "cache_mb": cache_bytes(data.path) / 2**20}


def cache_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).glob("*.npy"))


def run_child(args: argparse.Namespace, mode: str, root: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--root", str(root),
           "--workdir", str(args.workdir), "--threads", str(args.threads),
           "--config", str(args.config)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, **({"MALLOC_TRIM_THRESHOLD_": "0"} if args.malloc_trim else {}))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"memory child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the parent -----------------------------------------------------------------------------


def dataset(args: argparse.Namespace, subjects: int) -> Path:
    if args.quick:
        from sakdn.data.synthetic import PRESETS

        return harness.synthetic(args.workdir, **{**PRESETS["tiny"], "subjects": subjects})
    return harness.synthetic(args.workdir, classes=8, subjects=subjects, repetitions=4,
                             frame_size=64, duration=2.0)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from sakdn.train.data import build_data

    rows = []
    for subjects in args.subjects:
        root = dataset(args, subjects)
        bundle = build_data(config_for(args, str(root)))  # built here, read by the children
        recordings = int(bundle.data.manifest["counts"]["recordings"])
        trial = run_child(args, "trial", root)
        scan = run_child(args, "scan", root)
        rows.append({"subjects": subjects, "recordings": recordings,
                     "cache_mb": cache_bytes(bundle.data.path) / 2**20,
                     "trial": trial, "scan": scan})
        print(f"{subjects} subjects: trial peak {trial['after']['VmHWM']:.0f} MB, "
              f"scan RssAnon +{scan['touched']['RssAnon'] - scan['before']['RssAnon']:.1f} MB",
              flush=True)
    return rows


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else float("nan")


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    if args.child:
        result = child_trial(args) if args.child == "trial" else child_scan(args)
        print(json.dumps(result))
        return
    args.config = str(harness.snapshot(args.workdir, EXPERIMENT)[0])
    rows = measure(args)
    trim = ", MALLOC_TRIM_THRESHOLD_=0" if args.malloc_trim else ""
    harness.print_table(
        f"One short trial per process (1 teacher + 1 student epoch{trim}), MB",
        ["subjects", "recordings", "cache MB", "peak RSS (VmHWM)", "ru_maxrss",
         "RssAnon at end", "RssFile at end", "RSS before train()", "train() s"],
        [[r["subjects"], r["recordings"], r["cache_mb"], r["trial"]["after"]["VmHWM"],
          r["trial"]["after"]["ru_maxrss"], r["trial"]["after"]["RssAnon"],
          r["trial"]["after"]["RssFile"], r["trial"]["before"]["VmRSS"],
          r["trial"]["seconds"]] for r in rows],
    )
    scan_rows = []
    for r in rows:
        s = r["scan"]
        anon = s["touched"]["RssAnon"] - s["before"]["RssAnon"]
        file = s["touched"]["RssFile"] - s["before"]["RssFile"]
        items_anon = s["after"]["RssAnon"] - s["before"]["RssAnon"]
        share = anon / r["cache_mb"]
        r["scan_anon_growth_mb"], r["scan_file_growth_mb"], r["copy_share"] = anon, file, share
        scan_rows.append([r["subjects"], r["cache_mb"], anon, file, items_anon,
                          f"{100 * share:.1f} %", "yes" if share < COPY_LIMIT else "no"])
    harness.print_table(
        "Reading the whole cache through its memory maps (one process), MB",
        ["subjects", "cache MB", "RssAnon growth", "RssFile growth",
         "RssAnon growth after every item", "anon / cache", "not copied (< 10 %)"],
        scan_rows,
    )
    if len(rows) > 1:
        recs = [r["recordings"] for r in rows]
        growth = {
            "peak RSS per 100 recordings, MB": 100 * slope(recs, [r["trial"]["after"]["VmHWM"]
                                                                  for r in rows]),
            "RssAnon per 100 recordings, MB": 100 * slope(recs, [r["trial"]["after"]["RssAnon"]
                                                                 for r in rows]),
            "cache per 100 recordings, MB": 100 * slope(recs, [r["cache_mb"] for r in rows]),
        }
        harness.print_table("Growth of one trial with dataset size (least-squares slope)",
                            ["quantity", "MB"], [[k, v] for k, v in growth.items()])
    else:
        growth = {}
    harness.write_json(args.json, "memory", args, {"sizes": rows, "growth": growth})


if __name__ == "__main__":
    main()
