"""What the driver prepares before trials start: absolute paths, every cache variant."""

from __future__ import annotations

from pathlib import Path

from sakdn.config import ExperimentConfig
from sakdn.data.cache import PreprocessSpec
from sakdn.search.prepare import absolute_paths, build_caches, variants
from sakdn.search.space import parse_space


def test_relative_paths_become_absolute(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"")
    (tmp_path / "data" / "syn").mkdir(parents=True)
    (tmp_path / "data" / "syn" / "class_vectors.npy").write_bytes(b"")
    config = ExperimentConfig().replace({
        "data.root": "data/syn", "teacher.weights": "weights.pt",
        "semantics.path": "class_vectors.npy", "student.weights": "",
    })
    out = absolute_paths(config, tmp_path)
    assert out.data.root == str(tmp_path / "data" / "syn")
    assert out.teacher.weights == str(tmp_path / "weights.pt")
    assert out.semantics.path == "class_vectors.npy"  # found under the (absolute) data root
    assert out.student.weights == ""
    assert Path(out.train.output_dir).is_absolute()
    assert absolute_paths(out, "/elsewhere") == out  # idempotent


def test_torchvision_weights_names_are_not_paths(tmp_path: Path) -> None:
    (tmp_path / "imagenet").mkdir()  # a folder of that name changes nothing
    config = ExperimentConfig().replace({
        "teacher.backbone": "vgg16_bn", "teacher.weights": "imagenet",
        "student.backbone": "googlenet", "student.weights": "GoogLeNet_Weights.IMAGENET1K_V1",
        "train.weights_dir": "weights",
    })
    out = absolute_paths(config, tmp_path)
    assert (out.teacher.weights, out.student.weights) == (
        "imagenet", "GoogLeNet_Weights.IMAGENET1K_V1")
    assert out.train.weights_dir == str(tmp_path / "weights")


def test_every_preprocessing_variant_of_the_space_is_listed() -> None:
    base = ExperimentConfig().replace({"gaf.image_size": 32, "student.segments": 4})
    space = parse_space({
        "gaf.method": {"choice": ["gasf", "gadf"]},
        "gaf.image_size": {"choice": [32, 48]},
        "student.segments": {"choice": [4, 8, 20]},  # 20 segments keep 80 frames per clip
        "student.lr": {"loguniform": [1.0e-4, 1.0e-2]},  # no effect on preprocessing
    })
    configs = variants(base, space)
    specs = [PreprocessSpec.from_config(c) for c in configs]
    assert len(set(specs)) == len(specs) and specs[0] == PreprocessSpec.from_config(base)
    expected = {
        (m, s, 64 if seg <= 16 else 4 * seg)
        for m in ("gasf", "gadf") for s in (32, 48) for seg in (4, 8, 20)
    }
    assert {(p.gaf_method, p.image_size, p.max_frames) for p in specs} == expected


def test_a_ranged_preprocessing_key_builds_only_the_experiments_variant() -> None:
    base = ExperimentConfig()
    space = parse_space({"gaf.image_size": {"int": [16, 128]}})
    assert variants(base, space) == [base]


def test_caches_are_built_once_per_variant(tiny_root: Path, tmp_path: Path) -> None:
    base = ExperimentConfig().replace({
        "data.root": str(tiny_root), "data.cache_dir": str(tmp_path / "cache"),
        "data.frame_size": 32, "gaf.image_size": 16, "semantics.provider": "none",
        "train.progress": False,
    })
    space = parse_space({"gaf.method": {"choice": ["gasf", "gadf"]}})
    paths = build_caches(base, space, log=lambda m: None)
    assert len(set(paths)) == 2
    assert all((Path(p) / "manifest.json").exists() for p in paths)
    assert build_caches(base, space, log=lambda m: None) == paths  # found, not rebuilt
