"""Trained teacher sets shared between runs whose teacher stage is identical.

A distillation-only search varies student and distillation keys; its trials would all train
the same teachers. The store keys a teacher set by every setting that shapes the teacher stage
(data, GAF, semantics, teacher, seed, device) plus the preprocessing-cache key, and keeps it on
the shared storage path. An exclusive file lock per key makes concurrent trials safe: the first
trains and saves, the others wait and then load it.

Beside each teacher set, :class:`TeacherOutputs` keeps what the frozen teachers compute in the
student stage (``train.cache_teacher_outputs``), so a trial that reuses the set also skips the
teachers' forward passes on every student batch. The sensor images are never augmented, but
SPAMFM's batch graph makes a sample's teacher outputs depend on the other samples of its batch
(also in eval mode), so outputs are stored per batch: keyed by the batch's cache rows in order,
never per sample.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sakdn.config import ExperimentConfig

TEACHER_SECTIONS = ("data.", "gaf.", "semantics.", "teacher.")
IGNORED_KEYS = {"data.num_workers", "data.cache_dir", "data.root", "data.student_subset"}


def teacher_key(config: ExperimentConfig, data_key: str) -> str:
    """Content key of the teacher stage: the settings that change what teachers come out."""
    flat = config.to_flat()
    items = {
        k: v for k, v in flat.items()
        if k.startswith(TEACHER_SECTIONS) and k not in IGNORED_KEYS
    }
    items["train.seed"] = flat["train.seed"]
    items["train.deterministic"] = flat["train.deterministic"]
    items["data_key"] = data_key
    blob = json.dumps(items, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class TeacherStore:
    """A directory of teacher sets: ``<root>/<key>/teachers.pt`` + ``history.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def entry(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.entry(key) / "history.json").exists()

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the key's exclusive lock (blocks while another process trains it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(self, key: str, hit: bool, run: str = "") -> None:
        """Append one lookup to ``events.jsonl`` (the search reports the hit rate)."""
        line = json.dumps({"key": key, "hit": hit, "run": run, "time": time.time()})
        with open(self.root / "events.jsonl", "a") as handle:
            handle.write(line + "\n")

    def hit_rate(self) -> tuple[int, int]:
        """(hits, lookups) recorded so far."""
        path = self.root / "events.jsonl"
        if not path.exists():
            return 0, 0
        events = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        return sum(e["hit"] for e in events), len(events)

    def write_history(self, key: str, history: list[dict]) -> None:
        tmp = self.entry(key) / "history.json.tmp"
        tmp.write_text(json.dumps(history))
        os.replace(tmp, self.entry(key) / "history.json")

    def read_history(self, key: str) -> list[dict]:
        return json.loads((self.entry(key) / "history.json").read_text())

    def outputs(self, key: str, salt: str) -> TeacherOutputs:
        """The stored student-stage outputs of teacher set ``key`` computed under ``salt``."""
        return TeacherOutputs(self.entry(key) / "outputs", salt)


Layout = list[tuple[str, tuple[int, ...]]]  # (field, per-sample shape), in storage order


class TeacherOutputs:
    """Frozen teachers' outputs on student batches: ``<dir>/<batch key>.npy`` + ``layout.json``.

    One float32 array (B, F) per batch holds every field of ``layout`` flattened per sample, so a
    hit is one memory-mapped read. The batch key hashes ``salt`` (device, precision, threads:
    anything that changes the floating-point result) with the batch's cache rows in order; the
    same batch computed by any trial of the teacher set gives the same file, so concurrent
    writers are harmless (write to a temporary name, then an atomic rename).
    """

    def __init__(self, directory: str | Path, salt: str) -> None:
        self.directory = Path(directory)
        self.salt = salt
        self.hits = self.misses = 0
        self._layout: Layout | None = None

    def key(self, rows: np.ndarray) -> str:
        blob = self.salt.encode() + b"|" + np.ascontiguousarray(rows, dtype=np.int64).tobytes()
        return hashlib.sha256(blob).hexdigest()[:24]

    def layout(self) -> Layout | None:
        if self._layout is None:
            path = self.directory / "layout.json"
            if path.exists():
                stored = json.loads(path.read_text())
                self._layout = [(name, tuple(shape)) for name, shape in stored]
        return self._layout

    def load(self, key: str) -> np.ndarray | None:
        """The stored (B, F) array of a batch (memory-mapped), or None when it is absent."""
        path = self.directory / f"{key}.npy"
        layout = self.layout()
        if layout is None or not path.exists():
            return None
        array = np.load(path, mmap_mode="r")
        if array.ndim != 2 or array.shape[1] != layout_width(layout):
            return None
        return array

    def record(self) -> None:
        """Append this run's hits and misses to ``events.jsonl`` (read by the benchmarks)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"hits": self.hits, "misses": self.misses, "time": time.time()})
        with open(self.directory / "events.jsonl", "a") as handle:
            handle.write(line + "\n")

    def save(self, key: str, array: np.ndarray, layout: Layout) -> None:
        """Store one batch; the first save of a directory also writes its layout."""
        if array.ndim != 2 or array.shape[1] != layout_width(layout):
            raise ValueError(f"a batch of teacher outputs is (B, {layout_width(layout)}), "
                             f"got {array.shape}")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.layout() != layout:
            _atomic_write(self.directory / "layout.json",
                          lambda f: f.write(json.dumps(layout).encode()))
            self._layout = [(name, tuple(shape)) for name, shape in layout]
        data = np.ascontiguousarray(array, dtype=np.float32)
        _atomic_write(self.directory / f"{key}.npy", lambda f: np.save(f, data))


def layout_width(layout: Sequence[tuple[str, Sequence[int]]]) -> int:
    """Floats per sample: Σ over fields of the product of their per-sample shapes."""
    return sum(int(np.prod(shape)) for _, shape in layout)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)
