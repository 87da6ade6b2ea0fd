"""Results seen in a real browser after a real tiny search (embedded Ray, SQLite stores).

One search of three trials (``student.epochs`` 1 or 3; a threshold pruner stops every trial
at its second student epoch, so 1-epoch trials complete and 3-epoch trials are pruned; the
random sampler's seed 0 draws both kinds), then:

- its records: figures on every completed child run, plots / leaderboard / report on the
  parent, the live progress points, the pruning savings against the Optuna study;
- ``mlflow server`` on a free loopback port, opened in headless Chromium (Debian's
  ``chromium``, driven by Playwright): the experiment page lists the parent run and, expanded,
  its trials; a trial's artifact view shows its confusion matrix;
- the ``sakdn report`` page opened from disk at 1280 px: every image loads, the page is no
  wider than the window and the leaderboard's last column is reached by scrolling its own box
  (also for a leaderboard of many sampled keys, written by hand).

Screenshots go to the test's temporary directory; with ``SAKDN_DOCS_IMAGES=1`` they are also
copied to ``docs/images/`` (what ``docs/results.md`` shows).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import stop_group
from tests.tiny import REPO, SMOKE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SPACE = """\
student.lr: {loguniform: [1.0e-4, 1.0e-2]}
student.epochs: {choice: [1, 3]}
distill.lambda_sp: {uniform: [0.0, 2.0]}
"""
FIGURES = {"confusion_matrix.png", "gsdm_attention.png", "gaf_images.png", "learning_curves.png"}
DOCS_IMAGES = REPO / "docs" / "images"


def png_width(path: Path) -> int:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big")


def to_docs(shot: Path, name: str) -> None:
    """Copy a screenshot into docs/images when asked to (SAKDN_DOCS_IMAGES=1)."""
    if os.environ.get("SAKDN_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGES / name)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(tiny_root, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """The finished search (``SearchResult``) and what it printed."""
    from sakdn.search.run import run_search

    tmp = tmp_path_factory.mktemp("browser-search")
    space = tmp / "space.yaml"
    space.write_text(SPACE)
    overrides = [
        f"data.root={tiny_root}", f"search.storage_path={tmp / 'store'}",
        f"search.space={space}", "search.name=browser", "search.num_samples=3",
        # seed 0 draws student.epochs 1, 1, 3: two trials complete, one is pruned
        "search.sampler=random", "search.seed=0",
        "search.pruner=threshold", "search.pruner_options={lower: 1.01, n_warmup_steps: 2}",
    ]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:  # search_env, for the whole module
        for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        for name, value in (
            ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("RAY_AUTH_MODE", "disabled"),
            ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1"), ("RAY_AIR_NEW_OUTPUT", "0"),
            ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"),
        ):
            mp.setenv(name, value)
        with contextlib.redirect_stdout(printed):
            result = run_search(SMOKE, overrides=overrides)
    (tmp / "search.log").write_text(printed.getvalue())
    return result, printed.getvalue()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def mlflow_server(searched, tmp_path_factory):
    """``mlflow server`` on the search's store, on a free loopback port; yields its URL."""
    result, _ = searched
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("mlflow-server") / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", result.tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start (see {log.name})")
            time.sleep(1)
        yield url
    finally:
        stop_group(proc)  # the server and the workers it started
        log.close()


def children(result):
    from mlflow import MlflowClient

    from sakdn import tracking as tr

    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    return client, parent, tr.children(client, parent)


# --- records --------------------------------------------------------------------------------


def test_trials_get_figures_the_parent_plots_progress_and_a_report(searched) -> None:
    import optuna

    from sakdn.report import collect, savings

    result, printed = searched
    client, parent, runs = children(result)
    study = optuna.load_study(study_name=result.study_name, storage=result.study_storage)
    states = {t.number: t.state.name for t in study.trials}
    # 1 student epoch: completes; 3: pruned at the second (value < 1.01 after the warm-up)
    for t in study.trials:
        assert t.state.name == ("COMPLETE" if t.params["student.epochs"] == 1 else "PRUNED")
    assert sorted(set(states.values())) == ["COMPLETE", "PRUNED"]  # both kinds to look at
    assert len(runs) == 3
    for run in runs:
        figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        if run.data.tags["sakdn.state"] == "COMPLETE":
            assert figures == FIGURES
        else:
            assert figures == set()  # pruned trials never finished training

    logged = {a.path for d in ("report", "plots", "leaderboard")
              for a in client.list_artifacts(parent.info.run_id, d)}
    assert {"report/report.html", "plots/optimization_history.png", "plots/plots.html",
            "plots/intermediate_values.png", "leaderboard/leaderboard.csv"} <= logged
    assert (Path(result.path) / "report" / "report.html").exists()

    # live progress: one point per finished trial, the last one matching the final counts
    finished = client.get_metric_history(parent.info.run_id, "search/finished")
    assert sorted(m.step for m in finished) == [1, 2, 3]
    assert sorted(m.value for m in finished) == [1.0, 2.0, 3.0]
    last = {k: max(client.get_metric_history(parent.info.run_id, k), key=lambda m: m.step).value
            for k in ("search/completed", "search/pruned", "search/failed")}
    counts = list(states.values())
    assert last == {"search/completed": counts.count("COMPLETE"),
                    "search/pruned": counts.count("PRUNED"), "search/failed": 0}
    assert "trials: " in printed and " completed, " in printed and " pruned, " in printed

    # pruning savings agree with the study: planned student epochs − epochs reported
    saved = savings(collect(result.name, result.tracking_uri).rows)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert saved.pruned == len(pruned) >= 1
    assert saved.epochs_not_run == sum(t.params["student.epochs"] - len(t.intermediate_values)
                                       for t in pruned)
    assert saved.epochs_not_run == len(pruned)  # 3 planned, stopped after the second


