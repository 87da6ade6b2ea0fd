"""Search-space files: which config keys a search varies, how, and under which conditions.

A space file maps dotted config keys (the keys of ``sakdn.config``) to exactly one distribution::

    teacher.lr: {loguniform: [3.0e-5, 1.0e-3]}
    student.trn_relations: {int: [2, 6], when: {student.consensus: trn}}

The whole file is validated when it is loaded, so a typo fails in the driver before Ray starts,
with a ``SearchSpaceError`` naming the file, the key and the problem. Sampling is define-by-run
(``trial.suggest_*``), in dependency order, so a conditional key is only asked for when its
condition holds and Optuna's samplers see the real, conditional structure of the space.

A condition reads the value the trial will train with: the sampled value when the key it names
is sampled in this trial, otherwise the experiment's value (``base``). The format is described
with examples in ``docs/search-spaces.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sakdn.config import ExperimentConfig, Scalar, all_keys, from_flat, key_type
from sakdn.errors import ConfigError, SearchSpaceError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice", "fixed")
OPTIONS = ("step", "log", "when")
FILE_KEY = "<file>"  # the key named by errors about the file as a whole

_YAML_NUMBER_HINT = " (YAML reads 1e-3 as text: write 1.0e-3)"


@dataclass(frozen=True)
class Condition:
    """The owning key is sampled only while ``key`` takes one of ``values``."""

    key: str
    values: tuple[Scalar, ...]

    def holds(self, value: Any) -> bool:
        return any(_same(value, v) for v in self.values)


@dataclass(frozen=True)
class Param:
    """One searched key: its distribution and the conditions under which it is sampled.

    ``kind`` is one of ``DISTRIBUTIONS``; ``low``/``high``/``step``/``log`` describe the ranges,
    ``choices`` the categorical values (for ``fixed``: the one value).
    """

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Scalar, ...] = ()
    when: tuple[Condition, ...] = ()

    @property
    def value(self) -> Scalar:
        """The value of a ``fixed`` parameter."""
        if self.kind != "fixed":
            raise AttributeError(f"{self.key} is {self.kind}, not fixed")
        return self.choices[0]

    def distribution(self) -> BaseDistribution | None:
        """The Optuna distribution sampled from (None for ``fixed``: nothing is sampled)."""
        if self.kind in ("loguniform", "uniform"):
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        return None

    def sample(self, trial: optuna.trial.BaseTrial) -> Scalar:
        """Ask ``trial`` for this key's value (define-by-run)."""
        if self.kind in ("loguniform", "uniform"):
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        return self.value

    def can_take(self, value: Any) -> bool:
        """Whether a trial sampling this parameter can produce ``value``."""
        if self.kind in ("choice", "fixed"):
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.kind == "int":
            return (value - self.low) % (self.step or 1) == 0
        return True

    def describe(self) -> str:
        if self.kind in ("choice", "fixed"):
            return f"{self.kind} {list(self.choices) if self.kind == 'choice' else self.value!r}"
        extra = f", step {self.step}" if self.step else ""
        if self.log and self.kind == "int":
            extra = ", log"
        return f"{self.kind} [{self.low}, {self.high}{extra}]"


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: parameters in dependency order (conditions before users)."""

    params: tuple[Param, ...]
    file: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __contains__(self, key: object) -> bool:
        return any(p.key == key for p in self.params)

    def __getitem__(self, key: str) -> Param:
        for p in self.params:
            if p.key == key:
                return p
        raise KeyError(key)

    def suggest(
        self, trial: optuna.trial.BaseTrial, base: Mapping[str, Scalar] | None = None
    ) -> dict[str, Scalar]:
        """Sample one configuration with ``trial``; returns only the keys this trial sets.

        ``base`` is the experiment's flat config (``ExperimentConfig.to_flat()``): it supplies
        the values of condition keys that are not sampled; keys missing from it take the code
        defaults. Keys whose condition fails are left out, so they keep the experiment's value.
        ``fixed`` keys whose condition holds are included (they override the experiment).
        """
        effective = dict(_defaults())
        effective.update(base or {})
        chosen: dict[str, Scalar] = {}
        for p in self.params:
            if all(c.holds(effective[c.key]) for c in p.when):
                chosen[p.key] = effective[p.key] = p.sample(trial)
        return chosen

    def start_point(self, base: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """The experiment's own values of the keys a trial would sample (``search.start_point``):
        the configuration the search starts from, as a point to evaluate. Keys whose condition
        fails under those values are left out, as :meth:`suggest` leaves them out. A value the
        space cannot produce is an error naming the key (the study could not hold it)."""
        effective = {**_defaults(), **base}
        point: dict[str, Scalar] = {}
        for p in self.params:
            if p.kind == "fixed" or not all(c.holds(effective[c.key]) for c in p.when):
                continue
            value = effective[p.key]
            if not p.can_take(value):
                raise SearchSpaceError(self.file, p.key, f"search.start_point: the experiment's "
                                       f"value {value!r} is outside the space ({p.describe()})")
            point[p.key] = value
        return point

    def to_optuna_distributions(self) -> dict[str, BaseDistribution]:
        """Every sampled key's Optuna distribution (``fixed`` keys are not sampled)."""
        out: dict[str, BaseDistribution] = {}
        for p in self.params:
            dist = p.distribution()
            if dist is not None:
                out[p.key] = dist
        return out


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (safe loader; duplicate keys rejected)."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SearchSpaceError(file, FILE_KEY, f"cannot read: {err.strerror}") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as dup:
        raise SearchSpaceError(
            file, dup.key, f"listed twice (again on line {dup.line}); give one distribution per key"
        ) from None
    except yaml.YAMLError as err:
        raise SearchSpaceError(file, FILE_KEY, f"invalid YAML: {err}") from None
    return parse_space({} if tree is None else tree, file=file)


