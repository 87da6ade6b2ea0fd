"""Each name a search's records share is spelled once, in ``sakdn.names``: no other module
of the package writes or reads an MLflow tag through a string literal of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sakdn.names import Result, Role, SearchMetric, State, Tag

PACKAGE = Path(__file__).resolve().parents[1] / "sakdn"
TAG_LIKE = re.compile(r"^sakdn\.[a-z_]+(\.[a-z_]+)*$")  # sakdn.state, sakdn.version.torch


def _names(cls: type) -> dict[str, str]:
    return {k: v for k, v in vars(cls).items() if k.isupper()}


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_module_spells_a_tag_name_itself() -> None:
    tags = set(_names(Tag).values())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "names.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            if text in tags or (TAG_LIKE.match(text) and not _is_module(text)):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text!r}")
    assert not found, "use sakdn.names.Tag instead of:\n" + "\n".join(found)


def test_names_are_unique_within_each_group() -> None:
    for cls in (Tag, Role, State, Result, SearchMetric):
        values = list(_names(cls).values())
        assert len(values) == len(set(values)), cls.__name__
    assert all(v.startswith(("sakdn.", "mlflow.")) for v in _names(Tag).values())
