"""Imports point one way (docs/architecture.md): each part of ``sakdn`` imports only the parts
below it, and the heavy stacks stay where they belong — nothing below the search layer knows
Ray, training and figures know neither Ray nor MLflow, the report reads MLflow and Optuna but
not the search layer.

Two checks: every ``import`` statement of every module, read from the source (module level and
inside functions: a lazy import is still an import), against the table below; and each
module imported in a fresh interpreter, to see what it really loads at import time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sakdn"

TRAINING = ("sakdn.errors", "sakdn.config", "sakdn.seeding", "sakdn.gaf", "sakdn.semantics",
            "sakdn.data", "sakdn.models", "sakdn.losses", "sakdn.train")

# part → the parts of sakdn it may import (besides itself), as docs/architecture.md's table.
LAYERS: dict[str, tuple[str, ...]] = {
    "sakdn.errors": (),
    "sakdn.names": (),
    "sakdn.config": ("sakdn.errors",),
    "sakdn.outcome": ("sakdn.names",),
    "sakdn.seeding": (),
    "sakdn.stats": (),
    "sakdn.gaf": ("sakdn.errors",),
    "sakdn.semantics": ("sakdn.errors", "sakdn.config"),
    "sakdn.data": ("sakdn.errors", "sakdn.config", "sakdn.gaf", "sakdn.seeding"),
    "sakdn.models": ("sakdn.errors", "sakdn.config"),
    "sakdn.losses": ("sakdn.errors", "sakdn.config"),
    "sakdn.train": TRAINING,
    "sakdn.figures": TRAINING,
    "sakdn.ablation": ("sakdn.errors", "sakdn.config", "sakdn.stats"),
    "sakdn.tracking_auth": ("sakdn.errors",),
    "sakdn.tracking": ("sakdn.errors", "sakdn.config", "sakdn.names", "sakdn.tracking_auth"),
    "sakdn.report_plots": ("sakdn.names",),
    "sakdn.report": ("sakdn.errors", "sakdn.config", "sakdn.names", "sakdn.outcome",
                     "sakdn.tracking", "sakdn.tracking_auth", "sakdn.figures",
                     "sakdn.report_plots"),
    "sakdn.dashboard": ("sakdn.errors", "sakdn.names", "sakdn.tracking"),
    "sakdn.search": (*TRAINING, "sakdn.names", "sakdn.outcome", "sakdn.stats", "sakdn.figures",
                     "sakdn.ablation", "sakdn.tracking_auth", "sakdn.tracking", "sakdn.report"),
    "sakdn.cli": tuple(part for part in (
        *TRAINING, "sakdn.names", "sakdn.outcome", "sakdn.stats", "sakdn.figures",
        "sakdn.ablation", "sakdn.tracking_auth", "sakdn.tracking", "sakdn.report",
        "sakdn.dashboard", "sakdn.search")),
}

STACKS = ("ray", "mlflow", "optuna")
# part → third-party packages it must not import, even inside a function
FORBIDDEN: dict[str, tuple[str, ...]] = {
    **{part: STACKS for part in (*TRAINING, "sakdn.names", "sakdn.outcome", "sakdn.stats",
                                 "sakdn.figures", "sakdn.ablation")},
    "sakdn.tracking_auth": ("ray", "optuna"),
    "sakdn.tracking": ("ray", "optuna"),
    "sakdn.report": ("ray",),
    "sakdn.report_plots": ("ray", "mlflow"),
    "sakdn.dashboard": ("ray",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b`` gives ``a.b`` when
    that is a module of the package, else ``a``)."""
    name, found = _module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return found


def _part(module: str) -> str | None:
    """The row of ``LAYERS`` a sakdn module belongs to (the longest matching prefix)."""
    rows = [row for row in LAYERS if module == row or module.startswith(row + ".")]
    return max(rows, key=len) if rows else None


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_row() -> None:
    assert [m for m in MODULES if m != "sakdn" and _part(m) is None] == []


@pytest.mark.parametrize("module", [m for m in MODULES if m != "sakdn"])
def test_imports_point_down_the_table(module: str) -> None:
    part = _part(module)
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    allowed = {part, *LAYERS[part]}
    wrong = []
    for target in sorted(_imports(path) - {"sakdn"}):  # ``from sakdn import x``: x counts
        if target.split(".")[0] == "sakdn":
            if _part(target) not in allowed:
                wrong.append(target)
        elif target.split(".")[0] in FORBIDDEN.get(part, ()):
            wrong.append(target)
    assert not wrong, f"{module} ({part}) imports {wrong}"


def _loaded_after_import(module: str) -> set[str]:
    code = (
        "import importlib, json, sys; importlib.import_module(%r); "
        "print(json.dumps(sorted(sys.modules)))" % module
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


# module → what importing it must not load (top-level packages, or sakdn parts)
AT_IMPORT: dict[str, tuple[str, ...]] = {
    **{m: (*STACKS, "sakdn.search", "sakdn.tracking") for m in (
        "sakdn.config", "sakdn.errors", "sakdn.names", "sakdn.outcome", "sakdn.gaf",
        "sakdn.semantics", "sakdn.data", "sakdn.data.index", "sakdn.data.video",
        "sakdn.data.synthetic", "sakdn.data.utd_mhad", "sakdn.models", "sakdn.losses",
        "sakdn.train", "sakdn.figures", "sakdn.stats", "sakdn.ablation")},
    "sakdn.tracking": ("ray", "optuna", "torch", "sakdn.search", "sakdn.train"),
    "sakdn.report": ("ray", "torch", "sakdn.search", "sakdn.train"),
    "sakdn.report_plots": (*STACKS, "torch", "matplotlib", "plotly"),
    "sakdn.dashboard": ("ray", "sakdn.search"),
    "sakdn.cli": (*STACKS, "torch"),  # `sakdn train` never loads Ray or MLflow
}


@pytest.mark.parametrize("module", list(AT_IMPORT))
def test_what_a_module_loads_when_imported(module: str) -> None:
    loaded = _loaded_after_import(module)
    unwanted = [n for n in AT_IMPORT[module]
                if n in loaded or any(m.startswith(n + ".") for m in loaded)]
    assert not unwanted, f"importing {module} loads {unwanted}"
