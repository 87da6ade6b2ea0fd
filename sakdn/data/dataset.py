"""Torch datasets over the preprocessing cache: paired sensors + frames + label.

A sample is one recording's clip and the sensors recorded with it (never independently
shuffled loaders zipped together — the reference code's pairing bug, method doc P1). The
teacher stage iterates over recordings (camera views of one recording share their sensors);
the student stage over clips.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sakdn.data.cache import PreprocessedData
from sakdn.data.index import SampleIndex
from sakdn.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_frames,
    normalize_frames,
    tsn_indices,
)
from sakdn.errors import DatasetError


def sample_rows(data: PreprocessedData, split: SampleIndex) -> np.ndarray:
    """Cache rows of the split's samples (samples skipped as bad are not in the cache)."""
    rows = [data.row_of_key[s.key] for s in split.samples if s.key in data.row_of_key]
    if not rows and len(split.samples):
        raise DatasetError(data.path, "none of the split's samples is in the preprocessing cache")
    return np.asarray(rows, dtype=np.int64)


class RecordingDataset(Dataset):
    """Teacher stage: one item per recording — GAF images (M, 3, S, S), mask (M,), label."""

    def __init__(self, data: PreprocessedData, split: SampleIndex) -> None:
        rows = sample_rows(data, split)
        labels = {s.key: s.label for s in split.samples}
        seen: dict[int, int] = {}
        for r in rows:
            rec = int(data.recording_of_sample[r])
            seen.setdefault(rec, labels[data.sample_keys[r]])
        self.data = data
        self.recordings = np.asarray(list(seen.keys()), dtype=np.int64)
        self.labels = np.asarray(list(seen.values()), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.recordings[i]
        return {
            "sensors": torch.from_numpy(np.asarray(self.data.gaf[r], dtype=np.float32)),
            "mask": torch.from_numpy(self.data.sensor_mask[r].copy()),
            "label": torch.tensor(self.labels[i]),
        }


class ClipDataset(Dataset):
    """Student stage: one item per clip — frames (segments, 3, H, W), sensors, mask, label.

    Training draws one random frame per TSN segment (and a random crop/flip when
    ``augment``) from a generator seeded by (seed, epoch, item), so a run is reproducible
    whatever the worker count; evaluation takes the segment centres. Frames are normalised
    with ``normalization`` (mean, std) on [0, 1] RGB — what the student's initial weights
    expect — or ImageNet statistics when None. The cache holds uint8 frames: normalisation
    happens here, so it never changes a cache key.
    """

    def __init__(
        self,
        data: PreprocessedData,
        split: SampleIndex,
        segments: int,
        train: bool,
        augment: bool = False,
        seed: int = 0,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.data = data
        self.mean, self.std = normalization or (IMAGENET_MEAN, IMAGENET_STD)
        self.rows = sample_rows(data, split)
        labels = {s.key: s.label for s in split.samples}
        self.labels = np.asarray([labels[data.sample_keys[r]] for r in self.rows], dtype=np.int64)
        self.segments, self.train, self.augment, self.seed = segments, train, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        clip = self.data.clip(row)
        rng = np.random.default_rng((self.seed, self.epoch, int(row))) if self.train else None
        idx = tsn_indices(len(clip), self.segments, train=self.train, rng=rng)
        frames = np.asarray(clip[idx])
        if self.train and self.augment:
            frames = augment_frames(frames, rng, frames.shape[1])
        sensors, mask = self.data.sensors(row)
        return {
            "frames": torch.from_numpy(normalize_frames(frames, self.mean, self.std)),
            "sensors": torch.from_numpy(np.asarray(sensors, dtype=np.float32)),
            "mask": torch.from_numpy(mask.copy()),
            "label": torch.tensor(self.labels[i]),
        }
