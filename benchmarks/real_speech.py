"""Does a recipe generalize to real recordings? Random split, each speaker held out, or LOSO-CV.

Runs the five pipeline stages (the same modules ``dvc repro`` runs) in a throwaway project per
scenario, on an audiofolder of real recordings with a ``speaker`` column (by default the
real-speech development set in ``../shared/data/real-speech-dev``), and reports test accuracy,
the best validation accuracy and the training time of each:

    python -m benchmarks.real_speech                                  # the default recipe
    python -m benchmarks.real_speech -o model=tiny -o train=tiny      # another one
    python -m benchmarks.real_speech --scenarios random,jackson --threads 1

``--loso`` holds out every speaker in turn with several seeds, for the recipe as given and for
each named variant (overrides separated by spaces), and prints the table :mod:`benchmarks.loso`
makes (mean, worst speaker, their spread over seeds); ``--log`` keeps every run as it ends and
skips the runs it already holds, so a stopped sweep resumes where it stopped:

    python -m benchmarks.real_speech --loso --threads 1 --log reports/loso_runs.jsonl \\
        --variant "mean_pool=model.config.time_pooling=mean" \\
        --variant "mels40=model.config.n_mels=40"

Held-out scenarios write a ``metadata.csv`` with a ``split`` column (``scripts/hold_out_group.py``)
and train through ``data.split.column=split``; validation is then carved out of the remaining
speakers' clips at random (``data.split.group_by=null``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audioclf.dvc_stages import stage_names
from audioclf.testing import make_project
from benchmarks.loso import Variant, markdown_table, parse_variants, summarize
from benchmarks.machine import git
from benchmarks.measure import loadavg

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real-speech-dev" / "recordings"
STAGES = stage_names(REPO)
SCENARIOS = ("random", "jackson", "lucas", "theo")
GROUP_COLUMN = "speaker"
LOSO_SEEDS = (42, 1, 7)


def scenario_overrides(name: str, data: Path, workdir: Path) -> list[str]:
    """Config overrides for one scenario: a random split, or one speaker held out as test."""
    common = ["data=audiofolder", "data.label_column=label", "audio.num_proc=1"]
    if name == "random":
        return [*common, f"data.path={data}"]
    folder = workdir / f"holdout-{name}"
    script = REPO / "scripts" / "hold_out_group.py"
    command = [sys.executable, str(script), str(data), str(folder), "--value", name]
    subprocess.run([*command, "--column", GROUP_COLUMN], check=True, capture_output=True)
    return [*common, f"data.path={folder}", "data.split.column=split", "data.split.group_by=null"]


def run_scenario(
    name: str, data: Path, overrides: list[str], threads: int | None, workdir: Path
) -> dict[str, Any]:
    """Compose params.yaml in a fresh project, run every stage, return the figures."""
    project = make_project(workdir / name)
    project.write_params(*scenario_overrides(name, data, workdir), *overrides)
    root = project.root
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    seconds = {}
    for stage in STAGES:
        began = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", f"audioclf.stages.{stage}"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds[stage] = round(time.perf_counter() - began, 1)
        if result.returncode != 0:
            raise RuntimeError(f"{name}: stage {stage} failed:\n{result.stderr[-3000:]}")
    test = json.loads((root / "reports" / "metrics.json").read_text())
    validation = json.loads((root / "reports" / "validation.json").read_text())
    manifest = json.loads((root / "data" / "manifest.json").read_text())
    return {
        "scenario": name,
        "test_accuracy": round(test["accuracy"], 4),
        "test_f1_macro": round(test["f1_macro"], 4),
        "best_val_accuracy": round(validation["best_accuracy"], 4),
        "best_epoch": validation["best_epoch"],
        "epochs_trained": validation["epochs_trained"],
        "train_s": seconds["train"],
        "rows": manifest["num_rows"],
        "test_groups": manifest["groups"]["test"],
    }


def speakers_of(data: Path) -> list[str]:
    """Every value of the group column in ``data/metadata.csv``, sorted."""
    with (data / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        return sorted({row[GROUP_COLUMN] for row in csv.DictReader(handle)})


def run_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two LOSO runs the same run: recipe, variant, held-out speaker, seed, data."""
    return (
        tuple(row["base_overrides"]),
        row["variant"],
        tuple(row["overrides"]),
        row["speaker"],
        int(row["seed"]),
        row["data"],
    )


