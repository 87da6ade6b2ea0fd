"""``sakdn data check`` and ``sakdn data prepare``.

The check walks the whole tree: the adapter's structural scan (layout, missing modalities,
unknown codes, duplicates, the missing-sensor policy) and then the content of every file
(every sensor read and validated as the cache build does, every video decoded to the end or
every frame folder listed), and prints each problem with its file, grouped and counted. It
exits non-zero when training would stop: a fatal problem, or bad files without
``data.skip_bad_samples``.

Training runs the same checks without a separate pass: ``load_index`` stops on the structural
problems, and the cache build stops on the content problems of the files it reads, with the
same report lines; once a cache entry exists its files are not read again.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, TextIO

from sakdn.config import ExperimentConfig
from sakdn.data.index import Sample, SampleIndex, carve_validation, every_kth, split
from sakdn.data.problems import Problem, Scan, counts, format_report, problem_from_error
from sakdn.errors import DatasetError, SakdnError


def inspect_recording(dataset: str, sample: Sample, keys: tuple[str, ...],
                      image_size: int) -> list[Problem]:
    """Read every sensor of one recording and validate it as the cache build would."""
    from sakdn.data.registry import read_sensor
    from sakdn.data.validate import signal_problems

    problems: list[Problem] = []
    for name, path in sample.sensors:
        try:
            signal = read_sensor(dataset, name, path)
        except DatasetError as err:
            problems.append(problem_from_error(err, keys))
            continue
        problems += signal_problems(signal, path, name, image_size, keys)
    return problems


def inspect_clip(sample: Sample) -> list[Problem]:
    """Decode a clip to its end (a video file) or list and size its frames (a PGM folder)."""
    from sakdn.data.video import count_clip_frames

    if not sample.video:
        return []
    try:
        count_clip_frames(sample.video)
    except DatasetError as err:
        return [problem_from_error(err, (sample.key,), default_kind="unreadable_video")]
    return []


def _inspect(job: tuple) -> list[Problem]:
    kind, dataset, sample, keys, image_size = job
    if kind == "rec":
        return inspect_recording(dataset, sample, keys, image_size)
    return inspect_clip(sample)


def content_problems(index: SampleIndex, image_size: int, workers: int = 0,
                     progress: bool = False) -> list[Problem]:
    """Problems inside the files of ``index``: one job per recording and one per clip."""
    from tqdm import tqdm

    views: dict[str, list[str]] = {}
    first: dict[str, Sample] = {}
    for s in index.samples:
        views.setdefault(s.recording, []).append(s.key)
        first.setdefault(s.recording, s)
    jobs = [("rec", index.dataset, s, tuple(views[r]), image_size) for r, s in first.items()]
    jobs += [("clip", index.dataset, s, (s.key,), image_size) for s in index.samples if s.video]
    bar = tqdm(total=len(jobs), desc="check", unit="file", disable=not progress or not jobs)
    found: list[Problem] = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_inspect, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                found += result
                bar.update(1)
    else:
        for job in jobs:
            found += _inspect(job)
            bar.update(1)
    bar.close()
    return list(dict.fromkeys(found))  # a file holding two sensors is reported once


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: all problems, the usable index and its split sizes."""

    scan: Scan
    usable: SampleIndex
    splits: dict[str, int]
    exit_code: int

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.scan.problems