def test_the_mlflow_ui_shows_the_trials_under_their_search_and_a_confusion_matrix(
    searched, mlflow_server, browser, tmp_path
) -> None:
    import mlflow

    result, _ = searched
    client, parent, runs = children(result)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    exp = result.experiment_id
    from sakdn.tracking import ui_url

    # the link the search prints opens the runs table, not MLflow 3's GenAI (traces) view
    page.goto(ui_url(mlflow_server, exp))
    names = page.locator('[role="gridcell"][col-id="attributes.`Run Name`"]')
    names.filter(has_text=result.name).first.wait_for(timeout=60_000)
    assert page.get_by_text("No data available").count() == 0
    assert [n.split("\n")[-1] for n in names.all_inner_texts()] == [result.name]  # collapsed
    names.filter(has_text=result.name).locator("button").first.click()  # expand the children
    trial_names = sorted(r.info.run_name for r in runs)
    page.get_by_text(trial_names[0], exact=True).wait_for(timeout=30_000)
    shown = [n.split("\n")[-1] for n in names.all_inner_texts()]
    assert shown[0] == result.name and sorted(shown[1:]) == trial_names  # nested under it
    # pruned trials say so in their name, and their runs are FINISHED, not drawn as failed
    pruned = [r for r in runs if r.data.tags["sakdn.state"] == "PRUNED"]
    assert pruned and all(r.info.run_name.endswith("(pruned)") for r in pruned)
    assert all(r.info.status == "FINISHED" for r in pruned)
    assert sum(n.endswith("(pruned)") for n in shown) == len(pruned)
    with contextlib.suppress(Exception):  # the assistant panel only narrows the table
        page.get_by_role("button", name="Close").first.click(timeout=3_000)
    page.screenshot(path=tmp_path / "mlflow-runs.png")
    to_docs(tmp_path / "mlflow-runs.png", "mlflow-runs.png")

    complete = next(r for r in runs if r.data.tags["sakdn.state"] == "COMPLETE")
    local = mlflow.artifacts.download_artifacts(
        run_id=complete.info.run_id, artifact_path="figures/confusion_matrix.png",
        tracking_uri=result.tracking_uri, dst_path=str(tmp_path / "dl"))
    # a direct link to a trial's run opens the run (its overview), not an evaluation view
    page.goto(ui_url(mlflow_server, exp, complete.info.run_id))
    page.get_by_text(complete.info.run_name, exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Overview").first.wait_for(timeout=60_000)
    assert page.get_by_text("Evaluations", exact=True).count() == 0
    page.screenshot(path=tmp_path / "mlflow-run.png")
    page.goto(f"{mlflow_server}/#/experiments/{exp}/runs/{complete.info.run_id}/artifacts/"
              "figures/confusion_matrix.png")
    page.get_by_text("confusion_matrix.png").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "w => Array.from(document.images).some(i => i.complete && i.naturalWidth === w)",
        arg=png_width(Path(local)), timeout=60_000)
    page.screenshot(path=tmp_path / "mlflow-artifact.png")

    ids = ",".join(f'"{r.info.run_id}"' for r in runs)
    page.goto(f'{mlflow_server}/#/compare-runs?runs=[{ids}]&experiments=["{exp}"]'
              "&workflowType=machine_learning")
    page.get_by_text(f"Comparing {len(runs)} Runs").first.wait_for(timeout=60_000)
    with contextlib.suppress(Exception):  # cosmetic: plot the objective, hide the assistant
        metrics = page.locator(".du-bois-light-select-multiple").nth(1)
        metrics.locator(".du-bois-light-select-selection-item-remove").first.click(timeout=5_000)
        metrics.click(timeout=5_000)
        page.keyboard.type(result.metric[0])
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
    with contextlib.suppress(Exception):
        page.get_by_role("button", name="Close").first.click(timeout=3_000)
    page.wait_for_timeout(2_000)  # the plot draws after the page
    page.screenshot(path=tmp_path / "mlflow-compare.png")
    to_docs(tmp_path / "mlflow-compare.png", "mlflow-compare.png")
    page.close()


