"""``run._check_state``: a fresh search refuses to overwrite one that ran, but trials queued from
``search.points_to_evaluate`` are not a search that ran."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sakdn.errors import ConfigError
from sakdn.search.experiment import Sources
from sakdn.search.run import _check_state
from sakdn.search.searcher import OptunaSpaceSearcher
from sakdn.search.space import parse_space

SPACE = parse_space({"student.lr": {"loguniform": [1.0e-4, 1.0e-2]},
                     "distill.lambda_st": {"choice": [0.0, 1.0]}})
POINT = {"student.lr": 1.0e-3, "distill.lambda_st": 1.0}


def _prepared(tmp_path: Path) -> SimpleNamespace:
    search = SimpleNamespace(name="s", study_name="s")
    return SimpleNamespace(search=search, sources=Sources(str(tmp_path / "exp.yaml")))


def _searcher(url: str) -> OptunaSpaceSearcher:
    return OptunaSpaceSearcher(SPACE, metric="acc", mode="max", storage=url, study_name="s",
                               points_to_evaluate=[POINT])


def test_queued_points_do_not_count_as_an_existing_search(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = _searcher(url)
    assert [t.state.name for t in searcher.study.trials] == ["WAITING"]
    assert _check_state(_prepared(tmp_path), searcher, tmp_path / "tune", resume=False) is False
    assert searcher.suggest("t0") == POINT  # the queued point is the first trial


def test_a_study_with_asked_trials_is_refused_without_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _searcher(url).suggest("t0")  # an earlier search ran one trial
    again = _searcher(url)
    with pytest.raises(ConfigError, match="with 1 trial"):
        _check_state(_prepared(tmp_path), again, tmp_path / "tune", resume=False)
