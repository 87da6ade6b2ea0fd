"""Trained teacher sets shared between runs whose teacher stage is identical.

A distillation-only search varies student and distillation keys; its trials would all train
the same teachers. The store keys a teacher set by every setting that shapes the teacher stage
(data, GAF, semantics, teacher, seed, device) plus the preprocessing-cache key, and keeps it on
the shared storage path. An exclusive file lock per key makes concurrent trials safe: the first
trains and saves, the others wait and then load it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sakdn.config import ExperimentConfig

TEACHER_SECTIONS = ("data.", "gaf.", "semantics.", "teacher.")
IGNORED_KEYS = {"data.num_workers", "data.cache_dir", "data.root"}


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