def test_the_report_page_opens_from_disk_with_every_figure(searched, browser, tmp_path) -> None:
    from sakdn.cli import main

    result, _ = searched
    out = tmp_path / "report"
    assert main(["report", result.name, "--out", str(out),
                 "--tracking-uri", result.tracking_uri]) == 0
    html = (out / "report.html").read_text()
    expected = html.count("<img ")
    assert expected >= 5 + len(FIGURES)  # the search plots and the best trial's figures
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.goto((out / "report.html").as_uri())
    page.wait_for_load_state("load")
    widths = page.evaluate(
        "Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) == expected and all(w > 0 for w in widths), widths
    rows = page.locator("table.leaderboard tbody tr")
    assert rows.count() == 3
    fits_the_window(page, 1280)
    text = page.locator("body").inner_text()
    assert "Pruned trials are drawn in orange" in text  # the pruned trial, in the plots
    assert "No parameter importances: they need at least" in text  # 2 completed trials
    page.screenshot(path=tmp_path / "report-full.png", full_page=True)
    page.screenshot(path=tmp_path / "report.png")
    to_docs(tmp_path / "report.png", "report.png")
    page.close()


def fits_the_window(page, width: int) -> dict:
    """Nothing of the report is wider than the window; the leaderboard's last column is
    reached by scrolling the leaderboard's own box, with its trial column kept in view."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.evaluate("""() => {
        const board = document.querySelector('div.board');
        board.scrollLeft = board.scrollWidth;
        const heads = board.querySelectorAll('th');
        const [b, first, last] = [board, heads[0], heads[heads.length - 1]].map(
            e => e.getBoundingClientRect());
        const out = {left: b.left, right: b.right, firstLeft: first.left,
                     lastLeft: last.left, lastRight: last.right,
                     scrolls: board.scrollWidth > board.clientWidth};
        board.scrollLeft = 0;
        return out;
    }""")
    assert box["right"] <= width
    assert box["left"] - 1 <= box["lastLeft"] and box["lastRight"] <= box["right"] + 1, box
    assert abs(box["firstLeft"] - box["left"]) <= 2, box  # the trial column stays
    return box


def test_a_wide_leaderboard_scrolls_inside_its_box_at_1280_px(browser, tmp_path) -> None:
    from types import SimpleNamespace

    from sakdn.report import SearchRecord, TrialRow, write_leaderboard

    keys = [f"distill.some_rather_long_key_{i:02d}" for i in range(16)]
    rows = [TrialRow(n, "PRUNED" if n % 3 else "COMPLETE", f"{n:032x}", [0.123456 * n], 1, 3,
                     9, 12.5, 4.0, "true", {k: 0.001234 * (n + i) for i, k in enumerate(keys)},
                     error="boom " * 40 if n == 4 else "")
            for n in range(6)]
    record = SearchRecord("wide", "sqlite:///x.db", SimpleNamespace(), ["student/best_val_acc"],
                          ["max"], rows, param_names=keys)
    _, board = write_leaderboard(record, tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(board.as_uri())
    page.wait_for_load_state("load")
    assert fits_the_window(page, 1280)["scrolls"]  # too wide for the window: its box scrolls
    page.close()


def test_the_optuna_dashboard_of_a_finished_search_lists_its_trials(
    searched, browser, tmp_path
) -> None:
    result, _ = searched
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sakdn.cli", "dashboard", result.name, "--port", str(port),
         "--tracking-uri", result.tracking_uri],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/studies", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path /
                                                                   "dashboard.log").read_text()
            time.sleep(1)
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = [line.split()[1] for line in listening if line.split()[3] == "0A"]  # LISTEN
        assert f"0100007F:{port:04X}" in local  # 127.0.0.1 only
        assert f"00000000:{port:04X}" not in local
        import json

        import optuna

        with urllib.request.urlopen(f"{url}/api/studies", timeout=10) as r:
            studies = json.loads(r.read())["study_summaries"]
        study_id = next(st["study_id"] for st in studies if st["study_name"] == result.study_name)
        trials = optuna.load_study(study_name=result.study_name,
                                   storage=result.study_storage).trials
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/dashboard/")
        page.get_by_text(result.study_name).first.wait_for(timeout=60_000)  # the study list
        page.goto(f"{url}/dashboard/studies/{study_id}/trials")
        page.get_by_text(f"{len(trials)} Trials").first.wait_for(timeout=60_000)
        for t in trials:  # every trial, with the state it ended in
            page.get_by_text(f"Trial {t.number}", exact=True).first.wait_for(timeout=10_000)
        states = {t.state.name.capitalize() for t in trials}
        assert states == {"Complete", "Pruned"}
        for state in states:
            assert page.get_by_text(state, exact=True).count() >= 1
        page.screenshot(path=tmp_path / "optuna-dashboard.png")
        to_docs(tmp_path / "optuna-dashboard.png", "optuna-dashboard.png")
        page.close()
    finally:
        stop_group(proc)
        log.close()
