"""Throughput of ``sakdn.gaf`` against ``pyts.image.GramianAngularField`` on the same signals.

Random-walk recordings (N × axes × T) become N·axes fields of S×S for each size. Rows:

- ``pyts``: ``GramianAngularField(image_size=S, method=...)`` on the 2-D (N·axes, T) array, float64;
- ``sakdn gaf f64`` / ``sakdn gaf f32``: ``gaf(signals, S, dtype=...)``;
- ``sakdn sensor_images``: float32 images with per-channel min–max scaling;
- ``numpy copy``: ``np.copyto`` of as many bytes as the float32 output, the machine's plain
  memory-copy rate measured in the same run (a ceiling for any method that writes its output once).

numpy asks the kernel for transparent huge pages on large arrays, torch does not unless
``THP_MEM_ALLOC_ENABLE=1`` is set before it is imported (``--huge-pages``); on machines where THP is
in ``madvise`` mode, page faults on fresh outputs otherwise dominate torch's time.

pyts' kernels are compiled without ``parallel=True`` and run on one core, so torch gets one
thread by default too (``--threads``).

``seconds`` is the best of ``--repeats`` runs (pyts runs once per size), ``output GB/s`` is output
bytes / seconds (bytes written, reads not counted), ``× pyts`` is pyts seconds / seconds.
pyts compiles its numba kernels when it is imported; that time is printed and not counted.
With ``--device cuda`` the signals are moved to the GPU first and the outputs stay there.

    python benchmarks/gaf_throughput.py                 # 2,000 recordings × 6 axes × 180 samples
    python benchmarks/gaf_throughput.py --recordings 200 --sizes 64 128 224   # no pyts at 224
    python benchmarks/gaf_throughput.py --huge-pages --threads 0
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

PYTS_METHOD = {"gasf": "summation", "gadf": "difference"}


def best_seconds(
    run: Callable[[], object],
    repeats: int,
    sync: Callable[[], object],
    inspect: Callable[[object], None] | None = None,
) -> float:
    """Best wall time of ``repeats`` runs after one warm-up run (whose output ``inspect`` sees)."""
    out = run()
    sync()
    if inspect is not None:
        inspect(out)
    del out
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=2000)
    parser.add_argument("--axes", type=int, default=6)
    parser.add_argument("--length", type=int, default=180)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--method", choices=sorted(PYTS_METHOD), default="gasf")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (pyts runs on one); 0: torch's default")
    parser.add_argument("--no-pyts", action="store_true", help="skip pyts (sizes > length)")
    parser.add_argument("--huge-pages", action="store_true",
                        help="set THP_MEM_ALLOC_ENABLE=1 for torch's CPU allocator")
    return parser.parse_args()


Row = tuple[str, int, float, float, float, str]  # method, size, seconds, GB/s, × pyts, max |Δ|


def time_size(
    size: int, signals: torch.Tensor, args: argparse.Namespace, pyts_field: type | None
) -> list[Row]:
    """All rows of one image size; ``signals`` is the (N, axes, T) tensor on the chosen device."""
    import torch

    from sakdn.gaf import gaf, sensor_images

    sync = torch.cuda.synchronize if signals.is_cuda else (lambda: None)
    count = signals.shape[0] * signals.shape[1] * size * size  # output elements
    rows: list[Row] = []
    reference, pyts_seconds = None, float("nan")
    if pyts_field is not None and size <= signals.shape[-1]:  # pyts refuses S > T
        transformer = pyts_field(image_size=size, method=PYTS_METHOD[args.method])
        start = time.perf_counter()
        reference = transformer.transform(signals.cpu().numpy().reshape(-1, signals.shape[-1]))
        pyts_seconds = time.perf_counter() - start
        rows.append(("pyts", size, pyts_seconds, count * 8 / pyts_seconds / 1e9, 1.0, "-"))

    deltas: list[str] = []

    def compare(out: torch.Tensor) -> None:
        field = out.cpu().numpy().reshape(reference.shape)
        deltas.append(f"{np.abs(field - reference).max():.1e}")

    variants = (
        ("sakdn gaf f64", lambda: gaf(signals, size, args.method, dtype=torch.float64), 8, True),
        ("sakdn gaf f32", lambda: gaf(signals, size, args.method), 4, False),
        ("sakdn sensor_images", lambda: sensor_images(signals, size, args.method), 4, False),
    )
    for label, run, itemsize, check in variants:
        inspect = compare if check and reference is not None else None
        seconds = best_seconds(run, args.repeats, sync, inspect)
        delta = deltas.pop() if inspect else "-"
        rows.append((label, size, seconds, count * itemsize / seconds / 1e9,
                     pyts_seconds / seconds, delta))
    del reference

    source = np.ones(count, dtype=np.float32)
    target = np.empty_like(source)
    seconds = best_seconds(lambda: np.copyto(target, source), args.repeats, lambda: None)
    rows.append(("numpy copy", size, seconds, count * 4 / seconds / 1e9, pyts_seconds / seconds,
                 "-"))
    return rows


def main() -> None:
    args = parse_args()
    if args.huge_pages:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # read at torch's first allocation
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    walks = rng.normal(size=(args.recordings, args.axes, args.length)).cumsum(axis=-1)
    signals = torch.from_numpy(walks).to(args.device)

    pyts_field = None
    if not args.no_pyts:
        start = time.perf_counter()
        from pyts.image import GramianAngularField as pyts_field

        print(f"pyts import (numba compilation, not counted): {time.perf_counter() - start:.1f} s")
    print(f"{args.recordings} recordings × {args.axes} axes × {args.length} samples, "
          f"{args.method}, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '0')}")

    rows = [row for size in args.sizes for row in time_size(size, signals, args, pyts_field)]
    print(f"\n{'method':<22}{'size':>6}{'seconds':>10}{'output GB/s':>13}{'× pyts':>9}"
          f"{'max |Δ| vs pyts':>17}")
    for label, size, seconds, rate, ratio, delta in rows:
        print(f"{label:<22}{size:>6}{seconds:>10.3f}{rate:>13.2f}{ratio:>9.1f}{delta:>17}")


if __name__ == "__main__":
    main()
