"""Frozen, validated experiment configuration and its flat dotted key space.

One key space serves everything: YAML files (nested sections), the command line
(``--set distill.lambda_gsdm=0.5``), ``sakdn config``, search spaces and MLflow params all use
the same dotted keys (``section.field``) whose values are scalars (bool, int, float, str):

- lists of names (SPAMFM stages, GSDM layer pairs, a search's metrics and modes) are
  comma-separated strings (``conv3,fc2``); YAML lists are accepted where a key says so;
- a mapping with fixed keys is a nested section whose keys gain one more dot
  (``search.resources.gpu``);
- an open mapping or a list of mappings (an Optuna pruner's own arguments, points to try
  first) is one string in YAML flow style (``{n_startup_trials: 3}``), accepted as YAML in a
  file and as text after ``--set``, and printed back the same way.

An experiment file holds the training sections (``ExperimentConfig``: what one run needs) and
optionally a ``search:`` section (``SearchConfig``: how a search runs), both on this one
machinery: frozen dataclasses validated at construction, errors naming the key, the value and
the file or ``--set``. Precedence: code defaults < YAML file < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import yaml

from sakdn.errors import ConfigError

Scalar = bool | int | float | str

# The registered datasets (sakdn.data.registry.ADAPTERS, which this bottom layer does not import;
# tests/data/test_registry.py keeps the two in step).
DATASETS = ("synthetic", "utd_mhad", "berkeley_mhad", "mmact", "basic_motions")
TEACHER_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2")
GATES = ("cat", "add", "mul")


def _f(default: Any, **rules: Any) -> Any:
    """A dataclass field with validation rules (choices, lo, hi, lo_open, hi_open, check) and
    optionally ``encode``: ``(key, value) -> str``, the one flat form of a list or mapping."""
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
    """Base of every config section: type coercion and validation at construction.

    ``section`` is the dotted prefix of the section's keys. A field whose default is another
    section (``field(default_factory=SubSection)``) nests it: its keys are
    ``<section>.<field>.<key>`` (``SubSection.section`` says so).
    """

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Section):
                continue  # a nested section validated itself
            key = f"{self.section}.{f.name}"
            if "encode" in f.metadata:
                value = f.metadata["encode"](key, value)
            value = _coerce(key, value, f.type)
            object.__setattr__(self, f.name, value)
            _check_rules(key, value, f.metadata)
        self.check_together()

    def check_together(self) -> None:
        """Rules that involve several fields (none unless a section has some)."""

    def to_flat(self) -> dict[str, Scalar]:
        """Every key of the section (nested ones included) as ``{"section.field": scalar}``."""
        return section_to_flat(self)

    def replace(self, overrides: Mapping[str, Any], file: str | None = None) -> Section:
        """A copy with some dotted keys changed (validated like any other input)."""
        flat = self.to_flat()
        for key in overrides:
            if key not in flat:
                raise _unknown_key(key, overrides[key], file, FILE_SECTIONS)
        flat.update(overrides)
        return section_from_flat(type(self), flat, file)


def _nested(f: dataclasses.Field) -> type[Section] | None:
    """The section class a field nests, if it nests one."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and issubclass(factory, Section) else None


@functools.cache
def section_keys(cls: type[Section]) -> dict[str, dataclasses.Field]:
    """Every dotted key of a section class (nested sections included) → its field."""
    keys: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = _nested(f)
        if sub is not None:
            keys.update(section_keys(sub))
        else:
            keys[f"{cls.section}.{f.name}"] = f
    return keys


def section_to_flat(section: Section) -> dict[str, Scalar]:
    flat: dict[str, Scalar] = {}
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if isinstance(value, Section):
            flat.update(section_to_flat(value))
        else:
            flat[f"{section.section}.{f.name}"] = value
    return flat


