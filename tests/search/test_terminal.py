"""What a user sees in the terminal of the main job (the smoke search, as a real process):
one line per trial event under one trial name scheme, none of the libraries' chatter, and a
SIGTERM that stops the search like Ctrl-C with one line that says how to continue it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.processes import kill_processes_under, stop_group, wait_while_running
from tests.search.conftest import process_env
from tests.tiny import REPO, SMOKE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

NOISE = ("Checkpoint successfully created", "auth_token", "/tmp/ray/session", "Tuner.restore",
         "run_trial_", "trial-0", "\x1b[", "SIGTERM received", "Traceback")


def _command(smoke_overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "sakdn.cli", "search", str(SMOKE),
            *[x for item in smoke_overrides for x in ("--set", item)], *extra]


def test_the_main_job_prints_one_line_per_trial_event_and_no_library_chatter(
    smoke_overrides, tmp_path
) -> None:
    ray_tmp = Path(tempfile.mkdtemp(prefix="skt", dir="/tmp"))
    try:
        done = subprocess.run(_command(smoke_overrides), cwd=REPO, env=process_env(ray_tmp),
                              capture_output=True, text=True, timeout=800)
    finally:
        kill_processes_under(str(ray_tmp))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    for noise in NOISE:
        assert noise not in out, (noise, out)
    # every trial is "trial N", the Optuna number, from its start to its end and the summary
    started = re.findall(r"^trial (\d+) started", out, re.M)
    ended = re.findall(r"^trial (\d+) (completed|pruned|failed)", out, re.M)
    assert sorted(started) == ["0", "1", "2"] and sorted(n for n, _ in ended) == ["0", "1", "2"]
    # with how the best trial was drawn (TPE's start-up: 3 trials are all random)
    assert re.search(r"^best: trial \d \(startup\)  student/best_val_acc = [\d.]+ ", out, re.M)
    assert "search synthetic_smoke: 3 trials" in out
    # nothing in the terminal names a trial any other way
    assert not re.search(r"\btrial[ _-](?!\d+\b)[0-9a-f]{5,}", out)


def test_sigterm_stops_the_search_like_ctrl_c_with_one_resume_line(smoke_overrides, tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="skt", dir="/tmp"))
    # long enough (3 trials × 20 student epochs) that no machine ends it before the signal;
    # with 6 epochs a fast one finished all three trials in the 5 s this test waited
    epochs = "student.epochs=20"
    command = _command(smoke_overrides, "--set", epochs)
    log = tmp_path / "search.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(command, cwd=REPO, env=process_env(ray_tmp), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            wait_while_running(proc, lambda: "started" in log.read_text(), log)
            time.sleep(2)  # a trial is training
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=300)
    finally:
        stop_group(proc, first=signal.SIGKILL)  # a no-op once it exited
        kill_processes_under(str(ray_tmp))
    text = log.read_text()
    assert code != 0 or "interrupted" in text
    for noise in NOISE:
        assert noise not in text, (noise, text)
    lines = [x for x in text.splitlines() if "--resume" in x]
    expected = ("sakdn search " + str(SMOKE) + " --resume "
                + " ".join(f"--set {item}" for item in [*smoke_overrides, epochs]))
    assert [x.strip() for x in lines] == [expected], text
    resumed = subprocess.run(expected.replace("sakdn search", f"{sys.executable} -m sakdn.cli "
                                              "search", 1).split(), cwd=REPO,
                             env=process_env(ray_tmp), capture_output=True, text=True,
                             timeout=800)
    kill_processes_under(str(ray_tmp))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "search synthetic_smoke: 3 trials — 3 complete" in resumed.stdout
