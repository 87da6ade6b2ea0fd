"""MMAct adapter on a fixture tree in the trimmed-release layout (CSV quirks, mp4 views)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import load_config
from sakdn.data import load_index, scan_dataset
from sakdn.data.cache import PreprocessSpec, prepare
from sakdn.data.index import split
from sakdn.data.mmact import MMACT_CLASSES, SENSOR_NAMES, read_mmact_csv
from sakdn.train.data import build_data
from tests.data.fixtures import write_mmact

RULES = {  # datasets.md §4.8, written out independently of sakdn.data.index
    "cross_subject": lambda n, c, k, m: n <= 16,
    "cross_view": lambda n, c, k, m: c in (1, 2, 3),
    "cross_scene": lambda n, c, k, m: k in (1, 3, 4),
    "cross_session": lambda n, c, k, m: m <= 4,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_mmact(tmp_path_factory.mktemp("mmact") / "MMAct")


def config(root: Path, **flat):
    return load_config(overrides={"data.dataset": "mmact", "data.root": str(root),
                                  "semantics.provider": "none", "train.progress": False,
                                  "gaf.image_size": 16, "data.frame_size": 16, **flat})


def ident(sample) -> tuple:
    return (sample.subject, sample.view, sample.scene, sample.session,
            MMACT_CLASSES[sample.label])


def usable_clips(tree, policy: str = "skip") -> list[tuple]:
    """Clips in directory order; under 'skip' those whose recording lacks a sensor are out."""
    lacking = {tree.empty[1], tree.missing_watch}
    return sorted(c for c in tree.clips
                  if policy == "zero_fill" or (c[0], c[2], c[3], c[4]) not in lacking)


def test_class_order_is_the_sorted_folder_names(tree) -> None:
    index = load_index(config(tree.root).data)
    assert index.class_names == tuple(sorted(MMACT_CLASSES)) and len(MMACT_CLASSES) == 35
    light = [s for s in index if s.recording.endswith("carrying_light")]
    assert len(light) == 2  # Carrying_light.mp4 (capital C), lower-cased, label 2 not 35
    assert {s.label for s in light} == {2} and MMACT_CLASSES[2] == "carrying_light"
    assert all(Path(s.video).name == "Carrying_light.mp4" for s in light)


@pytest.mark.parametrize("protocol", sorted(RULES))
def test_protocol_split_counts(tree, protocol: str) -> None:
    index = load_index(config(tree.root).data)
    train, test = split(index, protocol)
    clips = usable_clips(tree)
    want_train = [c for c in clips if RULES[protocol](*c[:4])]
    want_test = [c for c in clips if not RULES[protocol](*c[:4])]
    assert [ident(s) for s in train] == want_train
    assert [ident(s) for s in test] == want_test
    assert len(train) + len(test) == len(clips) == 30


@pytest.mark.parametrize("k", [2, 4, 8])
def test_training_subsets_take_every_kth_clip_in_directory_order(tree, k: int, tmp_path) -> None:
    cfg = config(tree.root, **{"data.train_subset": k, "data.protocol": "cross_view",
                               "data.cache_dir": str(tmp_path / "cache")})
    bundle = build_data(cfg, final=True, log=lambda m: None)
    full_train = [c for c in usable_clips(tree) if RULES["cross_view"](*c[:4])]
    assert [ident(s) for s in bundle.train] == full_train[k - 1::k]  # lines k, 2k, 3k, …
    assert len(bundle.test) == sum(c[1] == 4 for c in usable_clips(tree))


def test_pairing_shares_subject_scene_session_action(tree) -> None:
    index = load_index(config(tree.root, **{"data.missing_sensor": "zero_fill"}).data)
    for s in index:
        v = Path(s.video).parts
        assert v[-5:-1] == (f"subject{s.subject}", f"cam{s.view}", f"scene{s.scene}",
                            f"session{s.session}")
        for name, path in s.sensors:
            p = Path(path).parts
            assert p[-5:-1] == (f"{name}_clip", f"subject{s.subject}", f"scene{s.scene}",
                                f"session{s.session}")
            assert Path(path).stem.lower() == Path(s.video).stem.lower()
    views = {}
    for s in index:
        views.setdefault(s.recording, set()).add(s.sensors)
    assert all(len(v) == 1 for v in views.values())


def test_missing_sensor_policy(tree, tmp_path: Path) -> None:
    skip = scan_dataset(config(tree.root, **{"data.missing_sensor": "skip"}).data)
    policy = sorted((p.severity, p.message.split(":")[0]) for p in skip.problems
                    if p.kind == "missing_sensor")
    names = {r: "subject{}_scene{}_session{}_{}".format(*r)
             for r in (tree.empty[1], tree.missing_watch)}
    assert policy == sorted([("skipped", f"recording {names[tree.empty[1]]} lacks gyro"),
                             ("skipped", f"recording {names[tree.missing_watch]} lacks acc_watch")])
    assert [p.severity for p in skip.problems if p.kind == "empty_file"] == ["warning"]
    assert len(skip.usable()) == 30

    zero = scan_dataset(config(tree.root, **{"data.missing_sensor": "zero_fill"}).data)
    assert {p.severity for p in zero.problems if p.kind == "missing_sensor"} == {"info"}
    index = zero.usable()
    assert [ident(s) for s in index] == usable_clips(tree, "zero_fill")
    data = prepare(index, PreprocessSpec(image_size=16, frame_size=16), tmp_path / "cache")
    for rec, lacking in ((tree.missing_watch, "acc_watch"), (tree.empty[1], "gyro")):
        sample = next(s for s in index if s.recording == names[rec])
        images, mask = data.sensors(data.row_of_key[sample.key])
        assert mask.tolist() == [n != lacking for n in SENSOR_NAMES]
        assert not np.asarray(images[SENSOR_NAMES.index(lacking)]).any()


def _reference_rows(path: Path) -> list[tuple[float, tuple[float, ...]]]:
    """Parse a CSV with datetime.strptime (the fraction optional), independently."""
    rows = []
    for line in path.read_text().splitlines():
        stamp, *values = line.split(",")
        fmt = "%Y%m%d_%H:%M:%S.%f" if "." in stamp else "%Y%m%d_%H:%M:%S"
        t = datetime.datetime.strptime(stamp, fmt)
        seconds = (t - datetime.datetime(2018, 1, 1)).total_seconds()
        rows.append((seconds, tuple(map(float, values))))
    return rows


@pytest.mark.parametrize("quirk", ["no_fraction", "shuffled"])
def test_timestamps_sorted_and_deduplicated(tree, quirk: str) -> None:
    sensor, rec = getattr(tree, quirk)
    path = tree.sensor_files[(sensor, rec)]
    rows = _reference_rows(path)
    unique = sorted({t: v for t, v in reversed(rows)}.items())  # first occurrence per time
    signal = read_mmact_csv(path)
    times, values = signal.times, signal.values
    assert np.all(np.diff(times) > 0)
    assert np.allclose(times - times[0], [t - unique[0][0] for t, _ in unique], atol=1e-5)
    assert np.allclose(values, [v for _, v in unique])
    if quirk == "shuffled":
        assert len(times) == len(rows) - 1  # the repeated timestamp is dropped
    else:
        assert "." not in path.read_text().splitlines()[0].split(",")[0]


def test_crlf_files_read_like_lf(tree, tmp_path: Path) -> None:
    rec = tree.recordings[5]
    crlf = tree.sensor_files[("acc_phone", rec)]
    assert b"\r\n" in crlf.read_bytes()
    lf = tmp_path / "lf.csv"
    lf.write_bytes(crlf.read_bytes().replace(b"\r\n", b"\n"))
    (t1, v1), (t2, v2) = ((s.times, s.values) for s in map(read_mmact_csv, (crlf, lf)))
    assert np.array_equal(t1, t2) and np.array_equal(v1, v2)
    assert len(t1) == len(crlf.read_bytes().splitlines())
    assert abs(np.median(v1[:, 1]) + 9.8) < 1.0  # gravity on −y, m/s²
