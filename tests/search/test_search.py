"""Real small searches (embedded Ray, SQLite MLflow and Optuna stores in ``tmp_path``),
read back through ``mlflow.MlflowClient`` and the Optuna study."""

from __future__ import annotations

import pytest

from pathlib import Path

from sakdn.config import all_keys, from_flat, parse_value
from sakdn.figures import FIGURES
from tests.tiny import SMOKE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def _typed(params: dict[str, str]) -> dict:
    """A child run's config params, typed (``effective.*`` params say what a run derived)."""
    return {k: parse_value(k, v) for k, v in params.items() if not k.startswith("effective.")}


@pytest.mark.timeout(900)
def test_a_search_tracks_every_trial_and_its_best_trains_the_final_model(
    smoke_overrides, search_env, tiny_root, tmp_path
) -> None:
    import mlflow
    import optuna
    import torch
    from mlflow import MlflowClient

    from sakdn.search.final import best_of, train_from_best
    from sakdn.search.run import run_search
    from sakdn.train import load_student, load_teachers

    result = run_search(SMOKE, overrides=smoke_overrides)  # 3 trials, 2 at a time
    uri = result.tracking_uri
    client = MlflowClient(uri)
    assert result.counts == {"COMPLETE": 3}

    # --- the parent run -------------------------------------------------------------------
    parents = client.search_runs(
        [result.experiment_id], "tags.`sakdn.role` = 'parent'"
    )
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert set(parent.data.params) == set(all_keys())
    assert parent.data.params["data.root"] == str(tiny_root)
    assert parent.data.tags["sakdn.metric"] == "student/best_val_acc"
    assert "sakdn.version.torch" in parent.data.tags
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/synthetic_smoke.yaml", "search/smoke.yaml",
            "search/search_resolved.yaml"} <= logged
    assert parent.data.metrics["trials/complete"] == 3
    assert parent.data.metrics["best/student/best_val_acc"] == pytest.approx(result.best_value)

    # --- one child run per Optuna trial ---------------------------------------------------
    study = optuna.load_study(study_name=result.study_name, storage=result.study_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    children = client.search_runs(
        [result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert len(children) == 3
    by_number = {int(c.data.tags["sakdn.optuna_trial"]): c for c in children}
    assert sorted(by_number) == [0, 1, 2]
    base = _typed(parent.data.params)
    teacher_states = []
    for trial in study.trials:
        child = by_number[trial.number]
        assert child.info.status == "FINISHED" and child.data.tags["sakdn.state"] == "COMPLETE"
        assert child.data.tags["sakdn.tune_trial_id"] == trial.user_attrs["tune_trial_id"]
        assert child.data.tags["sakdn.node_ip"] == "127.0.0.1"
        # params: the trial's full flat config = the experiment with the sampled values
        expected = from_flat({**base, **trial.params}).to_flat()
        config_params = {k: v for k, v in child.data.params.items()
                         if not k.startswith("effective.")}
        assert config_params == {k: str(v) for k, v in expected.items()}
        assert "effective.distill.gsdm_pairs" in child.data.params  # what GSDM compared
        # metrics: every epoch of each stage, MLflow's step = the stage's own epoch
        teacher = client.get_metric_history(child.info.run_id, "teacher/loss")
        student = client.get_metric_history(child.info.run_id, "student/best_val_acc")
        t_epochs, s_epochs = expected["teacher.epochs"], expected["student.epochs"]
        assert sorted(m.step for m in teacher) == list(range(1, t_epochs + 1))
        assert sorted(m.step for m in student) == list(range(1, s_epochs + 1))
        best_step = max(student, key=lambda m: m.step)
        assert best_step.value == pytest.approx(trial.value)  # what Optuna was told
        assert [s for s, v in sorted(trial.intermediate_values.items())] == list(
            range(1, s_epochs + 1))  # pruner steps are student epochs
        # models: loadable with the one documented call
        local = mlflow.artifacts.download_artifacts(
            run_id=child.info.run_id, artifact_path="models/student.pt", tracking_uri=uri,
            dst_path=str(tmp_path / f"dl{trial.number}"),
        )
        model, config, meta = load_student(local)
        assert config.student.lr == expected["student.lr"] and meta["final"] is False
        teachers, _, _ = load_teachers(mlflow.artifacts.download_artifacts(
            run_id=child.info.run_id, artifact_path="models/teachers.pt", tracking_uri=uri,
            dst_path=str(tmp_path / f"dl{trial.number}")))
        teacher_states.append(teachers.state_dict())
        # figures: on the trial's run, drawn after Tune had the trial's last result (by the
        # driver's low-priority task, off the trial's clock: sakdn.search.trial_figures)
        logged = {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
        assert logged == {f"figures/{name}" for name in FIGURES}
        tune_id = trial.user_attrs["tune_trial_id"]
        (results,) = Path(result.path).glob(f"tune/*{tune_id}*/result.json")
        workdir = Path(result.path) / "trials" / f"{trial.number:05d}"
        assert min((workdir / "figures" / name).stat().st_mtime for name in FIGURES) \
            >= results.stat().st_mtime

    # nothing left RUNNING anywhere
    every = client.search_runs([result.experiment_id])
    assert all(r.info.status != "RUNNING" for r in every)

    # --- teacher reuse: identical teacher stage → trained once, the others loaded ---------
    assert (result.teacher_hits, result.teacher_lookups) == (2, 3)
    for state in teacher_states[1:]:
        assert all(torch.equal(state[k], teacher_states[0][k]) for k in state)

    # --- the best configuration round trip -----------------------------------------------
    best = best_of(result.name, uri)
    chosen = next(c for c in children if c.info.run_id == best["run_id"])
    assert best["config"] == _typed(chosen.data.params)
    assert from_flat(best["config"]).to_flat() == best["config"]
    assert best["value"] == pytest.approx(result.best_value)
    assert best_of(result.parent_run_id, uri)["run_id"] == best["run_id"]  # by run id too

    # --- train --from-best: train + val → test, registered -------------------------------
    final = train_from_best(result.name, uri, overrides=["student.epochs=1"],
                            workdir=tmp_path / "final")
    run = client.get_run(final.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sakdn.role"] == "final" and run.data.tags["sakdn.search"] == result.name
    assert run.data.tags["sakdn.source_run_id"] == best["run_id"]
    assert 0.0 <= run.data.metrics["student/test_acc"] <= 1.0
    assert run.data.params["student.epochs"] == "1"
    version = client.get_model_version(final.model_name, final.model_version)
    assert version.run_id == final.run_id
    # the torch.export program of frames → logits (tests/search/test_final.py compares it)
    student = mlflow.pytorch.load_model(f"models:/{final.model_name}/{final.model_version}")
    segments, size = final.config.student.segments, final.config.data.frame_size
    assert student(torch.zeros(1, segments, 3, size, size)).shape == (1, 3)


@pytest.mark.timeout(900)
def test_the_optuna_pruner_stops_trials_inside_tune(smoke_overrides, search_env) -> None:
    import optuna
    from mlflow import MlflowClient

    from sakdn.search.run import run_search

    # accuracy can never reach 1.01: the threshold pruner prunes at the first student epoch,
    # except trial 0, the experiment's own values (search.start_point), which is never pruned
    result = run_search(SMOKE, overrides=smoke_overrides + [
        "search.name=pruned", "search.num_samples=3", "search.pruner=threshold",
        "search.pruner_options={lower: 1.01}", "student.epochs=4", "search.start_point=true",
        "distill.lambda_st=1.0",  # a value of the smoke space
    ])
    study = optuna.load_study(study_name="pruned", storage=result.study_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert study.trials[0].params["distill.lambda_st"] == 1.0
    assert list(study.trials[0].intermediate_values) == [1, 2, 3, 4]
    assert all(list(t.intermediate_values) == [1] for t in study.trials[1:])
    assert result.counts == {"COMPLETE": 1, "PRUNED": 2}
    assert (result.reference_trial, result.reference_value) == (0, result.best_value)
    assert result.best_origin == "given"  # the start point: nothing was sampled
    client = MlflowClient(result.tracking_uri)
    for child in client.search_runs(
        [result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    ):
        if child.data.tags["sakdn.optuna_trial"] == "0":
            assert child.data.tags["sakdn.state"] == "COMPLETE"
            continue
        assert child.info.status == "FINISHED" and child.data.tags["sakdn.state"] == "PRUNED"
        assert child.info.run_name == f"trial {child.data.tags['sakdn.optuna_trial']} (pruned)"
        assert not [k for k in child.data.metrics if k.startswith("summary/")]
        assert not client.list_artifacts(child.info.run_id, "models")
        # the epochs' metrics reached MLflow although Tune stopped the trial in tune.report
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "student/loss")]
        assert steps == [1] and client.get_metric_history(child.info.run_id, "teacher/loss")

