"""Frozen, validated experiment configuration and its flat dotted key space.

One key space serves everything: YAML files (nested sections), the command line
(``--set distill.lambda_gsdm=0.5``), search spaces and MLflow params all use the same dotted
keys (``section.field``) whose values are scalars (bool, int, float, str). List-like settings
(SPAMFM stages, GSDM layer pairs) are comma-separated strings so that they stay scalars.

Precedence: code defaults < YAML file < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import yaml

from sakdn.errors import ConfigError

Scalar = bool | int | float | str

# The registered datasets (sakdn.data.registry.ADAPTERS, which this bottom layer does not import;
# tests/data/test_registry.py keeps the two in step).
DATASETS = ("synthetic", "utd_mhad", "berkeley_mhad", "mmact", "basic_motions")
TEACHER_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2")
GATES = ("cat", "add", "mul")


def _f(default: Any, **rules: Any) -> Any:
    """A dataclass field with validation rules (choices, lo, hi, lo_open, hi_open, check)."""
    return field(default=default, metadata=rules)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _check_subset(allowed: tuple[str, ...], allow_empty: bool) -> Any:
    def check(value: str) -> str | None:
        if value in ("all",):
            return None
        if value in ("none", ""):
            return None if allow_empty else "must name at least one of " + ", ".join(allowed)
        parts = _csv(value)
        bad = [p for p in parts if p not in allowed]
        if bad:
            return f"unknown {bad[0]!r}; use 'all', 'none' or a comma list of {', '.join(allowed)}"
        if len(set(parts)) != len(parts):
            return "names an entry twice"
        return None

    return check


def parse_subset(value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """'all' / 'none' / 'a,b' → the tuple of chosen names, in ``allowed`` order."""
    if value == "all":
        return allowed
    if value in ("none", ""):
        return ()
    chosen = set(_csv(value))
    return tuple(a for a in allowed if a in chosen)


class Section:
    """Base of every config section: type coercion and validation at construction."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            key = f"{self.name}.{f.name}"
            value = getattr(self, f.name)
            value = _coerce(key, value, f.type)
            object.__setattr__(self, f.name, value)
            _check_rules(key, value, f.metadata)


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    t = type_name if isinstance(type_name, str) else type_name.__name__
    if t == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "must be true or false")
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(key, value, "must be an integer")
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, "must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(key, value, "must be finite")
        return value
    if t == "str":
        if not isinstance(value, str):
            raise ConfigError(key, value, "must be a string")
        return value
    raise TypeError(f"unsupported config field type {t} for {key}")


def _check_rules(key: str, value: Any, rules: Mapping[str, Any]) -> None:
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(key, value, "must be one of " + ", ".join(map(str, rules["choices"])))
    if "lo" in rules:
        lo = rules["lo"]
        if value < lo or (rules.get("lo_open") and value == lo):
            raise ConfigError(key, value, f"must be {'>' if rules.get('lo_open') else '>='} {lo}")
    if "hi" in rules:
        hi = rules["hi"]
        if value > hi or (rules.get("hi_open") and value == hi):
            raise ConfigError(key, value, f"must be {'<' if rules.get('hi_open') else '<='} {hi}")
    if "check" in rules:
        problem = rules["check"](value)
        if problem:
            raise ConfigError(key, value, problem)


@dataclass(frozen=True)
class DataConfig(Section):
    """Which dataset, where it lives, how it is split and how frames are prepared."""

    name: ClassVar[str] = "data"
    dataset: str = _f("synthetic", choices=DATASETS)
    root: str = _f("data/synthetic")
    protocol: str = _f("cross_subject")
    val_fraction: float = _f(0.25, lo=0.0, hi=0.9)  # share of training subjects held out
    split_seed: int = _f(0, lo=0)
    train_subset: int = _f(1, choices=(1, 2, 4, 8))  # MMAct 1/2, 1/4, 1/8 training subsets
    # the student alone trains on every k-th training clip (the teachers on all of them): a
    # data-starved student, where distillation from strong teachers should help most
    student_subset: int = _f(1, choices=(1, 2, 4, 8))
    frame_size: int = _f(64, lo=16, hi=512)  # side of the resized video frames
    missing_sensor: str = _f("skip", choices=("skip", "zero_fill"))
    skip_bad_samples: bool = _f(False)
    cache_dir: str = _f("")  # empty: <root>/.sakdn-cache
    num_workers: int = _f(0, lo=0, hi=64)


