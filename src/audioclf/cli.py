"""The ``audioclf`` command: helpers around the pipeline (the stages themselves run under DVC)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence

from transformers.utils import logging as hf_logging

from audioclf.config import write_params
from audioclf.lineage import main as lineage_main
from audioclf.predict import (
    HubError,
    ModelError,
    format_segments,
    format_table,
    load_classifier,
    predict_files,
    push_to_hub,
)
from audioclf.windows import WindowError


def _params(args: argparse.Namespace) -> int:
    path = write_params(args.overrides)
    print(
        f"wrote {path} from conf/" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise on a CLI's stderr
    try:
        classifier = load_classifier(args.model)
    except ModelError as err:
        print(f"audioclf predict: error: bad --model: {err}", file=sys.stderr)
        return 2
    try:
        window = classifier.window(args.window_s, args.hop_s, names=("--window-s", "--hop-s"))
    except WindowError as err:
        print(f"audioclf predict: error: {err}", file=sys.stderr)
        return 2
    predictions, errors = predict_files(
        classifier,
        args.files,
        top_k=args.top_k,
        batch_size=args.batch_size,
        window=window,
        segments=args.segments,
    )
    for error in errors:
        print(f"audioclf predict: error: {error['file']}: {error['error']}", file=sys.stderr)
    if args.json:
        out = {
            "model": classifier.source,
            "window": None
            if window is None
            else {"window_s": window.seconds, "hop_s": window.hop_s},
            "predictions": predictions,
            "errors": errors,
        }
        print(json.dumps(out, indent=2))
    elif predictions:
        print(format_table(predictions))
        if args.segments:
            print()
            print(format_segments(predictions))
    return 1 if errors else 0


def _push(args: argparse.Namespace) -> int:
    try:
        url = push_to_hub(args.model_dir, args.repo_id, private=args.private or None)
    except (HubError, ModelError) as err:
        print(f"audioclf push: error: {err}", file=sys.stderr)
        return 1
    print(f"pushed {args.model_dir} to {url}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    return lineage_main(
        args.target,
        as_json=args.json,
        check=args.verify,
        repo=args.repo,
        tracking_uri=args.tracking_uri,
    )


def _sweep(args: argparse.Namespace) -> int:
    from audioclf.config import ConfigError, user_repo_root
    from audioclf.hparams_search import spec as search_spec
    from audioclf.hparams_search import worker

    root = user_repo_root()
    try:
        spec = search_spec.load_spec(
            args.search, root, overrides=args.overrides, n_trials=args.n_trials
        )
    except ConfigError as err:
        print(f"audioclf sweep: error: {err}", file=sys.stderr)
        return 2
    try:
        sweep = worker.join(
            spec,
            root,
            storage=args.storage,
            git_remote=args.git_remote,
            worker_index=args.worker_index,
        )
    except worker.StorageError as err:
        print(f"audioclf sweep: error: {err}", file=sys.stderr)
        return 2
    print(
        f"study {spec.study_name!r} in {worker.shown_storage(sweep.storage)}: {spec.n_trials} "
        f"trials, {spec.direction} {spec.objective}; MLflow parent run {sweep.parent_id}"
    )
    try:
        study = worker.run_workers(sweep, jobs=args.jobs)
    except KeyboardInterrupt:
        print(
            "audioclf sweep: stopped; the interrupted trials are FAIL, the others kept: run the "
            "same command to go on with the study",
            file=sys.stderr,
        )
        return 130
    return report_study(study, spec)


def report_study(study, spec) -> int:
    from audioclf.hparams_search.runs import trial_counts

    states = {state: n for state, n in trial_counts(study).items() if n}
    print("trials: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
    if not states.get("COMPLETE"):
        print("audioclf sweep: error: no trial completed", file=sys.stderr)
        return 1
    best = study.best_trial
    print(
        f"best: trial {best.number} ({best.user_attrs.get('dvc_experiment')}) "
        f"{spec.objective} {best.value:.4f} with "
        + " ".join(f"{k}={v}" for k, v in best.params.items())
    )
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _number_of_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text}")
    return value


def seconds(text: str) -> float:
    """A number of seconds, at least 0."""
    value = _number_of_seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds, more than 0."""
    value = _number_of_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audioclf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    params = commands.add_parser(
        "params", help="regenerate params.yaml from conf/ (Hydra overrides allowed)"
    )
    params.add_argument("overrides", nargs="*", help="e.g. data=minds14 train.epochs=3")
    params.set_defaults(func=_params)

    predict = commands.add_parser(
        "predict",
        help="classify audio files (WAV/FLAC/OGG/MP3, any rate, mono or stereo)",
        description="Classify audio files with the pipeline's model or an MLflow model. "
        "Files longer than the scoring window are read in blocks and scored in overlapping "
        "windows. Exit code 1 if any file failed (the others are still predicted), 2 for a bad "
        "--model or window.",
    )
    predict.add_argument(
        "files", nargs="+", metavar="FILE", help="audio files or directories (searched recursively)"
    )
    predict.add_argument(
        "--model",
        default=None,
        help="model directory (default: paths.model of ./params.yaml, i.e. models/final), "
        "runs:/RUN_ID/model, models:/NAME@ALIAS or models:/NAME/VERSION",
    )
    predict.add_argument(
        "--top-k", type=positive_int, default=5, help="labels per file (default 5)"
    )
    predict.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="clips per forward pass (default 8); batching never changes scores",
    )
    predict.add_argument(
        "--window-s",
        type=seconds,
        default=None,
        metavar="S",
        help="score files longer than S seconds in windows of S seconds, averaging the window "
        "scores (default: the clip length the model was trained on, as its folder records it; "
        "whole files for models that record none); 0: whole files",
    )
    predict.add_argument(
        "--hop-s",
        type=positive_seconds,
        default=None,
        metavar="S",
        help="a window every S seconds, at most the window (default: half the window)",
    )
    predict.add_argument(
        "--segments",
        action="store_true",
        help="also list each window's times and top label (a whole file is one window)",
    )
    predict.add_argument("--json", action="store_true", help="JSON output for machines")
    predict.set_defaults(func=_predict)

    push = commands.add_parser(
        "push", help="push a model directory (model + feature extractor) to the Hugging Face Hub"
    )
    push.add_argument("model_dir", metavar="MODEL_DIR", help="e.g. models/final")
    push.add_argument("repo_id", metavar="REPO_ID", help="e.g. your-name/audioclf-intent")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.set_defaults(func=_push)

    lineage = commands.add_parser(
        "lineage",
        help="show (and --verify) the code and data that produced a model",
        description="The chain model -> MLflow run -> git commit and DVC experiment -> dvc.lock "
        "hashes -> data manifest. Exit code 1 if --verify finds a mismatch, 2 if TARGET is "
        "not found.",
    )
    lineage.add_argument(
        "target",
        metavar="TARGET",
        help="MLflow run id, runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS "
        "or a model directory (e.g. models/final)",
    )
    lineage.add_argument("--json", action="store_true", help="JSON output for machines")
    lineage.add_argument(
        "--verify",
        action="store_true",
        help="check the workspace (or DVC cache) still holds the data with the locked hashes",
    )
    lineage.add_argument("--repo", default=None, help="the DVC repository (default: found from .)")
    lineage.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: MLFLOW_TRACKING_URI, else the repo's mlflow.db)",
    )
    lineage.set_defaults(func=_lineage)

    sweep = commands.add_parser(
        "sweep",
        help="run (or join) a hyperparameter search of conf/hparams_search/NAME.yaml",
        description="Run trials of an Optuna study until it holds its n_trials: each trial a "
        "`dvc exp run --temp` (a DVC experiment) whose MLflow run is a child of the sweep's "
        "parent run. Workers on other machines join with the same command and a shared "
        "--storage. Exit code 1 if no trial completed, 2 for a bad search config.",
    )
    sweep.add_argument("search", metavar="NAME", help="conf/hparams_search/NAME.yaml")
    sweep.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override every trial takes (as `dvc exp run -S`); repeatable",
    )
    sweep.add_argument(
        "--storage",
        default=None,
        help="Optuna's storage URL, shared by all workers (default: $AUDIOCLF_OPTUNA_STORAGE, "
        "else the search's storage, else sqlite:///optuna.db in the repository)",
    )
    sweep.add_argument(
        "--jobs", type=positive_int, default=1, help="workers in this process (default 1)"
    )
    sweep.add_argument(
        "--git-remote",
        default=None,
        metavar="REMOTE",
        help="push each trial's experiment there with `dvc exp push` (and its outputs to the "
        "default DVC remote)",
    )
    sweep.add_argument(
        "--worker-index",
        type=int,
        default=int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")),
        help="shifts the sampler's seed, so workers started together draw different points "
        "(default: $SLURM_ARRAY_TASK_ID, else 0)",
    )
    sweep.add_argument(
        "--n-trials", type=positive_int, default=None, help="instead of the search's n_trials"
    )
    sweep.set_defaults(func=_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