def section_from_flat(
    cls: type[Section], flat: Mapping[str, Any], file: str | None = None
) -> Section:
    """A section from its dotted keys; missing keys take their defaults, unknown ones fail."""
    known = section_keys(cls)
    for key, value in flat.items():
        if key not in known:
            raise _unknown_key(key, value, file, FILE_SECTIONS)
    try:
        return _build_section(cls, flat)
    except ConfigError as err:
        raise err.with_file(file) if file else err


def _build_section(cls: type[Section], flat: Mapping[str, Any]) -> Section:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = _nested(f)
        key = f"{cls.section}.{f.name}"
        if sub is not None:
            kwargs[f.name] = _build_section(sub, flat)
        elif key in flat:
            kwargs[f.name] = flat[key]
    return cls(**kwargs)


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

    section: ClassVar[str] = "data"
    dataset: str = _f("synthetic", choices=DATASETS)
    root: str = _f("data/synthetic")
    protocol: str = _f("cross_subject")
    val_fraction: float = _f(0.25, lo=0.0, hi=0.9)  # share of training subjects held out
    # cross-validation over training subjects: with folds = k > 1, fold ``fold`` of k seeded
    # subject folds validates instead of the val_fraction carve-out (a search sets both)
    folds: int = _f(1, lo=1, hi=64)
    fold: int = _f(0, lo=0, hi=63)
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

    section: ClassVar[str] = "gaf"
    method: str = _f("gasf", choices=("gasf", "gadf"))
    image_size: int = _f(64, lo=8, hi=512)
    channel_scaling: bool = _f(True)  # per-channel min-max to [0, 1] (Matlab mat2gray)


@dataclass(frozen=True)
class SemanticsConfig(Section):
    """Class-name vectors: the targets of the teachers' fc2 and the GSDM ablation weights."""

    section: ClassVar[str] = "semantics"
    provider: str = _f("matrix", choices=("glove", "matrix", "sentence_transformers", "none"))
    path: str = _f("class_vectors.npy")  # GloVe file, .npy matrix, model name or directory;
    # relative paths resolve against data.root first (the synthetic dataset ships its matrix)
    aggregation: str = _f("sum", choices=("sum", "mean"))  # GloVe words → class (paper: sum)
    normalize: bool = _f(False)  # L2-normalise each class vector
    dim: int = _f(32, lo=1, hi=4096)  # fc1 / fc2 width when the provider is 'none'


@dataclass(frozen=True)
class TeacherConfig(Section):
    """One CNN branch per sensor, fused by SPAMFM (method doc §4, §10.2)."""

    section: ClassVar[str] = "teacher"
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

    section: ClassVar[str] = "student"
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

    section: ClassVar[str] = "distill"
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

    section: ClassVar[str] = "train"
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
    cls.section: cls
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


# --- the search: section -------------------------------------------------------------------

DEFAULT_METRIC = "student/best_val_acc"  # what a search optimises unless told otherwise
DEFAULT_STORAGE = "runs/search"  # where a search keeps its state unless told otherwise
SAMPLERS = ("tpe", "random", "gp", "cmaes", "nsga2")
PRUNERS = (
    "median", "percentile", "successive_halving", "hyperband", "wilcoxon", "patient",
    "threshold", "none",
)
SCHEDULERS = ("optuna", "asha", "fifo")
MODES = ("max", "min")
_SEARCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