def read_log(path: Path | None) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The runs a ``--log`` file already holds, by :func:`run_key`."""
    if path is None or not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {run_key(row): row for row in rows}


def run_loso(
    data: Path,
    base: list[str],
    variants: Sequence[Variant],
    speakers: Sequence[str],
    seeds: Sequence[int],
    threads: int | None,
    log: Path | None,
) -> dict[str, list[dict[str, Any]]]:
    """Every (variant, speaker, seed) run, each in its own throwaway project; runs the log
    already holds are reused, each new one appended to it as soon as it ends."""
    done = read_log(log)
    runs: dict[str, list[dict[str, Any]]] = {}
    for variant in variants:
        for speaker in speakers:
            for seed in seeds:
                row = {
                    "base_overrides": list(base),
                    "variant": variant.name,
                    "overrides": list(variant.overrides),
                    "speaker": speaker,
                    "seed": seed,
                    "data": str(data),
                }
                if run_key(row) in done:
                    row = done[run_key(row)]
                else:
                    overrides = [*base, *variant.overrides, f"seed={seed}"]
                    with tempfile.TemporaryDirectory(prefix="audioclf-loso-") as tmp:
                        figures = run_scenario(speaker, data, overrides, threads, Path(tmp))
                    row |= figures | {"finished": datetime.now(UTC).isoformat(timespec="seconds")}
                    if log is not None:
                        log.parent.mkdir(parents=True, exist_ok=True)
                        with log.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                runs.setdefault(variant.name, []).append(row)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="audiofolder")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("-o", "--override", action="append", default=[], help="Hydra override")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument(
        "--out", type=Path, default=None, help="reports/real_speech.json (--loso: loso.json)"
    )
    loso = parser.add_argument_group("leave-one-speaker-out (--loso)")
    loso.add_argument("--loso", action="store_true", help="every speaker held out, per seed")
    loso.add_argument("--seeds", default=",".join(map(str, LOSO_SEEDS)), help="comma-separated")
    loso.add_argument("--speakers", default=None, help="comma-separated (default: all)")
    loso.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=OVERRIDE [OVERRIDE ...], on top of -o; repeat for more variants",
    )
    loso.add_argument("--no-default", action="store_true", help="only the --variant runs")
    loso.add_argument("--log", type=Path, default=None, help="JSON lines, one per run; resumes")
    args = parser.parse_args()
    data = args.data.resolve()
    if args.loso:
        main_loso(args, data)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="audioclf-real-speech-") as tmp:
        for name in args.scenarios.split(","):
            row = run_scenario(name, data, args.override, args.threads, Path(tmp))
            print(json.dumps(row), flush=True)
            results.append(row)
    out = args.out or REPO / "reports" / "real_speech.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"data": str(args.data), "overrides": args.override, "results": results}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


def main_loso(args: argparse.Namespace, data: Path) -> None:
    """Run the LOSO sweep, write its JSON, print its markdown table."""
    try:
        variants = parse_variants(args.variant, with_default=not args.no_default)
    except ValueError as err:
        raise SystemExit(f"--variant: {err}") from err
    speakers = args.speakers.split(",") if args.speakers else speakers_of(data)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    began = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "loadavg_start": loadavg()}
    runs = run_loso(data, args.override, variants, speakers, seeds, args.threads, args.log)
    summaries = {name: summarize(rows) for name, rows in runs.items()}
    table = markdown_table(summaries, variants)
    out = args.out or REPO / "reports" / "loso.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **began,
        "loadavg_end": loadavg(),
        "commit": git(REPO, "rev-parse", "--short", "HEAD"),
        "command": " ".join(["python -m benchmarks.real_speech", *sys.argv[1:]]),
        "data": str(args.data),
        "overrides": args.override,
        "threads": args.threads,
        "speakers": speakers,
        "seeds": seeds,
        "variants": {v.name: list(v.overrides) for v in variants},
        "summary": summaries,
        "runs": [row for rows in runs.values() for row in rows],
        "table": table,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
