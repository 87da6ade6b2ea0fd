"""What the benchmark scripts share: arguments, tables, JSON, datasets, searches, Tune results.

Each script under ``benchmarks/`` measures one thing side by side against its obvious
alternative in one run and prints a Markdown table (``docs/benchmarks.md`` keeps the latest);
``--json PATH`` (``-`` for stdout) writes the same rows with the machine they ran on.
Scripts run from the repository root as ``python benchmarks/<name>.py``; this module sits
beside them on ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO / "runs" / "bench"
SMOKE = REPO / "experiments" / "synthetic_smoke.yaml"  # what --quick trains (as the tests do)
QUICK_KEYS = ("data.frame_size", "gaf.image_size", "student.segments", "student.consensus",
              "student.width", "teacher.width", "student.batch_size", "teacher.batch_size")

# What run_search sets for an embedded Ray, plus what the tests set: loopback-only Ray, no
# usage reporting, no token files, no hub downloads.
SEARCH_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def parser(description: str, workdir: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the smallest mode (seconds; for tests)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout)")
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR / workdir),
                   help="datasets, caches and runs of this benchmark (wiped runs, kept data)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per process (a trial uses one in the search files)")
    return p


def machine() -> dict[str, Any]:
    """The machine a table was measured on (context for its absolute numbers)."""
    import torch

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table (pastes into docs/benchmarks.md as it is)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print(f"\n{title}\n")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(v.rjust(w) if _numeric(v) else v.ljust(w)
                                for v, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return "-" if value is None else str(value)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[<>≈~]?[-+]?[\d.]+(e-?\d+)?\s*[%×]?", text))


def write_json(path: str | None, name: str, args: argparse.Namespace, results: Any) -> None:
    """Write ``{benchmark, command, machine, args, results}`` to ``path`` ('-': stdout)."""
    if not path:
        return
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "results": results,
    }
    text = json.dumps(payload, indent=1, default=str)
    if path == "-":
        print(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def fresh_dir(path: str | Path) -> Path:
    """An empty directory (a previous run's contents are removed)."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def synthetic(workdir: str | Path, **params: Any) -> Path:
    """The synthetic dataset with ``params`` under ``<workdir>/data`` (written once, reused)."""
    from sakdn.data.synthetic import ensure_synthetic

    name = "synthetic_" + "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    return ensure_synthetic(Path(workdir) / "data" / name, **params)


def tiny(workdir: str | Path) -> Path:
    """The smoke experiment's tiny dataset (``PRESETS["tiny"]``), what every --quick run reads."""
    from sakdn.data.synthetic import PRESETS

    return synthetic(workdir, **PRESETS["tiny"])


def quick_sizes() -> dict[str, Any]:
    """The smoke experiment's network and input sizes (``QUICK_KEYS``): --quick's settings."""
    from sakdn.config import load_config

    flat = load_config(SMOKE).to_flat()
    return {k: flat[k] for k in QUICK_KEYS}


def snapshot(workdir: str | Path, experiment: str | Path, space: str | Path | None = None,
             start_point: bool = False) -> tuple[Path, dict[str, str]]:
    """Copies of an experiment file and its search space under ``<workdir>/inputs``.

    Every search of one benchmark run reads the copies, so an edit of the originals while
    the benchmark runs cannot change its settings half-way. Returns the experiment copy and
    the ``search.space`` override that points at the space copy (``{}`` without a space).
    Searches sample every trial (``search.start_point=false``) unless ``start_point``: then
    the experiment's own setting stays (a benchmark of the main job as users run it).
    """
    import yaml

    inputs = Path(workdir) / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    experiment = Path(experiment)
    copy = inputs / experiment.name
    shutil.copyfile(experiment, copy)
    if space is None:
        named = (yaml.safe_load(experiment.read_text()) or {}).get("search", {}).get("space")
        if not named:
            return copy, {}
        space = next((p for p in (REPO / named, experiment.parent / named) if p.is_file()),
                     REPO / named)
    space_copy = inputs / Path(space).name
    shutil.copyfile(space, space_copy)
    # sampled trials only: a benchmark's searches differ in what they sample (a --quick space
    # may not even hold the experiment's start point, search.start_point)
    keys = {"search.space": str(space_copy)}
    return copy, keys if start_point else {**keys, "search.start_point": "false"}


@contextlib.contextmanager
def quiet(log_path: str | Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so Ray's and Tune's
    output too) to ``log_path`` while the block runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


VALIDATION_SIGNALS = ("student/val_acc", "student/val_p_true")  # recorded per student epoch


def best_of_curve(curve: Sequence[float]) -> float:
    """A run's best epoch value (what ``student/best_val_acc`` holds for the accuracy); a
    diverged epoch (NaN) never counts; NaN when none is finite."""
    finite = [v for v in curve if v == v]
    return max(finite) if finite else float("nan")


def train_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration outside any search: ``job`` holds the flat config (``flat``),
    ``workdir`` and the teacher ``store``; its other keys come back with the run's validation
    curves (``VALIDATION_SIGNALS`` per student epoch), the wall seconds of each student epoch
    and the summary's student metrics (``student/test_*`` too with ``train.evaluate_test``)."""
    from sakdn.config import from_flat
    from sakdn.train import train

    config = from_flat(job["flat"], file="benchmark job")
    stamps: list[float] = []
    curves: dict[str, list[float]] = {s: [] for s in VALIDATION_SIGNALS}

    def record(report) -> None:
        if report.replayed:  # resumed: the checkpoint's epochs were timed by the first attempt
            return
        stamps.append(time.perf_counter())
        if report.stage == "student":
            for s in VALIDATION_SIGNALS:
                curves[s].append(float(report.metrics.get(s, float("nan"))))

    result = train(config, record, workdir=job["workdir"], teacher_store=job["store"],
                   log=lambda m: None)
    first = config.teacher.epochs  # the teacher stage's last report starts the student's clock
    return {**{k: v for k, v in job.items() if k not in ("flat", "workdir", "store")},
            "curves": curves,
            "student_epoch_s": [b - a for a, b in zip(stamps[first - 1:], stamps[first:])],
            "metrics": {k: float(v) for k, v in result.metrics.items()
                        if k.startswith(("student/val_", "student/test_"))}}


def train_runs(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """``train_run`` for every job, ``workers`` at a time (a spawned process each, as trials
    share the machine in a search), in the jobs' order."""
    if workers <= 1:
        return [train_run(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(train_run, jobs))


def start_ray(cpus: int) -> float:
    """Start one loopback-only local Ray for all the searches of a benchmark; its seconds.

    ``run_search`` joins a Ray that is already running and leaves it running, so the searches
    of one benchmark share it (Ray's start-up is then paid once, not per search).
    """
    for key, value in SEARCH_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return time.perf_counter() - start


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def warm_up(experiment: str | Path, overrides: dict[str, Any]) -> None:
    """Build the search's preprocessing caches and import what a search imports, so that the
    first timed search of a benchmark does not pay for them alone."""
    import sakdn.report  # noqa: F401
    import sakdn.search.callbacks  # noqa: F401
    import sakdn.search.driver  # noqa: F401
    import sakdn.search.trainable  # noqa: F401
    from sakdn.search.prepare import build_caches
    from sakdn.search.run import prepare

    p = prepare(experiment, [f"{k}={v}" for k, v in overrides.items()])
    build_caches(p.config, p.space, log=lambda m: None)


def run_search(experiment: str | Path, overrides: dict[str, Any], log: Path) -> tuple[Any, float]:
    """The project's ``run_search`` with its console output sent to ``log``; (result, seconds)."""
    from sakdn.search.run import run_search as project_run_search

    items = [f"{k}={v}" for k, v in overrides.items()]
    start = time.perf_counter()
    with quiet(log):
        result = project_run_search(experiment, items)
    return result, time.perf_counter() - start


_TRIAL_DIR = re.compile(r"^run_trial_([0-9a-f]+)_(\d+)_")


def tune_trials(search_dir: str | Path) -> list[dict[str, Any]]:
    """Every Tune trial of a search, in start order: ``{id, index, config, results}``.

    ``results`` are the trial's reports (one per epoch of either stage) as Tune wrote them to
    ``result.json``: metrics plus ``time_total_s``, ``time_this_iter_s`` and ``timestamp``.
    """
    trials = []
    for path in sorted((Path(search_dir) / "tune").glob("run_trial_*/result.json")):
        match = _TRIAL_DIR.match(path.parent.name)
        if not match:
            continue
        results = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        trials.append({
            "id": match.group(1), "index": int(match.group(2)),
            "config": results[0].get("config", {}) if results else {}, "results": results,
        })
    return sorted(trials, key=lambda t: t["index"])


def median(values: Sequence[float]) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")
