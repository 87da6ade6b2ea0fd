from __future__ import annotations

import math

import pytest

from sakdn.data.index import (
    Sample,
    SampleIndex,
    carve_validation,
    natural_key,
    split,
)
from sakdn.data.registry import protocols
from sakdn.errors import ConfigError, DatasetError


def _grid(subjects=(1, 2, 3, 4), actions=(1, 2), reps=(1, 2, 3, 4), views=(0,), dataset="utd_mhad"):
    samples = []
    for a in actions:
        for s in subjects:
            for t in reps:
                rec = f"a{a}_s{s}_t{t}"
                for v in views:
                    samples.append(
                        Sample(
                            key=rec if views == (0,) else f"{rec}_view{v}",
                            label=a - 1,
                            subject=s,
                            action=a,
                            repetition=t,
                            view=v,
                            video=f"/v/{rec}_{v}.avi",
                            sensors=(("acc", f"/i/{rec}.mat"), ("gyro", f"/i/{rec}.mat")),
                            recording=rec,
                        )
                    )
    n_classes = max(actions)
    return SampleIndex(
        dataset=dataset,
        root="/data",
        class_names=tuple(f"c{i}" for i in range(n_classes)),
        sensor_names=("acc", "gyro"),
        samples=tuple(samples),
    )


def test_sample_defaults_recording_to_key_and_finds_sensor_files():
    s = Sample("a1_s1_t1", 0, 1, 1, 1, sensors=(("acc", "x.mat"), ("gyro", "x.mat")))
    assert s.recording == "a1_s1_t1"
    assert s.video == "" and s.view == 0
    assert s.sensor_file("gyro") == "x.mat"
    assert s.sensor_file("orientation") is None


def test_index_rejects_duplicate_keys_and_bad_labels():
    s = Sample("a1_s1_t1", 0, 1, 1, 1)
    with pytest.raises(DatasetError, match="a1_s1_t1"):
        SampleIndex("utd_mhad", "/r", ("c0",), (), (s, s))
    with pytest.raises(DatasetError, match="label 3"):
        SampleIndex("utd_mhad", "/r", ("c0", "c1"), (), (Sample("k", 3, 1, 4, 1),))


def test_index_accessors_and_subset():
    index = _grid(subjects=(3, 1), actions=(1, 2), reps=(1, 2))
    assert len(index) == 8
    assert index.subjects() == (1, 3)
    assert sorted(index.labels()) == [0] * 4 + [1] * 4
    only = index.subset(lambda s: s.action == 2)
    assert len(only) == 4 and set(only.labels()) == {1}
    assert only.class_names == index.class_names and only.dataset == index.dataset


def test_natural_key_orders_numbers_by_value():
    names = ["a10_s1_t1", "a2_s1_t1", "a1_s10_t1", "a1_s2_t1"]
    assert sorted(names, key=natural_key) == ["a1_s2_t1", "a1_s10_t1", "a2_s1_t1", "a10_s1_t1"]


def test_cross_subject_split_odd_train_even_test():
    index = _grid(subjects=(1, 2, 3, 4, 5, 6, 7, 8))
    train, test = split(index, "cross_subject")
    assert train.subjects() == (1, 3, 5, 7)
    assert test.subjects() == (2, 4, 6, 8)
    assert len(train) == len(test) == 2 * 4 * 4
    assert set(s.key for s in train) | set(s.key for s in test) == set(s.key for s in index)


def test_trial_split_uses_repetitions():
    train, test = split(_grid(), "trial")
    assert {s.repetition for s in train} == {1, 2}
    assert {s.repetition for s in test} == {3, 4}
    assert len(train) == len(test) == 2 * 4 * 2


def test_synthetic_shares_the_utd_protocols():
    assert set(protocols("synthetic")) >= {"cross_subject", "trial"}
    train, _ = split(_grid(dataset="synthetic"), "cross_subject")
    assert train.subjects() == (1, 3)


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        split(_grid(), "cross_view")
    assert err.value.key == "data.protocol"
    assert "cross_subject" in str(err.value) and "trial" in str(err.value)


