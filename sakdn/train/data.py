"""Everything a run needs from its dataset: splits, cached arrays and class vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sakdn.config import ExperimentConfig
from sakdn.data import load_index
from sakdn.data.cache import PreprocessedData, PreprocessSpec, default_cache_dir, prepare
from sakdn.data.dataset import ClipDataset
from sakdn.data.index import (
    SampleIndex,
    carve_fold,
    carve_validation,
    every_kth,
    split,
    subject_folds,
)
from sakdn.models.weights import input_normalization
from sakdn.semantics import class_vectors, semantic_dim


@dataclass(frozen=True)
class DataBundle:
    """The splits of one run. ``val`` drives model selection; ``test`` is for final runs."""

    index: SampleIndex
    train: SampleIndex
    val: SampleIndex
    test: SampleIndex
    data: PreprocessedData
    class_vectors: np.ndarray | None
    semantic_dim: int

    @property
    def num_classes(self) -> int:
        return len(self.index.class_names)

    @property
    def num_sensors(self) -> int:
        return len(self.index.sensor_names)


def _splits(config: ExperimentConfig, final: bool, log: Callable[[str], None]):
    """The index and its train / validation / test splits (no cache is built)."""
    index = load_index(config.data, log=log)  # the synthetic dataset is written on first use
    train, test = split(index, config.data.protocol)
    train = every_kth(train, config.data.train_subset)  # MMAct's 1/2, 1/4, 1/8 lists
    if final:
        val = train.subset(lambda s: False)
    elif config.data.folds > 1:
        train, val = carve_fold(train, config.data.folds, config.data.fold, config.data.split_seed)
    else:
        train, val = carve_validation(train, config.data.val_fraction, config.data.split_seed)
    return index, train, val, test


def split_sizes(config: ExperimentConfig) -> tuple[int, int]:
    """(classes, validation clips) of a run, without building its cache; with folds, the
    smallest fold's validation clips."""
    sizes = []
    for fold in range(max(config.data.folds, 1)):
        index, _, val, _ = _splits(config.replace({"data.fold": fold}), False, lambda m: None)
        sizes.append(len(val))
    return len(index.class_names), min(sizes)


def fold_subjects(config: ExperimentConfig, folds: int) -> list[tuple]:
    """The training subjects of each of ``folds`` validation folds (``data.split_seed``)."""
    index = load_index(config.data)
    train, _ = split(index, config.data.protocol)
    return subject_folds(every_kth(train, config.data.train_subset), folds,
                         config.data.split_seed)


def build_data(
    config: ExperimentConfig, final: bool = False, log: Callable[[str], None] = lambda m: None
) -> DataBundle:
    """Split the index by the protocol, carve the seeded validation split, prepare the cache.

    With ``final`` the validation subjects go back into training (the final model of a
    search is trained on train + validation and evaluated once on test).
    """
    index, train, val, test = _splits(config, final, log)
    spec = PreprocessSpec.from_config(config)
    data = prepare(
        index,
        spec,
        default_cache_dir(config),
        workers=config.data.num_workers,
        progress=config.train.progress,
        skip_bad=config.data.skip_bad_samples,
        log=log,
    )
    vectors = class_vectors(config.semantics, index.class_names, base_dir=Path(config.data.root))
    return DataBundle(
        index=index,
        train=train,
        val=val,
        test=test,
        data=data,
        class_vectors=vectors,
        semantic_dim=semantic_dim(config.semantics, vectors),
    )


def student_training(config: ExperimentConfig, bundle: DataBundle) -> SampleIndex:
    """The student's training recordings: every ``data.student_subset``-th of the teachers'."""
    return every_kth(bundle.train, config.data.student_subset)


def clip_dataset(
    config: ExperimentConfig, bundle: DataBundle, split: SampleIndex, train: bool = False
) -> ClipDataset:
    """The student's clips of ``split``, normalised as ``student.weights`` expect (training
    clips augmented when ``student.augment``)."""
    sc = config.student
    return ClipDataset(
        bundle.data, split, sc.segments, train=train, augment=train and sc.augment,
        seed=config.train.seed, normalization=input_normalization(sc.backbone, sc.weights),
    )
