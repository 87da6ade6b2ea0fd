"""The ``sakdn`` command.

    sakdn data synth --out DIR            write the synthetic dataset (UTD-MHAD layout)
    sakdn data check --dataset NAME --root DIR
    sakdn data prepare --dataset NAME --root DIR
    sakdn train --config FILE [--set key=value ...] | --from-best SEARCH
    sakdn search EXPERIMENT.yaml [--resume] [--set key=value ...] [--address ADDR]
    sakdn ablate EXPERIMENT.yaml [--seeds N] [--variants A,B] [--resume] [--set key=value ...]
    sakdn best SEARCH
    sakdn report SEARCH [--out DIR]
    sakdn dashboard SEARCH [--port PORT]
    sakdn config [--config FILE] [--set key=value ...]
    sakdn weights fetch [--backbone NAME ...] [--weights NAME] [--dir DIR]
    sakdn tracking-user --credentials FILE|- [--tracking-uri URI]

Imports are local to each command so that ``sakdn train`` never loads Ray or MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sakdn.errors import SakdnError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sakdn", description="SAKDN training and distributed search")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: synth, check, prepare")
    dsub = data.add_subparsers(dest="data_command", required=True)
    synth = dsub.add_parser("synth", help="write the synthetic dataset in the UTD-MHAD layout")
    synth.add_argument("--out", required=True, type=Path, help="new (or empty) folder")
    synth.add_argument("--preset", choices=("default", "tiny"), default="default",
                       help="default: what experiments/synthetic.yaml reads; tiny: 3 classes, 4 "
                       "subjects, 2 repetitions of 1 s at 32 px (the smoke experiment, tests)")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    synth.add_argument("--classes", type=int, help="gesture classes, 2-12")
    synth.add_argument("--subjects", type=int, help="subjects (odd ones train, even ones test)")
    synth.add_argument("--repetitions", type=int, help="recordings per subject and class")
    synth.add_argument("--frame-size", type=int, help="video side in pixels")
    synth.add_argument("--duration", type=float, help="seconds per recording")
    for name, text in (("check", "validate a dataset tree: every file, pairing, splits"),
                       ("prepare", "build the preprocessing cache (GAF images, frames)")):
        q = dsub.add_parser(name, help=text)
        q.add_argument("--dataset", required=True,
                       help="synthetic, utd_mhad, berkeley_mhad, mmact or basic_motions")
        q.add_argument("--root", required=True, help="the dataset's folder")
        q.add_argument("--config", type=Path, help="experiment file (preprocessing settings)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a config key (gaf.image_size=64); repeatable")
        if name == "prepare":
            q.add_argument("--workers", type=int, default=2,
                           help="processes that decode videos (default 2)")

    tr = sub.add_parser("train", help="train teachers and the distilled student")
    tr.add_argument("--config", type=Path, help="experiment YAML (defaults when omitted)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key (student.lr=0.01); repeatable")
    tr.add_argument("--workdir", type=Path,
                    help="checkpoints and models (default train.output_dir)")
    tr.add_argument("--from-best", metavar="SEARCH",
                    help="final training from a search's best configuration (train+val → test)")
    tr.add_argument("--tracking-uri", help="MLflow tracking URI for --from-best "
                    "(default: MLFLOW_TRACKING_URI, else runs/search/mlflow.db)")
    tr.add_argument("--model-name", help="registered model name for --from-best "
                    "(default: sakdn-SEARCH)")

    se = sub.add_parser("search", help="run a distributed hyperparameter search")
    se.add_argument("experiment", type=Path,
                    help="an experiment file with a search: section (docs/experiments.md)")
    se.add_argument("--resume", action="store_true", help="continue an interrupted search")
    se.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key (student.lr=0.01) or a search key (search.num_samples=4)")
    se.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")

    ab = sub.add_parser(
        "ablate", help="what each part of SAKDN buys: a paired ablation over seeds",
        description="Train CE only, CE + ST, CE + SP, CE + GSDM, full SAKDN, full without "
        "SPAMFM and a no-effect control on the same seeds, as trials of a search (the "
        "experiment's search: settings for resources and storage), then print the paired "
        "table: mean, difference to CE only with its 95 % CI, Wilcoxon p, wins, and each "
        "variant against the control's noise floor (docs/results.md).")
    ab.add_argument("experiment", type=Path, help="an experiment file (training settings)")
    ab.add_argument("--seeds", type=int, default=12, help="training seeds 0..N-1 (default 12)")
    ab.add_argument("--variants", help="comma list of variants (CE only and the control always "
                    "run); default: all")
    ab.add_argument("--resume", action="store_true", help="continue an interrupted ablation")
    ab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every variant (student.optimizer=sgd) or a search "
                    "key (search.max_concurrent_trials=2)")
    ab.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")

    be = sub.add_parser("best", help="best configuration and metric of a search")
    be.add_argument("search", help="search name or parent run id")
    be.add_argument("--tracking-uri",
                    help="default: MLFLOW_TRACKING_URI, else runs/search/mlflow.db")
    be.add_argument("--yaml", action="store_true",
                    help="print the best configuration as an experiment YAML")

    db = sub.add_parser("dashboard", help="Optuna's dashboard on a search's study (127.0.0.1)")
    db.add_argument("search", help="search name or parent run id")
    db.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    db.add_argument("--tracking-uri",
                    help="default: MLFLOW_TRACKING_URI, else runs/search/mlflow.db")

    rp = sub.add_parser("report", help="write a search's HTML report")
    rp.add_argument("search", help="search name or parent run id")
    rp.add_argument("--out", type=Path,
                    help="folder for report.html, plots and leaderboard (default: the search's "
                    "report/ folder)")
    rp.add_argument("--tracking-uri",
                    help="default: MLFLOW_TRACKING_URI, else runs/search/mlflow.db")

    tu = sub.add_parser(
        "tracking-user", help="create an MLflow user, or set its password (as an admin)",
        description="Create the MLflow user that an MLflow credentials file names, with its "
        "password, or set that password when the user exists (rotation). Logs in as an admin "
        "of the server: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, else the file "
        "SAKDN_MLFLOW_CREDENTIALS names.")
    tu.add_argument("--credentials", required=True, metavar="FILE",
                    help="the user's login ([mlflow] mlflow_tracking_username, "
                    "mlflow_tracking_password); '-' reads it from stdin")
    tu.add_argument("--tracking-uri", help="the server (default: MLFLOW_TRACKING_URI)")

    cf = sub.add_parser(
        "config", help="print the resolved flat configuration",
        description="Print every key of an experiment: the training keys, then the search.* "
        "keys when the file has a search: section or --set names a search key (empty values "
        "are derived when a search starts; docs/experiments.md).")
    cf.add_argument("--config", type=Path, help="experiment file (code defaults when omitted)")
    cf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config or search key (search.num_samples=4); repeatable")

    we = sub.add_parser("weights", help="pretrained backbone weights (torchvision ImageNet)")
    wsub = we.add_subparsers(dest="weights_command", required=True)
    fe = wsub.add_parser(
        "fetch", help="download and verify ImageNet weights into a weights directory",
        description="Download torchvision's ImageNet weights of the backbones (torchvision's "
        "weights API; SHA-256 checked) into DIR, or verify the files already there. Run it "
        "once on a machine with network, into a directory every node of a cluster reads; "
        "point runs at it with --set train.weights_dir=DIR (or set TORCH_HOME so that DIR is "
        "$TORCH_HOME/hub/checkpoints). `sakdn search` checks every configured file before any "
        "trial starts and never downloads; trials load only from that directory. See "
        "docs/weights.md.",
    )
    fe.add_argument("--backbone", action="append", metavar="NAME",
                    help="a backbone with ImageNet weights (repeatable; default: all of "
                    "vgg16_bn, resnet18, googlenet)")
    fe.add_argument("--weights", default="imagenet", metavar="NAME",
                    help="imagenet (default) or a torchvision weights name of the backbone, "
                    "e.g. VGG16_BN_Weights.IMAGENET1K_V1")
    fe.add_argument("--dir", type=Path, metavar="DIR",
                    help="the weights directory (default: torch's cache, "
                    "$TORCH_HOME/hub/checkpoints)")
    return p


def _load(args) -> "ExperimentConfig":  # noqa: F821
    from sakdn.config import load_config, parse_overrides

    return load_config(args.config, overrides=parse_overrides(args.set))


# what `sakdn train` prints per epoch: losses, accuracies, and whether SAKDN's parts act
EPOCH_LINE_KEYS = ("loss", "val_acc", "train_acc", "semantic_r2", "gsdm_active", "gsdm_grad_ratio")


def cmd_train(args) -> int:
    if args.from_best:
        from sakdn.search.final import train_from_best

        train_from_best(args.from_best, tracking_uri=args.tracking_uri, overrides=args.set,
                        workdir=args.workdir, model_name=args.model_name)
        return 0
    from sakdn.models.weights import prepare_weights
    from sakdn.train import EpochReport, train

    config = _load(args)
    prepare_weights(config, download=True)  # first use with network: into torch's cache

    def show(report: EpochReport) -> None:
        if report.replayed:  # trained before the resume; the log said where it resumes from
            return
        keys = [k for k in report.metrics if k.endswith(EPOCH_LINE_KEYS)]
        text = "  ".join(f"{k.split('/')[-1]}={report.metrics[k]:.4f}" for k in keys)
        print(f"[{report.stage} {report.epoch:3d}] {text}", flush=True)

    result = train(config, callback=show, workdir=args.workdir)
    print(json.dumps(result.metrics, indent=1))
    print(f"models: {result.teacher_path} {result.student_path}")
    return 0


def cmd_data(args) -> int:
    if args.data_command == "synth":
        from sakdn.data.synthetic import PRESETS, write_synthetic

        given = {"classes": args.classes, "subjects": args.subjects,
                 "repetitions": args.repetitions, "frame_size": args.frame_size,
                 "duration": args.duration}
        options = {**PRESETS[args.preset], **{k: v for k, v in given.items() if v is not None}}
        out = write_synthetic(args.out, seed=args.seed, **options)
        print(f"wrote {out}")
        return 0
    from sakdn.data.check import check_dataset, prepare_dataset

    overrides = [f"data.dataset={args.dataset}", f"data.root={args.root}", *args.set]
    from sakdn.config import load_config, parse_overrides

    config = load_config(args.config, overrides=parse_overrides(overrides))
    if args.data_command == "check":
        return check_dataset(config)
    return prepare_dataset(config, workers=args.workers)


def cmd_search(args) -> int:
    from sakdn.search.run import run_search

    result = run_search(args.experiment, overrides=args.set, resume=args.resume,
                        address=args.address)
    return 1 if result.interrupted else 0


def cmd_ablate(args) -> int:
    from sakdn.search.ablate import run_ablation

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    run_ablation(args.experiment, seeds=args.seeds, variants=variants, overrides=args.set,
                 resume=args.resume, address=args.address)
    return 0


def cmd_dashboard(args) -> int:
    from sakdn.dashboard import serve
    from sakdn.tracking import default_tracking_uri

    serve(args.search, args.tracking_uri or default_tracking_uri(), args.port)
    return 0


def cmd_best(args) -> int:
    from sakdn.search.final import best_of

    best = best_of(args.search, tracking_uri=args.tracking_uri)
    if args.yaml:
        from sakdn.config import dump_yaml, from_flat

        print(dump_yaml(from_flat(best["config"])), end="")
    else:
        print(json.dumps(best, indent=1))
    return 0


def cmd_report(args) -> int:
    from sakdn.report import write_report

    path = write_report(args.search, out=args.out, tracking_uri=args.tracking_uri)
    print(f"wrote {path}")
    return 0


def cmd_tracking_user(args) -> int:
    import os

    from sakdn.errors import ConfigError
    from sakdn.tracking_auth import is_server, read_credentials, set_user

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not is_server(uri):
        raise ConfigError("--tracking-uri", uri or None, "give the tracking server's http(s) "
                          "URL (or set MLFLOW_TRACKING_URI)")
    username, password = read_credentials(args.credentials)
    created = set_user(uri, username, password)
    print(f"{'created' if created else 'set the password of'} user {username!r} on {uri}")
    return 0


def cmd_config(args) -> int:
    from sakdn.config import load_experiment, parse_overrides

    config, search = load_experiment(args.config, parse_overrides(args.set))
    flat = config.to_flat()
    if search is not None:
        flat.update(search.to_flat())
    for key, value in flat.items():
        print(f"{key}={value}")
    return 0


def cmd_weights(args) -> int:
    from sakdn.errors import ConfigError
    from sakdn.models.weights import IMAGENET_WEIGHTS, fetch, is_torchvision, resolve

    if not is_torchvision(args.weights):
        raise ConfigError("--weights", args.weights, "give imagenet or a torchvision weights name")
    directory = str(args.dir.resolve()) if args.dir else ""
    for backbone in args.backbone or list(IMAGENET_WEIGHTS):
        if backbone not in IMAGENET_WEIGHTS:
            raise ConfigError("--backbone", backbone, "has no ImageNet weights; choose from "
                              + ", ".join(IMAGENET_WEIGHTS))
        resolved = resolve(backbone, args.weights, "--weights", directory)
        print(f"{backbone}: {fetch(resolved)} (verified)", flush=True)
    return 0


COMMANDS = {
    "train": cmd_train,
    "data": cmd_data,
    "search": cmd_search,
    "ablate": cmd_ablate,
    "best": cmd_best,
    "dashboard": cmd_dashboard,
    "report": cmd_report,
    "config": cmd_config,
    "weights": cmd_weights,
    "tracking-user": cmd_tracking_user,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SakdnError as err:
        print(f"sakdn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
