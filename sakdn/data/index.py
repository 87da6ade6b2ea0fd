"""The paired sample index: one entry per (recording, camera view), and the splits over it.

A :class:`Sample` pairs one video with the sensor streams recorded at the same time, so the
teachers and the student always see the same recording (method doc §8 P1: never zip
independently shuffled loaders). Splits are functions of the index: an official protocol
(its rule registered with the dataset's adapter) gives (train, test), and
:func:`carve_validation` holds out training subjects for model selection so that the test
split is never used to choose anything (P12).
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from sakdn.errors import ConfigError, DatasetError

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders digit runs by value ("a2" before "a10"), as natsort does."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(text))


@dataclass(frozen=True)
class Sample:
    """One camera view of one recording plus the sensor files recorded with it.

    ``sensors`` maps a sensor name to the file holding it; one file may hold several sensors
    (UTD-MHAD's ``d_iner`` has the accelerometer in columns 0–2 and the gyroscope in 3–5), and
    the dataset's adapter knows how to cut each sensor out of its file. ``recording`` is shared
    by all views of one recording so that sensor images are computed once per recording; it
    defaults to ``key``.
    """

    key: str
    label: int  # 0-based class index
    subject: int
    action: int  # the dataset's own action code
    repetition: int
    view: int = 0
    scene: int = 0
    session: int = 0
    video: str = ""  # "" when the dataset has no video
    sensors: tuple[tuple[str, str], ...] = ()
    recording: str = ""

    def __post_init__(self) -> None:
        if not self.recording:
            object.__setattr__(self, "recording", self.key)

    def sensor_file(self, name: str) -> str | None:
        """The file holding sensor ``name``, or None when this recording lacks it."""
        for sensor, path in self.sensors:
            if sensor == name:
                return path
        return None


@dataclass(frozen=True)
class SampleIndex:
    """All samples of a dataset (or of one split of it), with its class and sensor names."""

    dataset: str
    root: str
    class_names: tuple[str, ...]
    sensor_names: tuple[str, ...]
    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.samples:
            if s.key in seen:
                raise DatasetError(self.root, f"sample key {s.key!r} occurs twice in the index")
            seen.add(s.key)
            if not 0 <= s.label < len(self.class_names):
                raise DatasetError(
                    s.video or self.root,
                    f"recording {s.key}: label {s.label} outside 0..{len(self.class_names) - 1}",
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, predicate: Callable[[Sample], bool]) -> SampleIndex:
        """The samples for which ``predicate`` holds, in their original order."""
        return replace(self, samples=tuple(s for s in self.samples if predicate(s)))

    def labels(self) -> tuple[int, ...]:
        return tuple(s.label for s in self.samples)

    def subjects(self) -> tuple[int, ...]:
        """The distinct subjects, ascending."""
        return tuple(sorted({s.subject for s in self.samples}))

    def recordings(self) -> tuple[str, ...]:
        """The distinct recording keys, in first-seen order."""
        return tuple(dict.fromkeys(s.recording for s in self.samples))


# --------------------------------------------------------------------------------------------
# Splits: an official protocol (its rule registered with the dataset's adapter), then the
# seeded validation carve-out.

def split(index: SampleIndex, protocol: str) -> tuple[SampleIndex, SampleIndex]:
    """(train, test) of an official protocol of ``index.dataset``; both must be non-empty."""
    from sakdn.data.registry import get_adapter  # here: the adapters import this module

    rule = get_adapter(index.dataset).rule(protocol)
    train = index.subset(rule)
    test = index.subset(lambda s: not rule(s))
    for side, part in (("train", train), ("test", test)):
        if len(part) == 0:
            raise DatasetError(
                index.root,
                f"protocol {protocol!r} leaves the {side} split empty "
                f"({len(index)} samples, subjects {list(index.subjects())})",
            )
    return train, test


def every_kth(index: SampleIndex, k: int) -> SampleIndex:
    """Samples k, 2k, 3k, … in index order (all of them for k = 1): MMAct's 1/2, 1/4 and 1/8
    training lists, and a data-starved student's share."""
    if k <= 1:
        return index
    keep = {s.key for s in index.samples[k - 1 :: k]}
    return index.subset(lambda s: s.key in keep)


def carve_validation(
    train: SampleIndex, fraction: float, seed: int
) -> tuple[SampleIndex, SampleIndex]:
    """Hold out a seeded validation split from the training split.

    With at least two training subjects, whole subjects move to validation:
    ``n_val = clamp(⌈fraction · n_subjects⌉, 1, n_subjects − 1)``, so no subject is on both
    sides. With a single subject, recordings are held out per class instead
    (``⌈fraction · n⌉`` of the class's ``n`` recordings, leaving at least one in training).
    All views of one recording always land on the same side. ``fraction == 0`` gives an
    empty validation split.
    """
    if not 0.0 <= fraction < 1.0 or not math.isfinite(fraction):
        raise ConfigError("data.val_fraction", fraction, "must be in [0, 1)")
    if fraction == 0.0 or len(train) == 0:
        return train, train.subset(lambda s: False)
    rng = random.Random(seed)
    subjects = train.subjects()
    if len(subjects) >= 2:
        n_val = min(max(_ceil(fraction * len(subjects)), 1), len(subjects) - 1)
        held = set(rng.sample(list(subjects), n_val))
        return train.subset(lambda s: s.subject not in held), train.subset(
            lambda s: s.subject in held
        )
    by_class: dict[int, dict[str, None]] = defaultdict(dict)
    for s in train.samples:
        by_class[s.label][s.recording] = None
    held_recordings: set[str] = set()
    for label in sorted(by_class):
        recs = sorted(by_class[label], key=natural_key)
        n_val = min(_ceil(fraction * len(recs)), len(recs) - 1)
        held_recordings.update(rng.sample(recs, n_val))
    return train.subset(lambda s: s.recording not in held_recordings), train.subset(
        lambda s: s.recording in held_recordings
    )


def subject_folds(train: SampleIndex, k: int, seed: int) -> list[tuple]:
    """The training subjects dealt into ``k`` folds: shuffled with ``seed``, then dealt round
    robin, so fold sizes differ by at most one and no subject is in two folds."""
    subjects = list(train.subjects())
    if not 2 <= k <= len(subjects):
        raise ConfigError("data.folds", k, f"must be between 2 and the {len(subjects)} training "
                          "subjects (whole subjects validate, none in two folds)")
    random.Random(seed).shuffle(subjects)
    return [tuple(sorted(subjects[i::k], key=lambda s: natural_key(str(s)))) for i in range(k)]


def carve_fold(
    train: SampleIndex, k: int, fold: int, seed: int
) -> tuple[SampleIndex, SampleIndex]:
    """Fold ``fold`` of :func:`subject_folds` validates, the other folds train."""
    if not 0 <= fold < k:
        raise ConfigError("data.fold", fold, f"must be in 0..{k - 1} for {k} folds")
    held = set(subject_folds(train, k, seed)[fold])
    return (train.subset(lambda s: s.subject not in held),
            train.subset(lambda s: s.subject in held))


def _ceil(x: float) -> int:
    """⌈x⌉ that ignores floating-point dust (0.3 · 10 = 3.0000000000000004 → 3)."""
    return math.ceil(x - 1e-9)
