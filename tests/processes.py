"""Stopping what tests start: a process group, or every process under a marker path."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def stop_group(proc: subprocess.Popen, timeout: float = 20.0,
               first: signal.Signals = signal.SIGTERM) -> None:
    """Signal the process group a ``start_new_session`` process leads (it and what it started),
    wait, and kill the group if it outlives ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_processes_under(marker: str) -> None:
    """SIGKILL the processes whose command line names ``marker`` (e.g. a test's Ray temp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def wait_while_running(proc: subprocess.Popen, ready, log: Path, timeout: float = 600.0,
                       poll: float = 1.0) -> None:
    """Wait until ``ready()`` holds; fail with the log's tail if ``proc`` exits first or the
    time runs out (a test that stops a search mid-way waits for its moment like this)."""
    import time

    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, Path(log).read_text()[-3000:]
        assert time.time() < deadline, "not ready in time:\n" + Path(log).read_text()[-3000:]
        time.sleep(poll)
