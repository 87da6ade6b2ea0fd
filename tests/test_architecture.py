"""Imports point one way: the library below the search layer knows nothing of Ray or MLflow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("ray", "mlflow", "optuna")

# Everything a plain training run needs; none of it may pull in the search or tracking stack.
TRAINING_MODULES = [
    "sakdn.config",
    "sakdn.errors",
    "sakdn.gaf",
    "sakdn.semantics",
    "sakdn.data",
    "sakdn.data.index",
    "sakdn.data.video",
    "sakdn.data.synthetic",
    "sakdn.data.utd_mhad",
    "sakdn.models",
    "sakdn.losses",
    "sakdn.train",
]


def _loaded_after_import(module: str) -> list[str]:
    code = (
        "import importlib, json, sys; importlib.import_module(%r); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))" % module
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("module", TRAINING_MODULES)
def test_training_code_does_not_import_search_or_tracking(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert not [name for name in FORBIDDEN if name in loaded], f"{module} imports {loaded}"
