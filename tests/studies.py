"""Reading a search's Optuna study from a test while the search runs, without writing to it.

``optuna.load_study`` on a database that does not exist yet creates its schema, racing the
search that is creating it at the same moment; a test that polls must only read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def trial_states(db: Path, study: str) -> list[str]:
    """The states of ``study``'s trials in trial-number order (``COMPLETE``, ``PRUNED``, …);
    [] while the database, its tables or the study do not exist yet."""
    if not Path(db).exists():
        return []
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = connection.execute(
            "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? ORDER BY t.number", (study,)).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        connection.close()
    return [state for (state,) in rows]