def parse_space(mapping: Any, file: str | None = None) -> SearchSpace:
    """Validate a ``{dotted key: distribution spec}`` mapping into a ``SearchSpace``."""
    if not isinstance(mapping, Mapping):
        raise SearchSpaceError(
            file, FILE_KEY, f"must map config keys to distributions, got {type(mapping).__name__}"
        )
    if not mapping:
        raise SearchSpaceError(file, FILE_KEY, "names no keys to search")
    known = set(all_keys())
    params = {}
    for key, spec in mapping.items():
        params[key] = _parse_param(key, spec, known, file)
    for p in params.values():
        _check_reachable(p, params, file)
    return SearchSpace(_dependency_order(params, file), file)


# --- one parameter --------------------------------------------------------------------------


def _parse_param(key: Any, spec: Any, known: set[str], file: str | None) -> Param:
    if not isinstance(key, str) or key not in known:
        raise SearchSpaceError(file, str(key), "unknown config key; " + _key_hint(key))
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(
            file, key, f"expected a mapping such as {{loguniform: [low, high]}}, got {spec!r}"
        )
    names = [n for n in spec if n in DISTRIBUTIONS]
    unknown = [n for n in spec if n not in DISTRIBUTIONS and n not in OPTIONS]
    if unknown:
        raise SearchSpaceError(
            file,
            key,
            f"unknown distribution {unknown[0]!r}; use one of {', '.join(DISTRIBUTIONS)} "
            f"(options: {', '.join(OPTIONS)})",
        )
    if not names:
        raise SearchSpaceError(file, key, "no distribution; use one of " + ", ".join(DISTRIBUTIONS))
    if len(names) > 1:
        raise SearchSpaceError(
            file, key, f"more than one distribution ({', '.join(names)}); give exactly one"
        )
    kind = names[0]
    parse = {"loguniform": _parse_float, "uniform": _parse_float, "int": _parse_int}.get(
        kind, _parse_categorical
    )
    fields = parse(kind, key, spec, file)
    when = _parse_when(spec.get("when"), key, known, file)
    return Param(key=key, kind=kind, when=when, **fields)