def _load_yaml(key: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(key, text, f"not a YAML value: {err}") from None


def _names(key: str, value: Any) -> str:
    """A list of names in its flat form ``a,b``, from a YAML list, ``[a, b]`` or ``a,b``."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _load_yaml(key, value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise ConfigError(key, value, "must be a name or a list of names")
    return ",".join(_csv(value))


def _yaml_flow(kind: type, problem: str, ok: Callable[[Any], bool]) -> Callable[[str, Any], str]:
    """The encoder of a key holding a mapping (``kind=dict``) or a list as one YAML flow
    string: a value from YAML or Python is dumped, text (``--set``) is parsed and dumped again,
    so every input reaches the same text; empty text and None are the empty ``kind``."""

    def encode(key: str, value: Any) -> str:
        if isinstance(value, str):
            value = _load_yaml(key, value) if value.strip() else None
        if value is None:
            value = kind()
        if isinstance(value, Mapping) and kind is dict:
            value = dict(value)
        if not isinstance(value, kind) or not ok(value):
            raise ConfigError(key, value, problem)
        try:
            text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                                  width=math.inf)
        except yaml.YAMLError as err:
            raise ConfigError(key, value, f"{problem} ({err})") from None
        return text.strip()

    return encode


def _string_keys(value: Mapping) -> bool:
    return all(isinstance(k, str) for k in value)


_options = _yaml_flow(dict, "must map option names to values, e.g. {n_startup_trials: 3}",
                      _string_keys)
_points = _yaml_flow(list, "must be a list of {key: value} maps",
                     lambda v: all(isinstance(p, Mapping) and _string_keys(p) for p in v))


def _check_metrics(value: str) -> str | None:
    names = _csv(value)
    if not names:
        return "names no metric"
    return "names a metric twice" if len(set(names)) != len(names) else None


def _check_modes(value: str) -> str | None:
    bad = [m for m in _csv(value) if m not in MODES] or ([] if _csv(value) else [""])
    return "must be one of " + ", ".join(MODES) if bad else None


def _check_search_name(value: str) -> str | None:
    if value and not _SEARCH_NAME.match(value):
        return ("use letters, digits, '_', '-' or '.' (it names a folder, an MLflow tag and "
                "an Optuna study)")
    return None


def _check_storage(value: str) -> str | None:
    if not value.strip():
        return "must name a folder"
    if _URI.match(value):
        return ("must be a filesystem path (a shared mount on a cluster): trial work dirs and "
                "the teacher store live there")
    return None


def _check_gpu(value: float) -> str | None:
    if value > 1 and not value.is_integer():
        return "fractions are allowed below 1 GPU only (0.25, 0.5, or a whole number)"
    return None


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must be a non-empty string"


@dataclass(frozen=True)
class ResourcesConfig(Section):
    """What one trial holds: CPUs and GPUs (a fraction of one GPU lets trials share it)."""

    section: ClassVar[str] = "search.resources"
    cpu: float = _f(1.0, lo=0.0)
    gpu: float = _f(0.0, lo=0.0, check=_check_gpu)

    def check_together(self) -> None:
        if self.cpu == 0 and self.gpu == 0:
            raise ConfigError("search.resources", {"cpu": self.cpu, "gpu": self.gpu},
                              "a trial needs some cpu or gpu")

    def as_tune(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}


@dataclass(frozen=True)
class SearchConfig(Section):
    """The ``search:`` section of an experiment file: what a search optimises and how it runs
    (every key in docs/experiments.md).

    Values are as the file and ``--set`` give them. An empty string stands for a value the
    search derives when it starts (``sakdn.search.experiment.resolve``: the name from the
    file, paths made absolute, stores under ``storage_path``); ``space`` is required then.
    """

    section: ClassVar[str] = "search"
    space: str = _f("")
    metric: str = _f(DEFAULT_METRIC, encode=_names, check=_check_metrics)
    mode: str = _f("max", encode=_names, check=_check_modes)  # one for all, or one per metric
    prune_metric: str = _f("")  # empty: the first metric
    num_samples: int = _f(8, lo=1)
    max_concurrent_trials: int = _f(2, lo=1)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sampler: str = _f("tpe", choices=SAMPLERS)
    sampler_options: str = _f("{}", encode=_options)
    pruner: str = _f("median", choices=PRUNERS)
    pruner_options: str = _f("{}", encode=_options)
    scheduler: str = _f("optuna", choices=SCHEDULERS)
    scheduler_options: str = _f("{}", encode=_options)
    seed: int = _f(0, lo=0)
    name: str = _f("", check=_check_search_name)  # empty: the experiment file's stem
    storage_path: str = _f(DEFAULT_STORAGE, check=_check_storage)
    tracking_uri: str = _f("")  # empty: MLFLOW_TRACKING_URI, else <storage_path>/mlflow.db
    experiment_name: str = _f("sakdn", check=_not_empty)
    study_storage: str = _f("")  # empty: sqlite:///<storage_path>/optuna.db
    study_name: str = _f("")  # empty: the search's name
    teacher_store: str = _f("")  # empty: <storage_path>/<name>/teacher_store; none: off
    time_budget_s: float = _f(0.0, lo=0.0)  # 0: none
    max_failures: int = _f(2, lo=0)
    keep_checkpoints: int = _f(2, lo=1)
    # Tune keeps a trial checkpoint every k epochs of a stage and at its end: a trial moved to
    # another node repeats at most k - 1 epochs (on its own node it continues from the last
    # epoch, which training checkpoints in its work dir every epoch)
    checkpoint_every: int = _f(5, lo=1)
    # cross-validated trials: k > 1 folds of the training subjects; a trial trains k times
    # and its objective is the mean over folds (pruner: wilcoxon or none)
    folds: int = _f(1, lo=1, hi=64)
    log_models: bool = _f(True)
    flush_timeout_s: float = _f(120.0, lo=0.0)
    points_to_evaluate: str = _f("[]", encode=_points)
    # trial 0 trains the experiment's own values of the space's keys (before points_to_evaluate):
    # the search shows whether it finds better than where it started
    start_point: bool = _f(False)

    def check_together(self) -> None:
        metrics, modes = _csv(self.metric), _csv(self.mode)
        if len(modes) not in (1, len(metrics)):
            raise ConfigError("search.mode", self.mode,
                              f"give one mode, or one per metric ({len(metrics)})")
        if self.folds > 1 and (self.pruner not in ("wilcoxon", "none")
                               or self.scheduler != "optuna"):
            raise ConfigError(
                "search.folds", self.folds, "cross-validated trials prune on their folds: "
                "use search.pruner wilcoxon (or none) with search.scheduler optuna",
            )
        if self.folds > 1 and self.pruner == "wilcoxon":
            # the smallest one-sided Wilcoxon p of n paired folds, all worse, is 2^-n
            threshold = float(self.pruner_kwargs.get("p_threshold", 0.1))  # Optuna's default
            if 2.0 ** -self.folds >= threshold:
                raise ConfigError(
                    "search.pruner_options", self.pruner_options,
                    f"with {self.folds} folds the Wilcoxon pruner can never stop a trial: "
                    f"its smallest p, every fold worse than the best trial's, is "
                    f"2^-{self.folds} = {2.0 ** -self.folds:g}, not below p_threshold "
                    f"{threshold:g}; raise p_threshold (above {2.0 ** -(self.folds - 1):g} it "
                    f"can stop a trial before its last fold) or use more folds",
                )
        if self.sampler == "nsga2" and len(metrics) < 2:
            raise ConfigError(
                "search.sampler", self.sampler, "nsga2 is multi-objective: give several "
                "metrics and modes, e.g. metric: [student/best_val_acc, student/gflops], "
                "mode: [max, min]",
            )

    @property
    def metrics(self) -> tuple[str, ...]:
        return _csv(self.metric)

    @property
    def modes(self) -> tuple[str, ...]:
        """One mode per metric (a single mode applies to every metric)."""
        modes = _csv(self.mode)
        return modes * len(self.metrics) if len(modes) == 1 else modes

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def objective(self) -> tuple[str | list[str], str | list[str]]:
        """(metric, mode) as Optuna / Tune want them: scalars for one objective."""
        if self.multi_objective:
            return list(self.metrics), list(self.modes)
        return self.metrics[0], self.modes[0]

    @property
    def search_dir(self) -> Path:
        """``<storage_path>/<name>``: Tune state, trial work dirs, teacher store."""
        return Path(self.storage_path) / self.name

    @property
    def sampler_kwargs(self) -> dict[str, Any]:
        return yaml.safe_load(self.sampler_options)

    @property
    def pruner_kwargs(self) -> dict[str, Any]:
        return yaml.safe_load(self.pruner_options)

    @property
    def scheduler_kwargs(self) -> dict[str, Any]:
        return yaml.safe_load(self.scheduler_options)

    @property
    def points(self) -> list[dict[str, Any]]:
        return yaml.safe_load(self.points_to_evaluate)


# Every top-level section an experiment file may hold.
FILE_SECTIONS: dict[str, type[Section]] = {**SECTIONS, SearchConfig.section: SearchConfig}


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
    """Every valid dotted key of a training run (``ExperimentConfig``)."""
    return list(to_flat(ExperimentConfig()).keys())


@functools.cache
def _file_fields() -> dict[str, dataclasses.Field]:
    return {k: f for cls in FILE_SECTIONS.values() for k, f in section_keys(cls).items()}


def key_type(key: str) -> str:
    """'bool' | 'int' | 'float' | 'str' for a dotted key of an experiment file (ConfigError
    if unknown)."""
    f = _file_fields().get(key)
    if f is None:
        raise _unknown_key(key, None, None, FILE_SECTIONS)
    return f.type if isinstance(f.type, str) else f.type.__name__


def to_flat(config: ExperimentConfig) -> dict[str, Scalar]:
    flat: dict[str, Scalar] = {}
    for section in SECTIONS:
        flat.update(section_to_flat(getattr(config, section)))
    return flat


def _unknown_key(
    key: str, value: Any, file: str | None,
    sections: Mapping[str, type[Section]] = SECTIONS,
) -> ConfigError:
    section = key.partition(".")[0]
    if section in sections:
        names = [k.partition(".")[2] for k in section_keys(sections[section])]
        hint = f"unknown key; {section} has " + ", ".join(names)
    elif section in FILE_SECTIONS:
        hint = ("a search key: sakdn search reads it (sakdn config shows it); a training run "
                "ignores the search section")
    else:
        hint = "unknown section; sections are " + ", ".join(sections)
    return ConfigError(key, value, hint, file)


def from_flat(flat: Mapping[str, Any], file: str | None = None) -> ExperimentConfig:
    """Build a config from dotted keys; missing keys take their defaults."""
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section = key.partition(".")[0]
        if section not in SECTIONS or key not in section_keys(SECTIONS[section]):
            raise _unknown_key(key, value, file)
        per_section[section][key] = value
    return ExperimentConfig(**{
        s: section_from_flat(SECTIONS[s], kw, file) for s, kw in per_section.items()
    })


def parse_value(key: str, text: str) -> Scalar:
    """Parse a command-line value for ``key`` according to the key's type."""
    t = key_type(key)
    if t == "str":
        return text
    loaded = _load_yaml(key, text) if text.strip() else ""
    if t == "float" and isinstance(loaded, int) and not isinstance(loaded, bool):
        return float(loaded)
    if t == "float" and isinstance(loaded, str):
        try:
            return float(loaded)
        except ValueError:
            pass
    return loaded


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Scalar]:
    """``["distill.lambda_gsdm=0.5", ...]`` → ``{"distill.lambda_gsdm": 0.5}``.

    A nested section may be set whole, as in YAML: ``search.resources={cpu: 2, gpu: 1}``
    gives ``search.resources.cpu`` and ``search.resources.gpu``.
    """
    out: dict[str, Scalar] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(key, None, "expected key=value after --set", "--set")
        try:
            group = _nested_sections().get(key)
            if group is not None:
                out.update(_flatten_section(group, key, _load_yaml(key, text), "--set"))
            else:
                out[key] = parse_value(key, text.strip())
        except ConfigError as err:
            raise ConfigError(err.key, text, err.problem, "--set") from None
    return out


