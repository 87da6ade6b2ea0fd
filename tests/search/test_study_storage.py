"""The study database survives processes that open it at the moment it is created."""

from __future__ import annotations

import multiprocessing as mp

from sakdn.search.searcher import open_storage

PROCESSES = 4
ROUNDS = 3


def _open(url: str, barrier, results) -> None:
    barrier.wait()  # every process creates the schema of the same new database at once
    try:
        open_storage(url)
        results.put("ok")
    except Exception as error:  # reported to the test, not lost in a child
        results.put(f"{type(error).__name__}: {error}")


def test_processes_that_create_one_new_study_database_at_once_all_open_it(tmp_path) -> None:
    # Plain RDBStorage loses this race most rounds ("table studies already exists", or
    # alembic's version row as a UNIQUE violation): a dashboard or a test reading the study
    # as a search starts made the search's driver crash.
    ctx = mp.get_context("fork")
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'optuna{round_}.db'}"
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results))
                 for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * PROCESSES, outcomes
    storage = open_storage(url)
    assert storage.get_all_studies() == []