def _parse_float(kind: str, key: str, spec: Mapping[str, Any], file: str | None) -> dict:
    t = key_type(key)
    if t != "float":
        use = "int, with log: true for a log scale" if t == "int" else "choice or fixed"
        raise SearchSpaceError(file, key, f"{kind} needs a float key; {key} is {t} (use {use})")
    low, high = (float(b) for b in _bounds(kind, key, spec[kind], file))
    _check_order(low, high, key, file)
    log = kind == "loguniform"
    if "log" in spec:
        raise SearchSpaceError(file, key, "log is an int option; use loguniform for a float key")
    return _range(key, spec, low, high, log, file, integer=False)


def _parse_int(kind: str, key: str, spec: Mapping[str, Any], file: str | None) -> dict:
    t = key_type(key)
    if t != "int":
        raise SearchSpaceError(
            file, key, f"int needs an integer key; {key} is {t} (use uniform or choice)"
        )
    low, high = _bounds(kind, key, spec[kind], file)
    for b in (low, high):
        if not isinstance(b, int):
            raise SearchSpaceError(file, key, f"int bounds must be integers, got {b!r}")
    _check_order(low, high, key, file)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(file, key, f"log must be true or false, got {log!r}")
    return _range(key, spec, low, high, log, file, integer=True)


def _range(key: str, spec: Mapping[str, Any], low: float, high: float, log: bool,
           file: str | None, *, integer: bool) -> dict:
    """The checks a float and an int range share: log bounds, the step, allowed values."""
    if log and low <= 0:
        raise SearchSpaceError(file, key, f"a log scale needs positive bounds, got [{low}, {high}]")
    step = None
    if "step" in spec:
        if log:
            raise SearchSpaceError(file, key, "step cannot be combined with a log scale")
        step = _step(spec["step"], key, file, integer=integer)
        span = high - low
        fits = span % step == 0 if integer else math.isclose(
            round(span / step) * step, span, rel_tol=1e-9)
        if not fits:
            raise SearchSpaceError(file, key, _not_multiple(span, step))
    for bound in (low, high):
        _check_allowed(key, bound, file)
    return {"low": low, "high": high, "step": step, "log": log}


def _parse_categorical(kind: str, key: str, spec: Mapping[str, Any], file: str | None) -> dict:
    for option in ("step", "log"):
        if option in spec:
            raise SearchSpaceError(
                file, key, f"{option} only applies to int and uniform, not {kind}"
            )
    raw = spec[kind]
    if kind == "fixed":
        values = [raw]
    elif not isinstance(raw, list):
        raise SearchSpaceError(file, key, f"choice takes a list of values, got {raw!r}")
    else:
        values = raw
    if not values:
        raise SearchSpaceError(file, key, "empty choice; list at least one value")
    typed = [_typed(key, key_type(key), v, file, "value") for v in values]
    for i, v in enumerate(typed):
        if any(_same(v, w) for w in typed[:i]):
            raise SearchSpaceError(file, key, f"choice lists {v!r} twice")
        _check_allowed(key, v, file)
    return {"choices": tuple(typed)}


def _parse_when(raw: Any, key: str, known: set[str], file: str | None) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise SearchSpaceError(
            file, key, f"when must map config keys to a value or a list of values, got {raw!r}"
        )
    conditions = []
    for other, values in raw.items():
        if not isinstance(other, str) or other not in known:
            raise SearchSpaceError(
                file, key, f"when names unknown config key {other!r}; " + _key_hint(other)
            )
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SearchSpaceError(file, key, f"when: {other} lists no values")
        typed = tuple(
            _typed(other, key_type(other), v, file, f"when: {other}", owner=key) for v in values
        )
        for v in typed:
            try:
                from_flat({other: v})
            except ConfigError as err:
                raise SearchSpaceError(
                    file, key, f"when: {other} = {v!r} can never hold ({err.problem})"
                ) from None
        conditions.append(Condition(other, typed))
    return tuple(conditions)


# --- whole-space checks ---------------------------------------------------------------------