@functools.cache
def _nested_sections() -> dict[str, type[Section]]:
    """Every nested section of an experiment file by its prefix (``search.resources``)."""
    found: dict[str, type[Section]] = {}
    todo = list(FILE_SECTIONS.values())
    while todo:
        for f in dataclasses.fields(todo.pop()):  # type: ignore[arg-type]
            sub = _nested(f)
            if sub is not None:
                found[sub.section] = sub
                todo.append(sub)
    return found


def flatten_nested(tree: Mapping[str, Any], file: str | None = None) -> dict[str, Any]:
    """``{"distill": {"lambda_gsdm": 1}}`` → ``{"distill.lambda_gsdm": 1}``.

    Dotted keys at the top level are accepted too (``distill.lambda_gsdm: 1``). A nested
    section's mapping is flattened too (``search: {resources: {gpu: 1}}`` →
    ``search.resources.gpu``); any other mapping or list stays one value.
    """
    flat: dict[str, Any] = {}
    for section, body in tree.items():
        if not isinstance(section, str):
            raise ConfigError(str(section), body, "keys must be strings", file)
        if "." in section:
            flat[section] = body
            continue
        if section not in FILE_SECTIONS:
            raise _unknown_key(section + ".?", body, file, FILE_SECTIONS)
        if body is not None:
            flat.update(_flatten_section(FILE_SECTIONS[section], section, body, file))
    return flat


