"""Throughput of ``sakdn.gaf`` against ``pyts.image.GramianAngularField`` on the same signals.

Random-walk recordings (N × axes × T) become N·axes fields of S×S for each size. N is
``--recordings`` at most, fewer at large sizes so that no float32 output passes ``--max-gb``
(every size then writes about as many bytes; the outputs stay far larger than the caches).

Rows (each timed in the same rounds, interleaved, best of ``--repeats`` after a warm-up run):

- ``pyts``: ``GramianAngularField(image_size=S, method=...)`` on the 2-D (N·axes, T) array: float64,
  a new array per call. Its kernels are numba ``@njit`` functions compiled when pyts is imported
  (eagerly, from explicit signatures; that time is printed and not counted) without
  ``parallel=True``, so their ``prange`` loops run serially: pyts uses one core;
- ``sakdn gaf f64`` / ``f32``: ``gaf(signals, S, dtype=...)``, a new tensor per call, as pyts;
- ``sakdn gaf f32 out=`` / ``f16 out=``: ``gaf(..., out=buffer)`` into a buffer allocated once
  (how a caller that keeps its buffer, or writes into a memory map, uses it);
- ``sakdn sensor_images f32`` / ``f16 out=``: the project's images (per-channel min–max scaling);
  float16 into a buffer is what the data cache does;
- ``fresh write``: ``torch.empty(...).fill_(1)`` of the float32 output's size: the first-touch
  rate any new output pays (a page fault per 4 KiB; ``--huge-pages`` sets
  ``THP_MEM_ALLOC_ENABLE=1`` so that torch's allocator asks for transparent huge pages);
- ``numpy copy``: ``np.copyto`` between two warm float32 arrays of the output's size: the
  machine's plain memory-copy rate, a ceiling for any method that writes its output once.

The ``threads`` column is torch's intra-op thread count for the row (pyts and numpy: 1);
``--threads 1`` (default) is the like-for-like comparison with pyts, and rows at every thread
the process may use (``torch.get_num_threads()`` at start) follow unless ``--no-all-threads``.
``output GB/s`` is output bytes / seconds (reads not counted), ``G values/s`` output values /
seconds (the rate that compares dtypes), ``× pyts`` pyts seconds / seconds, ``% copy`` output
GB/s as a share of the copy row's. ``max |Δ| vs pyts`` is over every value of the output.
With ``--device cuda`` the signals and buffers live on the GPU (pyts and numpy stay on the CPU).

    python benchmarks/gaf_throughput.py                       # 10,000 × 6 × 180 → 64², 128², 224²
    python benchmarks/gaf_throughput.py --sizes 64 --recordings 2000 --repeats 3
    python benchmarks/gaf_throughput.py --no-pyts --json runs/bench/gaf.json
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import harness
import numpy as np

PYTS_METHOD = {"gasf": "summation", "gadf": "difference"}


@dataclass
class Variant:
    """One row: what it runs, how many bytes a value of its output takes, its thread count."""

    label: str
    run: Callable[[], Any]
    itemsize: int
    threads: int = 1
    compare: bool = False  # max |Δ| against pyts' output (warm-up run)
    best: float = float("inf")
    delta: float | None = None


def parse_args() -> argparse.Namespace:
    p = harness.parser(__doc__.split("\n")[0], "gaf_throughput")
    p.add_argument("--recordings", type=int, default=10000)
    p.add_argument("--axes", type=int, default=6)
    p.add_argument("--length", type=int, default=180)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    p.add_argument("--max-gb", type=float, default=1.0,
                   help="largest float32 output per size, in GB (fewer recordings at large S)")
    p.add_argument("--method", choices=sorted(PYTS_METHOD), default="gasf")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-pyts", action="store_true", help="skip pyts (it compiles for ~25 s)")
    p.add_argument("--no-all-threads", action="store_true",
                   help="only the --threads rows, not also the rows at every thread")
    p.add_argument("--huge-pages", action="store_true",
                   help="THP_MEM_ALLOC_ENABLE=1: torch's allocator asks for transparent huge pages")
    args = p.parse_args()
    if args.quick:
        args.recordings, args.sizes, args.repeats = 8, [16], 1
    return args


def recordings_for(size: int, args: argparse.Namespace) -> int:
    cap = int(args.max_gb * 1e9 // (args.axes * size * size * 4))
    return max(1, min(args.recordings, cap))


def variants(signals, size: int, args: argparse.Namespace, all_threads: int,
             pyts_field: type | None) -> list[Variant]:
    """The rows of one size; buffers for the ``out=`` rows are allocated (and touched) here."""
    import torch

    from sakdn.gaf import gaf, sensor_images

    shape = (*signals.shape[:2], size, size)
    device = signals.device
    out32 = torch.zeros(shape, dtype=torch.float32, device=device)
    out16 = torch.zeros(shape, dtype=torch.float16, device=device)
    m = args.method
    rows: list[Variant] = []
    if pyts_field is not None and size <= signals.shape[-1]:  # pyts refuses S > T
        transformer = pyts_field(image_size=size, method=PYTS_METHOD[m])
        flat = signals.cpu().numpy().reshape(-1, signals.shape[-1])
        rows.append(Variant("pyts", lambda: transformer.transform(flat), 8))
    threads = [args.threads or all_threads]
    if not args.no_all_threads and all_threads not in threads:
        threads.append(all_threads)
    for t in threads:
        first = t == threads[0]  # the float64 and allocating rows once, at the first count
        rows += [
            *([Variant("sakdn gaf f64", lambda: gaf(signals, size, m, dtype=torch.float64), 8,
                       t, compare=True)] if first else []),
            Variant("sakdn gaf f32", lambda: gaf(signals, size, m), 4, t, compare=first),
            Variant("sakdn gaf f32 out=", lambda: gaf(signals, size, m, out=out32), 4, t),
            Variant("sakdn gaf f16 out=", lambda: gaf(signals, size, m, out=out16), 2, t),
            *([Variant("sakdn sensor_images f32", lambda: sensor_images(signals, size, m), 4,
                       t)] if first else []),
            Variant("sakdn sensor_images f16 out=",
                    lambda: sensor_images(signals, size, m, out=out16), 2, t),
        ]
    count = out32.numel()
    rows.append(Variant("fresh write",
                        lambda: torch.empty(count, dtype=torch.float32).fill_(1.0), 4))
    source = np.ones(count, dtype=np.float32)
    target = np.zeros_like(source)
    rows.append(Variant("numpy copy", lambda: np.copyto(target, source), 4))
    return rows


def max_abs_delta(out, reference: np.ndarray, rows: int = 4096) -> float:
    """max |out − reference| over every value, a block of fields at a time (bounded memory)."""
    fields = out.reshape(reference.shape)
    return max(float(np.abs(fields[i : i + rows].cpu().numpy() - reference[i : i + rows]).max())
               for i in range(0, reference.shape[0], rows))


def time_size(size: int, signals, args: argparse.Namespace, all_threads: int,
              pyts_field: type | None) -> list[dict[str, Any]]:
    """Warm up every row (comparing outputs with pyts'), then time them in interleaved rounds."""
    import torch

    sync = torch.cuda.synchronize if signals.is_cuda else (lambda: None)
    rows = variants(signals, size, args, all_threads, pyts_field)
    reference = None
    for row in rows:
        torch.set_num_threads(row.threads)
        out = row.run()
        sync()
        if row.label == "pyts":
            reference = out
        elif row.compare and reference is not None:
            row.delta = max_abs_delta(out, reference)
        del out
    del reference
    gc.collect()
    for _ in range(args.repeats):
        for row in rows:
            torch.set_num_threads(row.threads)
            start = time.perf_counter()
            row.run()
            sync()
            row.best = min(row.best, time.perf_counter() - start)
            gc.collect()
    torch.set_num_threads(all_threads)

    values = signals.shape[0] * signals.shape[1] * size * size
    pyts_s = next((r.best for r in rows if r.label == "pyts"), float("nan"))
    copy_rate = values * 4 / next(r.best for r in rows if r.label == "numpy copy")
    return [{
        "method": r.label, "threads": r.threads, "size": size, "recordings": signals.shape[0],
        "seconds": r.best, "output_gb_s": values * r.itemsize / r.best / 1e9,
        "g_values_s": values / r.best / 1e9, "x_pyts": pyts_s / r.best,
        "copy_share": values * r.itemsize / r.best / copy_rate, "max_abs_delta_vs_pyts": r.delta,
    } for r in rows]


def main() -> None:
    args = parse_args()
    if args.huge_pages:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # read at torch's first allocation
    import torch

    all_threads = torch.get_num_threads()
    rng = np.random.default_rng(0)
    n = max(recordings_for(s, args) for s in args.sizes)
    walks = rng.normal(size=(n, args.axes, args.length)).cumsum(axis=-1)
    pyts_field = None
    if not args.no_pyts:
        start = time.perf_counter()
        from pyts.image import GramianAngularField as pyts_field

        print(f"pyts import (numba compilation, not counted): {time.perf_counter() - start:.1f} s")
    machine = harness.machine()
    print(f"{args.axes} axes × {args.length} samples, {args.method}, device {args.device}, "
          f"torch threads {args.threads or all_threads} and {all_threads}, best of "
          f"{args.repeats}, huge pages {'on' if args.huge_pages else 'off'}; "
          f"{machine['cpu_model']}, {machine['cpus']} CPUs, "
          f"load average {machine['load_average_1m']}")

    results = []
    for size in args.sizes:
        signals = torch.from_numpy(walks[: recordings_for(size, args)]).to(args.device)
        results += time_size(size, signals, args, all_threads, pyts_field)
        del signals
    harness.print_table(
        f"GAF throughput ({args.method}), {args.axes} axes × {args.length} samples per recording",
        ["method", "threads", "size", "recordings", "seconds", "output GB/s", "G values/s",
         "× pyts", "% copy", "max |Δ| vs pyts"],
        [[r["method"], r["threads"], r["size"], r["recordings"], r["seconds"], r["output_gb_s"],
          r["g_values_s"], f"{r['x_pyts']:.1f}×" if r["x_pyts"] == r["x_pyts"] else "-",
          f"{100 * r['copy_share']:.0f} %",
          f"{r['max_abs_delta_vs_pyts']:.1e}" if r["max_abs_delta_vs_pyts"] is not None else "-"]
         for r in results],
    )
    harness.write_json(args.json, "gaf_throughput", args, results)


if __name__ == "__main__":
    main()