def run_check(config: ExperimentConfig, deep: bool = True) -> CheckResult:
    """Structural scan, then (``deep``) the content of every file, then the protocol split."""
    from sakdn.data import scan_dataset

    data = config.data
    try:
        scan = scan_dataset(data)
    except SakdnError as err:  # e.g. the synthetic generator refusing an existing folder
        empty = SampleIndex(data.dataset, data.root, (), (), ())
        scan = Scan(empty, (_fatal("layout", data.root, err),))
    if deep and not any(p.severity == "fatal" for p in scan.problems):
        scan = scan.with_problems(content_problems(
            scan.usable(), config.gaf.image_size, data.num_workers, config.train.progress
        ))
    usable = scan.usable()
    sizes: dict[str, int] = {}
    if not any(p.severity == "fatal" for p in scan.problems):
        try:
            train, test = split(usable, data.protocol)
            train = every_kth(train, data.train_subset)  # as build_data
            fit, val = carve_validation(train, data.val_fraction, data.split_seed)
            sizes = {"train": len(fit), "validation": len(val), "test": len(test)}
        except SakdnError as err:
            scan = scan.with_problems([_fatal("split", usable.root or data.root, err)])
    exit_code = 1 if scan.blocking(data.skip_bad_samples) else 0
    return CheckResult(scan, usable, sizes, exit_code)


def _fatal(kind: str, root: str, err: SakdnError) -> Problem:
    """A fatal problem from an error; a DatasetError names its own path (once, not after the
    root as well)."""
    if isinstance(err, DatasetError):
        return Problem(kind, err.path, err.problem, "fatal")
    return Problem(kind, root, str(err), "fatal")


def format_check(config: ExperimentConfig, result: CheckResult) -> str:
    data = config.data
    index = result.scan.index
    lines = [
        f"dataset {data.dataset} at {index.root or data.root}",
        f"  {len(index)} sample(s) found, {len(index.recordings())} recording(s); "
        f"sensors: {', '.join(index.sensor_names) or 'none'}; {len(index.class_names)} classes",
    ]
    if result.problems:
        lines.append(format_report(result.problems))
    tally = counts(result.problems)
    per_severity: dict[str, int] = {}
    for (severity, _), n in tally.items():
        per_severity[severity] = per_severity.get(severity, 0) + n
    summary = ", ".join(f"{n} {sev}" for sev, n in per_severity.items()) or "no problems"
    lines.append(f"summary: {summary}; {len(result.usable)} usable sample(s)")
    if result.splits:
        subset = f" (training subset 1/{data.train_subset})" if data.train_subset > 1 else ""
        lines.append(
            f"protocol {data.protocol}{subset}: " + ", ".join(
                f"{name} {n}" for name, n in result.splits.items()
            ) + " sample(s)"
        )
    if result.exit_code:
        stop = result.scan.blocking(data.skip_bad_samples)
        hint = "" if any(p.severity == "fatal" for p in stop) else \
            " (fix the files, or set data.skip_bad_samples=true to leave their samples out)"
        lines.append(f"result: NOT usable: {len(stop)} blocking problem(s){hint}")
    else:
        lines.append("result: usable")
    return "\n".join(lines)


def check_dataset(config: ExperimentConfig, out: TextIO | None = None) -> int:
    """Print the full report of ``config.data``; 0 when training can use the dataset, else 1."""
    result = run_check(config)
    print(format_check(config, result), file=out or sys.stdout, flush=True)
    return result.exit_code


def prepare_dataset(config: ExperimentConfig, workers: int = 0,
                    log: Callable[[str], None] = print) -> int:
    """Build (or find) the preprocessing cache of ``config`` with a progress bar; 0 on success.

    Stops with the check's report (DatasetError) on blocking problems, as training does.
    """
    from sakdn.data import load_index
    from sakdn.data.cache import PreprocessSpec, default_cache_dir, prepare

    index = load_index(config.data, log=log)
    split(index, config.data.protocol)  # an unusable protocol stops here, not in a trial
    data = prepare(
        index,
        PreprocessSpec.from_config(config),
        default_cache_dir(config),
        workers=workers,
        progress=config.train.progress,
        skip_bad=config.data.skip_bad_samples,
        log=log,
    )
    c = data.manifest["counts"]
    log(f"cache ready: {data.path} ({c['samples']} clips, {c['recordings']} recordings, "
        f"{c['frames']} frames; {len(data.manifest['skipped'])} sample(s) left out)")
    return 0
