"""``sakdn ablate``: the ablation grid of ``sakdn.ablation`` run as a search, then its table.

The grid (variants × seeds) is written as a search of its own: an experiment file whose
``search:`` section is the original one (resources, concurrency, storage, tracking: the same
as ``sakdn search``) with the grid as ``points_to_evaluate``, ``num_samples`` = the grid's size,
no pruner, and a space of the keys the grid varies. So every run is a Tune trial with an MLflow
child run under one parent, the variants of a seed share its teacher set through the search's
teacher store, ``--resume`` continues a killed ablation without repeating finished runs, and
``ray job submit`` runs it on a cluster. When the trials end, the table (``sakdn.ablation``) is
printed and written, with its figure, to ``<search dir>/ablation/`` and the parent run
(``ablation/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sakdn import ablation
from sakdn.config import SearchConfig, load_config, parse_overrides, read_yaml
from sakdn.errors import ConfigError
from sakdn.names import State, Tag

INPUTS = "ablation-inputs"  # beside the search's directory: the generated experiment and space
# search keys the ablation sets itself: the grid, and a search that neither samples nor prunes
OWN_KEYS = ("space", "points_to_evaluate", "num_samples", "sampler", "pruner", "metric", "mode",
            "prune_metric")


def ablation_files(
    experiment: str | Path, seeds: int, variants: list[str] | None,
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[Path, list[str]]:
    """Write the ablation's experiment and space files; returns the experiment file and the
    ``--set`` items to run it with. The same arguments write the same files (``--resume``)."""
    if seeds < 2:
        raise ConfigError("--seeds", seeds, "needs at least 2 seeds for paired statistics")
    search_items = [o for o in overrides if o.partition("=")[0].strip().startswith("search.")]
    for item in search_items:
        key = item.partition("=")[0].strip()
        if key.removeprefix("search.").split(".")[0] in OWN_KEYS:
            raise ConfigError(key, item.partition("=")[2], "set by sakdn ablate (the grid runs "
                              "as a search without sampling or pruning); leave it out", "--set")
    config_items = [o for o in overrides if o not in search_items]
    config = load_config(experiment, parse_overrides(config_items))
    names = ablation.choose_variants(config, variants)
    points = ablation.grid(config, names, range(seeds))
    tree = read_yaml(experiment)
    section = dict(tree.get("search") or {})
    name = str(section.get("name") or Path(experiment).stem) + "_ablation"
    storage = Path(str(section.get("storage_path", SearchConfig().storage_path)))
    for item in search_items:  # storage and name may come from --set: the inputs follow them
        key, _, value = item.partition("=")
        if key.strip() == "search.storage_path":
            storage = Path(value.strip())
        if key.strip() == "search.name":
            name = value.strip()
    inputs = (storage / f"{name}.{INPUTS}").resolve()
    inputs.mkdir(parents=True, exist_ok=True)
    space = inputs / "space.yaml"
    space.write_text(yaml.safe_dump(_space(points), sort_keys=True))
    section.update({
        "space": str(space), "name": name, "metric": "student/best_val_acc", "mode": "max",
        "prune_metric": "student/val_acc", "num_samples": len(points), "sampler": "random",
        "pruner": "none", "scheduler": "optuna", "points_to_evaluate": points,
    })
    for key in ("pruner_options", "sampler_options", "scheduler_options", "time_budget_s"):
        section.pop(key, None)
    tree["search"] = section
    tree.setdefault("train", {})
    tree["train"] = {**(tree["train"] or {}), "evaluate_test": True}
    generated = inputs / "experiment.yaml"
    header = (f"# Written by `sakdn ablate {experiment} --seeds {seeds}`: the ablation grid "
              f"({len(names)} variants × {seeds} seeds) as a search.\n")
    generated.write_text(header + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return generated, list(overrides)


def _space(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A categorical key per varying key, holding every value the grid gives it."""
    keys = sorted(points[0])
    return {k: {"choice": sorted({p[k] for p in points}, key=lambda v: (str(type(v)), v))}
            for k in keys}


def run_ablation(
    experiment: str | Path, seeds: int = 12, variants: list[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (), resume: bool = False,
    address: str | None = None,
) -> ablation.Table:
    """Run (or continue) the ablation of an experiment; print, write and log its table."""
    from sakdn.search.run import run_search

    generated, items = ablation_files(experiment, seeds, variants, overrides)
    command = _command(experiment, seeds, variants, overrides)
    result = run_search(generated, items, resume=resume, address=address,
                        resume_command=command)
    config = load_config(generated, parse_overrides(
        [o for o in items if not o.partition("=")[0].strip().startswith("search.")]))
    names = ablation.choose_variants(config, variants)
    runs = _finished_runs(result.tracking_uri, result.name)
    table = ablation.table(ablation.results_from_runs(runs), names)
    out = Path(result.path) / "ablation"
    _write(table, out)
    if result.interrupted:
        print("ablation interrupted: the table below holds the runs finished so far", flush=True)
    print(ablation.to_text(table), flush=True)
    print(f"ablation table: {out / 'ablation.html'}", flush=True)
    _log(result.tracking_uri, result.name, out)
    return table


def _command(experiment, seeds, variants, overrides) -> str:
    """The command line that continues this ablation."""
    import shlex

    parts = ["sakdn", "ablate", str(experiment), "--seeds", str(seeds), "--resume"]
    if variants:
        parts += ["--variants", ",".join(variants)]
    for item in overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _finished_runs(tracking_uri: str, search: str) -> list[dict[str, Any]]:
    """Params and final metrics of the search's completed trials."""
    from sakdn import tracking as tr

    mlflow = tr.client(tracking_uri)
    parent = tr.find_parent(mlflow, search)
    if parent is None:
        return []
    return [{"params": run.data.params, "metrics": run.data.metrics}
            for run in tr.children(mlflow, parent)
            if run.data.tags.get(Tag.STATE) == State.COMPLETE]


def _write(table: ablation.Table, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.csv").write_text(ablation.to_csv(table))
    (out / "ablation_summary.csv").write_text(ablation.to_summary_csv(table))
    (out / "ablation.txt").write_text(ablation.to_text(table))
    figure = "ablation.png"
    if any(r.comparison for r in table.rows):
        ablation.figure(table, out / figure)
    else:
        figure = None
    (out / "ablation.html").write_text(ablation.to_html(table, figure))


def _log(tracking_uri: str, search: str, out: Path) -> None:
    from sakdn import tracking as tr

    mlflow = tr.client(tracking_uri)
    parent = tr.find_parent(mlflow, search)
    if parent is not None:
        for path in sorted(out.iterdir()):
            mlflow.log_artifact(parent.info.run_id, str(path), "ablation")