def _check_reachable(p: Param, params: Mapping[str, Param], file: str | None) -> None:
    """A condition on an unconditional searched key must name values that key can take."""
    for c in p.when:
        target = params.get(c.key)
        if target is None or target.when or c.key == p.key:
            continue  # an experiment value or a conditional key: anything valid may hold
        for v in c.values:
            if not target.can_take(v):
                raise SearchSpaceError(
                    file,
                    p.key,
                    f"when: {c.key} = {v!r} can never hold: {c.key} is {target.describe()}",
                )


def _dependency_order(params: Mapping[str, Param], file: str | None) -> tuple[Param, ...]:
    """File order, except that a key comes after every searched key its conditions read.

    A depth-first walk; meeting a key that is still on the walk's path is a condition cycle.
    """
    done: dict[str, None] = {}
    path: list[str] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in path:
            cycle = path[path.index(key) :] + [key]
            raise SearchSpaceError(file, key, "condition cycle: " + " -> ".join(cycle))
        path.append(key)
        for c in params[key].when:
            if c.key in params:
                visit(c.key)
        path.pop()
        done[key] = None

    for key in params:
        visit(key)
    return tuple(params[k] for k in done)


# --- values ---------------------------------------------------------------------------------


def _bounds(kind: str, key: str, raw: Any, file: str | None) -> tuple[Any, Any]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise SearchSpaceError(file, key, f"{kind} takes [low, high], got {raw!r}")
    for b in raw:
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            hint = _YAML_NUMBER_HINT if isinstance(b, str) and _numeric_text(b) else ""
            raise SearchSpaceError(file, key, f"bounds must be numbers, got {b!r}{hint}")
        if not math.isfinite(b):
            raise SearchSpaceError(file, key, f"bounds must be finite, got {b!r}")
    return raw[0], raw[1]


def _check_order(low: float, high: float, key: str, file: str | None) -> None:
    if low >= high:
        raise SearchSpaceError(
            file, key, f"low {low} must be below high {high} (use fixed for a single value)"
        )


def _step(raw: Any, key: str, file: str | None, integer: bool) -> int | float:
    ok = isinstance(raw, int) if integer else isinstance(raw, (int, float))
    if isinstance(raw, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise SearchSpaceError(file, key, f"step must be {kind}, got {raw!r}")
    if not raw > 0:
        raise SearchSpaceError(file, key, f"step must be positive, got {raw!r}")
    return raw if integer else float(raw)


def _typed(
    key: str, t: str, v: Any, file: str | None, what: str, owner: str | None = None
) -> Scalar:
    """``v`` as a value of a ``t``-typed key (ints accepted for floats), or an error."""
    if t == "bool" and isinstance(v, bool):
        return v
    if t == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if t == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if t == "str" and isinstance(v, str):
        return v
    numeric_text = isinstance(v, str) and _numeric_text(v)
    hint = _YAML_NUMBER_HINT if t in ("int", "float") and numeric_text else ""
    raise SearchSpaceError(file, owner or key, f"{what} {v!r} is not a {t} ({key} is {t}){hint}")


def _check_allowed(key: str, v: Scalar, file: str | None) -> None:
    """The config's own rules (choices, bounds) must accept ``v`` for ``key``."""
    try:
        from_flat({key: v})
    except ConfigError as err:
        raise SearchSpaceError(file, key, f"{v!r} is not allowed here: {err.problem}") from None


def _not_multiple(span: float, step: float) -> str:
    return f"high - low ({span}) is not a multiple of step {step}"


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML booleans are not numbers here)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _numeric_text(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _key_hint(key: Any) -> str:
    if "." not in str(key):
        return "space files use flat dotted keys such as teacher.lr"
    try:
        key_type(str(key))
    except ConfigError as err:
        return err.problem.split("; ", 1)[-1]  # "teacher has lr, …" / "sections are …"
    return "use dotted keys such as teacher.lr"


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Scalar]:
    return ExperimentConfig().to_flat()


# --- YAML with duplicate keys rejected --------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = str(key), line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a space file must not."""


def _construct_unique_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)