def _flatten_section(
    cls: type[Section], prefix: str, body: Any, file: str | None
) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ConfigError(prefix, body, "a section must be a mapping of keys", file)
    nested = {f.name: sub for f in dataclasses.fields(cls) if (sub := _nested(f))}
    flat: dict[str, Any] = {}
    for name, value in body.items():
        key = f"{prefix}.{name}"
        if name in nested and value is not None:
            flat.update(_flatten_section(nested[name], key, value, file))
        else:
            flat[key] = value
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


def _is_search_key(key: str) -> bool:
    return key.partition(".")[0] == SearchConfig.section


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """The training configuration of an experiment file: defaults < YAML file < overrides.

    The file's ``search:`` section is not read (a training run ignores it); a search key among
    ``overrides`` is an error that says so.
    """
    file = str(path) if path is not None else None
    tree = read_yaml(path) if path is not None else {}
    training = {k: v for k, v in tree.items() if k != SearchConfig.section}
    flat = {k: v for k, v in flatten_nested(training, file).items() if not _is_search_key(k)}
    config = from_flat(flat, file=file)
    if overrides:
        config = config.replace(overrides, file="--set")
    return config


def load_experiment(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[ExperimentConfig, SearchConfig | None]:
    """An experiment file's training configuration and its ``search:`` section, each
    defaults < YAML file < overrides (``search.*`` keys go to the section).

    The section is None when neither the file nor an override names a search key.
    """
    file = str(path) if path is not None else None
    tree = read_yaml(path) if path is not None else {}
    flat = flatten_nested(tree, file)
    overrides = dict(overrides or {})
    training = {k: v for k, v in overrides.items() if not _is_search_key(k)}
    config = from_flat({k: v for k, v in flat.items() if not _is_search_key(k)}, file=file)
    if training:
        config = config.replace(training, file="--set")
    search_flat = {k: v for k, v in flat.items() if _is_search_key(k)}
    search_set = {k: v for k, v in overrides.items() if _is_search_key(k)}
    if not search_flat and not search_set and SearchConfig.section not in tree:
        return config, None
    search = section_from_flat(SearchConfig, search_flat, file)
    if search_set:
        search = search.replace(search_set, file="--set")
    return config, search


def dump_yaml(config: ExperimentConfig) -> str:
    """The resolved config as nested YAML (what a run saves beside its results)."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