def test_split_that_leaves_a_side_empty_is_an_error():
    with pytest.raises(DatasetError, match="test split empty"):
        split(_grid(subjects=(1, 3)), "cross_subject")


@pytest.mark.parametrize("fraction,n_subjects,expected", [
    (0.25, 4, 1), (0.5, 4, 2), (0.9, 4, 3), (0.1, 4, 1), (0.3, 10, 3), (0.5, 2, 1),
])
def test_validation_holds_out_whole_subjects(fraction, n_subjects, expected):
    train = _grid(subjects=tuple(range(1, 2 * n_subjects, 2)))
    fit, val = carve_validation(train, fraction, seed=3)
    assert len(val.subjects()) == expected
    assert not set(fit.subjects()) & set(val.subjects())
    assert len(fit) + len(val) == len(train)
    assert {s.key for s in fit} | {s.key for s in val} == {s.key for s in train}


def test_validation_is_seeded():
    train = _grid(subjects=tuple(range(1, 9)))
    picks = {carve_validation(train, 0.25, seed)[1].subjects() for seed in range(12)}
    assert carve_validation(train, 0.25, 5) == carve_validation(train, 0.25, 5)
    assert len(picks) > 1  # different seeds hold out different subjects


def test_zero_fraction_gives_empty_validation():
    train = _grid()
    fit, val = carve_validation(train, 0.0, seed=0)
    assert fit == train and len(val) == 0


@pytest.mark.parametrize("fraction", [1.0, -0.1, float("nan")])
def test_bad_fraction_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match="val_fraction"):
        carve_validation(_grid(), fraction, seed=0)


def test_single_subject_holds_out_recordings_per_class_keeping_views_together():
    train = _grid(subjects=(5,), actions=(1, 2, 3), reps=(1, 2, 3, 4, 5), views=(1, 2, 3))
    fit, val = carve_validation(train, 0.3, seed=1)
    assert not {s.recording for s in fit} & {s.recording for s in val}
    for label in range(3):
        held = {s.recording for s in val if s.label == label}
        assert len(held) == math.ceil(0.3 * 5)  # 2 of the class's 5 recordings
        assert all(sum(s.recording == r for s in val) == 3 for r in held)  # all three views


def test_single_recording_class_stays_in_training():
    train = _grid(subjects=(1,), actions=(1, 2), reps=(1,))
    fit, val = carve_validation(train, 0.5, seed=0)
    assert len(val) == 0 and fit == train


def test_subject_folds_are_disjoint_seeded_and_never_touch_the_test_split(tmp_path) -> None:
    from sakdn.config import ExperimentConfig
    from sakdn.data.synthetic import write_synthetic
    from sakdn.train.data import build_data, fold_subjects

    root = write_synthetic(tmp_path / "syn", classes=2, subjects=8, repetitions=1,
                           frame_size=16, duration=0.5)
    config = ExperimentConfig().replace({"data.root": str(root), "data.folds": 3,
                                         "data.cache_dir": str(tmp_path / "cache"),
                                         "gaf.image_size": 16, "data.frame_size": 16,
                                         "train.progress": False})
    folds = fold_subjects(config, 3)
    train_subjects = {1, 3, 5, 7}  # cross-subject: odd subjects train
    flat = [s for fold in folds for s in fold]
    assert sorted(flat) == sorted(train_subjects) and len(flat) == len(set(flat))
    assert sorted(len(f) for f in folds) == [1, 1, 2]
    assert fold_subjects(config, 3) == folds  # seeded
    others = [fold_subjects(config.replace({"data.split_seed": s}), 3) for s in range(1, 6)]
    assert any(o != folds for o in others)  # the seed deals them
    for k, fold in enumerate(folds):
        bundle = build_data(config.replace({"data.fold": k}))
        assert {s.subject for s in bundle.val.samples} == set(fold)
        assert {s.subject for s in bundle.train.samples} == train_subjects - set(fold)
        assert {s.subject for s in bundle.test.samples} == {2, 4, 6, 8}
    final = build_data(config, final=True)  # the final model trains on every training subject
    assert {s.subject for s in final.train.samples} == train_subjects and not len(final.val)