@dataclass(frozen=True)
class GAFConfig(Section):
    """Gramian-angular-field virtual images (method doc §3, §10.1)."""

    name: ClassVar[str] = "gaf"
    method: str = _f("gasf", choices=("gasf", "gadf"))
    image_size: int = _f(64, lo=8, hi=512)
    channel_scaling: bool = _f(True)  # per-channel min-max to [0, 1] (Matlab mat2gray)


@dataclass(frozen=True)
class SemanticsConfig(Section):
    """Class-name vectors: the targets of the teachers' fc2 and the GSDM ablation weights."""

    name: ClassVar[str] = "semantics"
    provider: str = _f("matrix", choices=("glove", "matrix", "sentence_transformers", "none"))
    path: str = _f("class_vectors.npy")  # GloVe file, .npy matrix, model name or directory;
    # relative paths resolve against data.root first (the synthetic dataset ships its matrix)
    aggregation: str = _f("sum", choices=("sum", "mean"))  # GloVe words → class (paper: sum)
    normalize: bool = _f(False)  # L2-normalise each class vector
    dim: int = _f(32, lo=1, hi=4096)  # fc1 / fc2 width when the provider is 'none'


@dataclass(frozen=True)
class TeacherConfig(Section):
    """One CNN branch per sensor, fused by SPAMFM (method doc §4, §10.2)."""

    name: ClassVar[str] = "teacher"
    backbone: str = _f("small_cnn", choices=("small_cnn", "vgg16_bn", "resnet18"))
    # "" (random), imagenet, a torchvision weights name or a local state-dict file (weights.md)
    weights: str = _f("")
    width: int = _f(16, lo=4, hi=256)  # small_cnn base channel count
    spamfm_stages: str = _f("all", check=_check_subset(TEACHER_STAGES, allow_empty=True))
    spamfm_gates: str = _f("cat,add,mul", check=_check_subset(GATES, allow_empty=False))
    spamfm_graph: bool = _f(True)
    spamfm_reduction: int = _f(0, lo=0, hi=256)  # 0: 2·M as in the reference code
    semantic_loss: str = _f("l1", choices=("l1", "mse", "cosine"))
    semantic_weight: float = _f(1.0, lo=0.0, hi=100.0)
    optimizer: str = _f("adam", choices=("adam", "adamw", "sgd"))
    lr: float = _f(2e-4, lo=0.0, lo_open=True, hi=1.0)
    weight_decay: float = _f(1e-5, lo=0.0, hi=1.0)
    epochs: int = _f(100, lo=1, hi=1000)
    batch_size: int = _f(16, lo=2, hi=1024)  # also the SPAMFM graph size
    lr_decay_at: float = _f(0.0, lo=0.0, hi=1.0, hi_open=True)  # fraction of epochs; 0: none
    lr_gamma: float = _f(0.5, lo=0.0, lo_open=True, hi=1.0)


