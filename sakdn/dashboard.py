"""``sakdn dashboard SEARCH``: Optuna's own dashboard on a search's study, on this machine only.

The search's parent run names its study (tag ``sakdn.study`` = ``<storage URL>#<study name>``),
so a search is found by name as ``sakdn best`` finds it. optuna-dashboard serves every study of
that storage (trials, their intermediate values per student epoch, history, importances); it is
bound to 127.0.0.1: it has no login of its own, so it is never exposed on another interface.
Reach it on a cluster through an SSH tunnel or ``kubectl port-forward``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sakdn.errors import ConfigError
from sakdn.names import Tag

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StudyLocation:
    storage: str  # an Optuna storage URL
    study: str  # the study's name in it


def study_of(search: str, tracking_uri: str) -> StudyLocation:
    """Where a search keeps its Optuna study, from its MLflow parent run."""
    from sakdn import tracking as tr

    mlflow = tr.client(tracking_uri)
    parent = tr.find_parent(mlflow, search)
    if parent is None:
        raise ConfigError("search", search, f"no search of this name in {tracking_uri}")
    storage, sep, study = parent.data.tags.get(Tag.STUDY, "").rpartition("#")
    if not sep or not storage:
        raise ConfigError("search", search, f"its parent run has no {Tag.STUDY} tag")
    return StudyLocation(storage, study)


def serve(search: str, tracking_uri: str, port: int = 8080) -> None:
    """Serve the dashboard of ``search``'s study storage until interrupted."""
    from optuna_dashboard import run_server

    where = study_of(search, tracking_uri)
    print(f"Optuna dashboard of search {search!r} (study {where.study!r}): "
          f"http://{HOST}:{port}  (Ctrl-C stops it)", flush=True)
    run_server(where.storage, host=HOST, port=port)
