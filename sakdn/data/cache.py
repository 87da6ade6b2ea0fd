"""Content-keyed preprocessing cache: GAF images and resized frames, computed once.

Every trial of every search reads the same memory-mapped arrays; nothing is decoded or
recomputed twice for one (dataset, preprocessing config). Layout of one cache entry::

    <cache_dir>/<key>/manifest.json     written last: its presence marks a complete entry
                     /gaf.npy           (recordings, sensors, 3, S, S) float16 in [0, 1]
                     /sensor_mask.npy   (recordings, sensors) bool — False: missing, zero-filled
                     /frames.npy        (total_frames, H, W, 3) uint8, clips back to back
                     /frame_offsets.npy (samples + 1,) int64 — clip i is frames[o[i]:o[i+1]]
                     /parts/            per-item results while building (resumable), then removed

The key hashes the index (sample keys, file paths, sizes and modification times) and the
preprocessing settings, so editing a file or a setting makes a new entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sakdn.config import ExperimentConfig
from sakdn.data.index import Sample, SampleIndex
from sakdn.data.problems import Problem, Scan, format_report, problem_from_error, raise_blocking
from sakdn.data.registry import read_sensor
from sakdn.data.sensors import source_file
from sakdn.data.validate import signal_problems
from sakdn.errors import DatasetError, SakdnError

CACHE_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """The preprocessing settings that determine the cached arrays."""

    gaf_method: str = "gasf"
    image_size: int = 64
    channel_scaling: bool = True
    frame_size: int = 64
    max_frames: int = 64  # longer clips are uniformly subsampled to this many frames

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> PreprocessSpec:
        return cls(
            gaf_method=config.gaf.method,
            image_size=config.gaf.image_size,
            channel_scaling=config.gaf.channel_scaling,
            frame_size=config.data.frame_size,
            max_frames=max(64, 4 * config.student.segments),
        )


def _file_stamp(path: str) -> list:
    """[path, size, mtime] of a file; of a frame folder, its entry count instead of its size
    (adding, removing or renaming a frame changes the folder's mtime). A ``FILE::MEMBER``
    sensor path is stamped by its file."""
    try:
        st = os.stat(source_file(path))
        size = len(os.listdir(path)) if stat.S_ISDIR(st.st_mode) else st.st_size
        return [path, size, int(st.st_mtime_ns)]
    except OSError:
        return [path, -1, -1]


def cache_key(index: SampleIndex, spec: PreprocessSpec) -> str:
    """A short content hash of the index's files and the preprocessing settings."""
    h = hashlib.sha256()
    header = {
        "version": CACHE_VERSION,
        "dataset": index.dataset,
        "classes": list(index.class_names),
        "sensors": list(index.sensor_names),
        "spec": asdict(spec),
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    seen: set[str] = set()
    for s in index.samples:
        files = [s.video] + [p for _, p in s.sensors]
        stamps = []
        for f in files:
            if f and f not in seen:
                seen.add(f)
                stamps.append(_file_stamp(f))
        h.update(json.dumps([s.key, s.recording, s.label, stamps]).encode())
    return h.hexdigest()[:20]


def recordings_of(index: SampleIndex) -> tuple[list[str], list[Sample], np.ndarray]:
    """Distinct recordings (in first-seen order), one representative sample each, and the
    recording row of every sample — camera views of one recording share one GAF entry."""
    keys: list[str] = []
    reps: list[Sample] = []
    row: dict[str, int] = {}
    of_sample = np.empty(len(index.samples), dtype=np.int64)
    for i, s in enumerate(index.samples):
        if s.recording not in row:
            row[s.recording] = len(keys)
            keys.append(s.recording)
            reps.append(s)
        of_sample[i] = row[s.recording]
    return keys, reps, of_sample


def _gaf_item(dataset: str, sample: Sample, sensor_names: tuple[str, ...], spec: PreprocessSpec):
    """GAF images of every sensor of one recording; zeros + mask False for missing sensors."""
    import torch

    from sakdn.gaf import sensor_images

    torch.set_num_threads(1)
    s = spec.image_size
    images = np.zeros((len(sensor_names), 3, s, s), dtype=np.float16)
    mask = np.zeros(len(sensor_names), dtype=bool)
    present = dict(sample.sensors)
    for m, name in enumerate(sensor_names):
        if name not in present:
            continue
        signal = read_sensor(dataset, name, present[name])
        for problem in signal_problems(signal, present[name], name, s):
            if problem.severity == "error":  # the same message as `sakdn data check`
                raise DatasetError(problem.path, problem.message)
        sensor_images(  # computed in float32, rounded once into the float16 row
            torch.from_numpy(np.ascontiguousarray(signal.values.T[None], dtype=np.float64)),
            image_size=s,
            method=spec.gaf_method,
            channel_scaling=spec.channel_scaling,
            names=[f"{sample.recording}/{name} ({present[name]})"],
            out=images[m : m + 1],
        )
        mask[m] = True
    return images, mask


def _frames_item(sample: Sample, spec: PreprocessSpec) -> np.ndarray:
    """All frames of one clip (uniformly subsampled to max_frames), resized, uint8.

    A clip is a video file or a folder of Bayer PGM frames (Berkeley-MHAD), which are
    demosaiced; a sample without video (a sensor-only dataset) gets one black frame.
    """
    from sakdn.data.video import count_clip_frames, read_clip_frames, resize_frames

    if not sample.video:
        return np.zeros((1, spec.frame_size, spec.frame_size, 3), dtype=np.uint8)
    n = count_clip_frames(sample.video)
    keep = np.arange(n)
    if n > spec.max_frames:  # only the kept frames are converted to RGB (long 1080p clips)
        keep = np.linspace(0, n - 1, spec.max_frames).round().astype(int)
    return resize_frames(read_clip_frames(sample.video, keep), spec.frame_size)


def _work(kind: str, i: int, dataset: str, sample: Sample, sensors, spec,
          out: str) -> Problem | None:
    """One item of the build; writes its result under parts/ and returns its problem, if any."""
    try:
        if kind == "rec":
            images, mask = _gaf_item(dataset, sample, sensors, spec)
            tmp = f"{out}/rec-{i}.tmp.npz"
            np.savez(tmp, images=images, mask=mask)
            os.replace(tmp, f"{out}/rec-{i}.npz")
        else:
            frames = _frames_item(sample, spec)
            tmp = f"{out}/clip-{i}.tmp.npy"
            np.save(tmp, frames)
            os.replace(tmp, f"{out}/clip-{i}.npy")
        return None
    except DatasetError as err:
        return problem_from_error(err)
    except SakdnError as err:  # SignalError from the GAF: non-finite or too few samples
        return Problem("nan_signal", sample.recording, str(err))


class PreprocessedData:
    """Read-only view of one complete cache entry (arrays memory-mapped, never copied)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text())
        self.gaf = np.load(self.path / "gaf.npy", mmap_mode="r")
        self.sensor_mask = np.load(self.path / "sensor_mask.npy")
        self.frames = np.load(self.path / "frames.npy", mmap_mode="r")
        self.frame_offsets = np.load(self.path / "frame_offsets.npy")
        self.sample_keys: list[str] = self.manifest["sample_keys"]
        self.recording_of_sample = np.asarray(self.manifest["recording_of_sample"], dtype=np.int64)
        self.row_of_key = {k: i for i, k in enumerate(self.sample_keys)}

    def clip(self, sample_row: int) -> np.ndarray:
        """Frames of one clip, (T, H, W, 3) uint8, a view into the memory map."""
        a, b = self.frame_offsets[sample_row], self.frame_offsets[sample_row + 1]
        return self.frames[a:b]

    def sensors(self, sample_row: int) -> tuple[np.ndarray, np.ndarray]:
        """GAF images (M, 3, S, S) float16 and mask (M,) of the sample's recording."""
        r = self.recording_of_sample[sample_row]
        return self.gaf[r], self.sensor_mask[r]


def default_cache_dir(config: ExperimentConfig) -> Path:
    return Path(config.data.cache_dir or Path(config.data.root) / ".sakdn-cache")


def prepare(
    index: SampleIndex,
    spec: PreprocessSpec,
    cache_dir: str | Path,
    workers: int = 0,
    progress: bool = False,
    skip_bad: bool = False,
    log: Callable[[str], None] = lambda msg: None,
) -> PreprocessedData:
    """Build (or reuse) the cache entry for ``index`` and ``spec``.

    Resumable: items already written under ``parts/`` by an interrupted build are kept.
    A bad file stops the build with one DatasetError listing every problem, unless
    ``skip_bad``, in which case those samples are left out and listed in the manifest.
    """
    key = cache_key(index, spec)
    entry = Path(cache_dir) / key
    if (entry / "manifest.json").exists():
        return _reuse(index, entry, skip_bad, log)
    # One builder per entry: concurrent trials or commands wait for it, then read its result.
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(cache_dir) / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (entry / "manifest.json").exists():
                return _reuse(index, entry, skip_bad, log)
            return _build(index, spec, entry, key, workers, progress, skip_bad, log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _reuse(index: SampleIndex, entry: Path, skip_bad: bool, log) -> PreprocessedData:
    log(f"preprocessing cache hit: {entry}")
    data = PreprocessedData(entry)
    problems = [Problem(**{**p, "samples": tuple(p["samples"])})
                for p in data.manifest.get("problem_list", [])]
    _stop_or_list(index, problems, data.manifest["skipped"], skip_bad, log)
    return data


def _build(index, spec, entry: Path, key: str, workers, progress, skip_bad,
           log) -> PreprocessedData:
    """Compute every missing item under ``parts/`` (resumable), then consolidate."""
    parts = entry / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    rec_keys, reps, _ = recordings_of(index)
    jobs = [("rec", i, s) for i, s in enumerate(reps)]
    jobs += [("clip", i, s) for i, s in enumerate(index.samples)]
    todo = [
        j for j in jobs
        if not (parts / (f"rec-{j[1]}.npz" if j[0] == "rec" else f"clip-{j[1]}.npy")).exists()
    ]
    log(f"preprocessing {len(todo)} of {len(jobs)} items into {entry}")
    errors: dict[tuple[str, int], Problem] = {}
    bar = _progress_bar(len(todo), progress)
    args = (index.dataset,)
    if workers and workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(_work, k, i, *args, s, index.sensor_names, spec, str(parts)): (k, i)
                for k, i, s in todo
            }
            for fut in as_completed(futures):
                if err := fut.result():
                    errors[futures[fut]] = err
                bar.update(1)
    else:
        for k, i, s in todo:
            if err := _work(k, i, *args, s, index.sensor_names, spec, str(parts)):
                errors[(k, i)] = err
            bar.update(1)
    bar.close()

    bad_samples = _bad_samples(index, reps, errors)
    skipped = sorted({index.samples[i].key for i in bad_samples})
    _stop_or_list(index, list(dict.fromkeys(errors.values())), skipped, skip_bad, log)
    _consolidate(entry, index, rec_keys, bad_samples, errors, spec, key)
    return PreprocessedData(entry)


def _stop_or_list(index: SampleIndex, problems: list[Problem], skipped: list[str],
                  skip_bad: bool, log: Callable[[str], None]) -> None:
    """Stop with the ``sakdn data check`` report of the bad files, or say which samples the
    cache leaves out (``skip_bad``) — a cached entry built with skip_bad_samples=true is not
    silently reused without it."""
    if not skipped:
        return
    raise_blocking(Scan(index, tuple(problems)), skip_bad, index.root)
    log(f"{len(skipped)} sample(s) left out of the cache (data.skip_bad_samples=true): "
        + ", ".join(skipped[:20]) + (" …" if len(skipped) > 20 else ""))
    log(format_report(problems, 20))


def _bad_samples(index: SampleIndex, reps: list[Sample], errors) -> set[int]:
    bad_recordings = {reps[i].recording for (k, i) in errors if k == "rec"}
    bad = {i for (k, i) in errors if k == "clip"}
    bad |= {i for i, s in enumerate(index.samples) if s.recording in bad_recordings}
    return bad


def _consolidate(entry, index, rec_keys, bad, errors, spec, key) -> None:
    parts = entry / "parts"
    keep = [i for i in range(len(index.samples)) if i not in bad]
    kept_recs: dict[str, int] = {}
    rec_rows: list[int] = []
    for i in keep:
        rec = index.samples[i].recording
        if rec not in kept_recs:
            kept_recs[rec] = len(kept_recs)
            rec_rows.append(rec_keys.index(rec))
    m, s = len(index.sensor_names), spec.image_size
    gaf = np.lib.format.open_memmap(
        entry / "gaf.npy", mode="w+", dtype=np.float16, shape=(len(rec_rows), m, 3, s, s)
    )
    mask = np.zeros((len(rec_rows), m), dtype=bool)
    for new, old in enumerate(rec_rows):
        with np.load(parts / f"rec-{old}.npz") as z:
            gaf[new], mask[new] = z["images"], z["mask"]
    gaf.flush()
    del gaf
    np.save(entry / "sensor_mask.npy", mask)

    lengths = [np.load(parts / f"clip-{i}.npy", mmap_mode="r").shape[0] for i in keep]
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    f = spec.frame_size
    frames = np.lib.format.open_memmap(
        entry / "frames.npy", mode="w+", dtype=np.uint8, shape=(int(offsets[-1]), f, f, 3)
    )
    for j, i in enumerate(keep):
        frames[offsets[j] : offsets[j + 1]] = np.load(parts / f"clip-{i}.npy")
    frames.flush()
    del frames
    np.save(entry / "frame_offsets.npy", offsets)

    manifest = {
        "key": key,
        "version": CACHE_VERSION,
        "dataset": index.dataset,
        "root": index.root,
        "spec": asdict(spec),
        "class_names": list(index.class_names),
        "sensor_names": list(index.sensor_names),
        "sample_keys": [index.samples[i].key for i in keep],
        "recording_of_sample": [kept_recs[index.samples[i].recording] for i in keep],
        "skipped": sorted({index.samples[i].key for i in bad}),
        "problems": sorted({p.line for p in errors.values()}),
        "problem_list": [asdict(p) for p in dict.fromkeys(errors.values())],
        "counts": {"recordings": len(rec_rows), "samples": len(keep), "frames": int(offsets[-1])},
    }
    tmp = entry / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, entry / "manifest.json")
    shutil.rmtree(parts, ignore_errors=True)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="preprocess", unit="item", disable=not enabled or total == 0)