@dataclass(frozen=True)
class StudentConfig(Section):
    """Segment-based video student (method doc §5, §10.3)."""

    name: ClassVar[str] = "student"
    backbone: str = _f("small_cnn", choices=("small_cnn", "resnet18", "googlenet"))
    weights: str = _f("")  # as teacher.weights; the frames follow its normalisation
    width: int = _f(16, lo=4, hi=256)
    segments: int = _f(8, lo=1, hi=64)
    consensus: str = _f("trn", choices=("avg", "trn"))
    trn_relations: int = _f(3, lo=1, hi=64)  # relations per scale (reference: 3)
    dropout: float = _f(0.8, lo=0.0, hi=0.99)
    partial_bn: bool = _f(True)
    optimizer: str = _f("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = _f(1e-3, lo=0.0, lo_open=True, hi=1.0)
    weight_decay: float = _f(5e-4, lo=0.0, hi=1.0)
    momentum: float = _f(0.9, lo=0.0, hi=0.999)
    epochs: int = _f(100, lo=1, hi=1000)
    batch_size: int = _f(16, lo=2, hi=1024)
    lr_decay_at: float = _f(0.5, lo=0.0, hi=1.0, hi_open=True)
    lr_gamma: float = _f(0.1, lo=0.0, lo_open=True, hi=1.0)
    augment: bool = _f(True)  # random crop-and-resize + horizontal flip in training


@dataclass(frozen=True)
class DistillConfig(Section):
    """Student loss weights and the GSDM variant (method doc §6, §10.4)."""

    name: ClassVar[str] = "distill"
    lambda_st: float = _f(0.01, lo=0.0, hi=100.0)
    temperature: float = _f(4.0, lo=0.0, lo_open=True, hi=100.0)
    lambda_sp: float = _f(1.0, lo=0.0, hi=100.0)
    lambda_gsdm: float = _f(1.0, lo=0.0, hi=1000.0)
    lambda_sp_gram: float = _f(0.0, lo=0.0, hi=10000.0)
    gsdm_pairs: str = _f("all", check=_check_subset(("1", "2", "3", "4", "5"), allow_empty=True))
    # ablation_cam: graph-guided channel ablation (spatial maps); plain / graph: the reference
    # scripts' scalar weights (one per sample); docs/method.md, "GSDM weighting"
    ablation_weight: str = _f(
        "ablation_cam", choices=("ablation_cam", "plain", "graph", "prob_drop", "none")
    )
    ablation_relu: bool = _f(True)  # φ = ReLU on weight terms: only evidence for the class counts
    graph_sigma2: float = _f(1.0, lo=0.0, lo_open=True, hi=1000.0)
    map_norm: str = _f("minmax", choices=("minmax", "l2"))  # per sample, never batch-global
    map_resize: str = _f("bilinear", choices=("bilinear", "adaptive_avg"))
    teacher_aggregation: str = _f("mean", choices=("mean", "confidence"))


@dataclass(frozen=True)
class TrainConfig(Section):
    """Run-level settings shared by both stages."""

    name: ClassVar[str] = "train"
    seed: int = _f(0, lo=0)
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(True)  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = _f(False)
    deterministic: bool = _f(True)
    num_threads: int = _f(0, lo=0, hi=256)  # 0: leave torch's default
    output_dir: str = _f("runs/train")
    # the directory holding torchvision weights files (imagenet); empty: torch's cache,
    # $TORCH_HOME/hub/checkpoints. A search fills it in with the directory its driver checked.
    weights_dir: str = _f("")
    progress: bool = _f(True)
    # also test the kept (validation-chosen) model once at the end of a non-final run: what an
    # ablation reports; nothing is ever selected on the test split
    evaluate_test: bool = _f(False)
    label: str = _f("")  # free text recorded with the run (an ablation's variant); changes nothing
    # with a teacher store: keep the frozen teachers' student-stage outputs beside the stored
    # teacher set, so runs that reuse it skip the teachers' forward passes
    cache_teacher_outputs: bool = _f(True)


SECTIONS: dict[str, type[Section]] = {
    cls.name: cls
    for cls in (
        DataConfig,
        GAFConfig,
        SemanticsConfig,
        TeacherConfig,
        StudentConfig,
        DistillConfig,
        TrainConfig,
    )
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run (one trial) needs, validated at construction."""

    data: DataConfig = field(default_factory=DataConfig)
    gaf: GAFConfig = field(default_factory=GAFConfig)
    semantics: SemanticsConfig = field(default_factory=SemanticsConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_flat(self) -> dict[str, Scalar]:
        """All keys as ``{"section.field": scalar}``, in declaration order."""
        return to_flat(self)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], file: str | None = None) -> ExperimentConfig:
        return from_flat(flat, file=file)

    def replace(self, overrides: Mapping[str, Any], file: str | None = None) -> ExperimentConfig:
        """A copy with some dotted keys changed (validated like any other input)."""
        flat = self.to_flat()
        for key in overrides:
            if key not in flat:
                raise _unknown_key(key, overrides[key], file)
        flat.update(overrides)
        return from_flat(flat, file=file)


def all_keys() -> list[str]:
    """Every valid dotted key."""
    return list(to_flat(ExperimentConfig()).keys())


def key_type(key: str) -> str:
    """'bool' | 'int' | 'float' | 'str' for a dotted key (ConfigError if unknown)."""
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    if name not in fields:
        raise _unknown_key(key, None, None)
    t = fields[name].type
    return t if isinstance(t, str) else t.__name__


def to_flat(config: ExperimentConfig) -> dict[str, Scalar]:
    flat: dict[str, Scalar] = {}
    for section in SECTIONS:
        sec = getattr(config, section)
        for f in dataclasses.fields(sec):
            flat[f"{section}.{f.name}"] = getattr(sec, f.name)
    return flat


def _unknown_key(key: str, value: Any, file: str | None) -> ConfigError:
    section = key.partition(".")[0]
    if section not in SECTIONS:
        hint = "unknown section; sections are " + ", ".join(SECTIONS)
    else:
        names = [f.name for f in dataclasses.fields(SECTIONS[section])]
        hint = f"unknown key; {section} has " + ", ".join(names)
    return ConfigError(key, value, hint, file)


def from_flat(flat: Mapping[str, Any], file: str | None = None) -> ExperimentConfig:
    """Build a config from dotted keys; missing keys take their defaults."""
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        cls = SECTIONS.get(section)
        if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
            raise _unknown_key(key, value, file)
        per_section[section][name] = value
    try:
        return ExperimentConfig(**{s: SECTIONS[s](**kw) for s, kw in per_section.items()})
    except ConfigError as err:
        raise err.with_file(file) if file else err


def parse_value(key: str, text: str) -> Scalar:
    """Parse a command-line value for ``key`` according to the key's type."""
    t = key_type(key)
    loaded = yaml.safe_load(text) if text.strip() else ""
    if t == "str":
        return text
    if t == "float" and isinstance(loaded, int) and not isinstance(loaded, bool):
        return float(loaded)
    if t == "float" and isinstance(loaded, str):
        try:
            return float(loaded)
        except ValueError:
            pass
    return loaded


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Scalar]:
    """``["distill.lambda_gsdm=0.5", ...]`` → ``{"distill.lambda_gsdm": 0.5}``."""
    out: dict[str, Scalar] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(key, None, "expected key=value after --set", "--set")
        try:
            out[key] = parse_value(key, text.strip())
        except ConfigError as err:
            raise ConfigError(key, text, err.problem, "--set") from None
    return out


def flatten_nested(tree: Mapping[str, Any], file: str | None = None) -> dict[str, Any]:
    """``{"distill": {"lambda_gsdm": 1}}`` → ``{"distill.lambda_gsdm": 1}``.

    Dotted keys at the top level are accepted too (``distill.lambda_gsdm: 1``).
    """
    flat: dict[str, Any] = {}
    for section, body in tree.items():
        if not isinstance(section, str):
            raise ConfigError(str(section), body, "keys must be strings", file)
        if "." in section:
            flat[section] = body
            continue
        if section not in SECTIONS:
            raise _unknown_key(section + ".?", body, file)
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(section, body, "a section must be a mapping of keys", file)
        for name, value in body.items():
            flat[f"{section}.{name}"] = value
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError("<file>", str(path), f"cannot read: {err.strerror}", str(path)) from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError("<file>", str(path), f"invalid YAML: {err}", str(path)) from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError("<file>", type(tree).__name__, "must be a YAML mapping", str(path))
    return tree


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    extra_sections: tuple[str, ...] = ("search",),
) -> ExperimentConfig:
    """Defaults < YAML file < overrides. Sections in ``extra_sections`` are ignored here."""
    flat: dict[str, Any] = {}
    file = str(path) if path is not None else None
    if path is not None:
        tree = {k: v for k, v in read_yaml(path).items() if k not in extra_sections}
        flat = flatten_nested(tree, file)
    config = from_flat(flat, file=file)
    if overrides:
        config = config.replace(overrides, file="--set")
    return config


def dump_yaml(config: ExperimentConfig) -> str:
    """The resolved config as nested YAML (what a run saves beside its results)."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
