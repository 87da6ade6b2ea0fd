"""A completed trial's figures, drawn off the trial's clock.

Drawing a trial's four figures reloads its models, predicts the validation split and renders
PNGs: 1.6–2.3 s per trial here (docs/benchmarks.md §5). Inside the trial that time held the
trial's CPU (or GPU) slot and delayed the next trial. Instead the driver's
:class:`FigureCallback` starts one low-priority Ray task per completed trial when Tune reports
it complete, i.e. after the trial has released its resources:

- the task asks for no CPU and runs at ``nice`` 19 on the trial's node (soft affinity: the
  trial's work directory is there even without a shared file system), so it only uses cycles
  the trials leave idle;
- it draws into ``<trial dir>/figures`` and logs them to the trial's child run through a
  :class:`~sakdn.tracking.RunBuffer` on the trial's spool, so a tracking outage keeps them for
  the closing sweep (``callbacks.flush_spools``) like any other record;
- the driver waits for outstanding tasks when the Tune experiment ends (before the report
  and the closing sweep read the runs); a figure never fails or delays a trial's outcome.

Not drawn: figures of trials that were pruned, diverged or failed (as before), and those whose
task was lost with the driver (an interrupted search; the report draws the best trial's from
its work directory when they are missing).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ray.tune import Callback

from sakdn.names import State
from sakdn.outcome import trial_outcome
from sakdn.search.trainable import (
    NODES, SPOOL, _NoTracking, fold_dir, read_ticket, trial_workdir,
)

logger = logging.getLogger(__name__)


def draw_and_log(source: str, spool: str, tracking_uri: str | None, wait_s: float) -> int:
    """Draw a finished run's figures into ``<source>/figures`` and log them to the run whose
    id the trial's MLflow ``spool`` holds; returns how many figures were drawn."""
    try:
        os.nice(19)  # idle cycles only: the next trial may already run on this core
    except OSError:
        pass
    import torch

    from sakdn import tracking as tr
    from sakdn.figures import log_trial_figures

    torch.set_num_threads(1)
    run_id = tr.spool_run_id(spool) if tracking_uri else None
    if run_id is None:  # no MLflow, or the trial never reached it: the files only
        return len(log_trial_figures(_NoTracking(), source, log=logger.warning))
    tr.configure_http()
    buffer = tr.RunBuffer(tr.client(tracking_uri), run_id=run_id, spool=spool)
    paths = log_trial_figures(buffer, source, log=logger.warning)
    if not buffer.flush(wait_s):
        logger.warning("MLflow unreachable: the figures of %s wait in %s", source, spool)
    return len(paths)


class FigureCallback(Callback):
    """Starts :func:`draw_and_log` for every trial Tune reports complete with the COMPLETE
    outcome; waits for those still drawing when the experiment ends. Holds only plain data
    between Tune's snapshots (Tune pickles callbacks)."""

    def __init__(self, search_dir: str, objectives: Sequence[str], folds: int = 1,
                 tracking_uri: str | None = None, flush_timeout_s: float = 30.0,
                 wait_s: float = 120.0) -> None:
        self.search_dir = search_dir
        self.objectives = tuple(objectives)
        self.folds = folds
        self.tracking_uri = tracking_uri
        self.flush_timeout_s = flush_timeout_s
        self.wait_s = wait_s
        self._tasks: dict[Any, str] = {}  # task ref → the trial dir it draws

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tasks"] = {}
        return state

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial_outcome(trial.last_result, self.objectives).state != State.COMPLETE:
            return
        number = read_ticket(self.search_dir, trial.trial_id)
        workdir = trial_workdir(self.search_dir, number, trial.trial_id)
        source = fold_dir(workdir, self.folds - 1) if self.folds > 1 else workdir
        try:
            ref = _task(_node_id(workdir)).remote(
                str(source), str(workdir / SPOOL), self.tracking_uri, self.flush_timeout_s)
        except Exception as err:  # Ray refused the task: no figures, the trial is unharmed
            logger.warning("figures of %s not started: %s", workdir, err)
            return
        self._tasks[ref] = str(workdir)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._collect(timeout=0.0)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._collect(timeout=self.wait_s)

    def _collect(self, timeout: float) -> None:
        """Forget finished tasks (naming any that raised); with ``timeout``, wait for all."""
        if not self._tasks:
            return
        import ray

        deadline = time.monotonic() + timeout
        while self._tasks:
            left = max(0.0, deadline - time.monotonic())
            done, _ = ray.wait(list(self._tasks), num_returns=len(self._tasks), timeout=left)
            for ref in done:
                where = self._tasks.pop(ref)
                try:
                    ray.get(ref)
                except Exception as err:
                    logger.warning("figures of %s not drawn: %s", where, err)
            if not done or left <= 0.0:
                break
        if timeout > 0.0 and self._tasks:
            logger.warning("figures of %d trial(s) still drawing after %.0f s: not waited for",
                           len(self._tasks), timeout)


_REMOTE: Any = None  # draw_and_log as a Ray task, made once per driver process


def _task(node_id: str | None):
    """The Ray task: no CPU, on the trial's node when it is known and alive."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(num_cpus=0, max_retries=0)(draw_and_log)
    remote = _REMOTE
    if node_id is None:
        return remote
    return remote.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=True))


def _node_id(workdir: Path) -> str | None:
    """The Ray node id of the trial's last attempt (its address is the last line of
    ``nodes.txt``); None when unknown."""
    try:
        address = (workdir / NODES).read_text().split()[-1]
    except (OSError, IndexError):
        return None
    import ray

    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == address:
            return node.get("NodeID")
    return None
