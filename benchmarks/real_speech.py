"""Does a recipe generalize to real recordings? Random split and each speaker held out in turn.

Runs the five pipeline stages (the same modules ``dvc repro`` runs) in a throwaway project per
scenario, on an audiofolder of real recordings with a ``speaker`` column (by default the
real-speech development set in ``../shared/data/real-speech-dev``), and reports test accuracy,
the best validation accuracy and the training time of each:

    python -m benchmarks.real_speech                                  # the default recipe
    python -m benchmarks.real_speech -o model=tiny -o train=tiny      # another one
    python -m benchmarks.real_speech --scenarios random,jackson --threads 1

Held-out scenarios write a ``metadata.csv`` with a ``split`` column (``scripts/hold_out_group.py``)
and train through ``data.split.column=split``; validation is then carved out of the remaining
speakers' clips at random (``data.split.group_by=null``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from audioclf.dvc_stages import stage_names
from tests.datagen import make_project

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real-speech-dev" / "recordings"
STAGES = stage_names(REPO)
SCENARIOS = ("random", "jackson", "lucas", "theo")


def scenario_overrides(name: str, data: Path, workdir: Path) -> list[str]:
    """Config overrides for one scenario: a random split, or one speaker held out as test."""
    common = ["data=audiofolder", "data.label_column=label", "audio.num_proc=1"]
    if name == "random":
        return [*common, f"data.path={data}"]
    folder = workdir / f"holdout-{name}"
    script = REPO / "scripts" / "hold_out_group.py"
    command = [sys.executable, str(script), str(data), str(folder), "--value", name]
    subprocess.run([*command, "--column", "speaker"], check=True, capture_output=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="audiofolder")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("-o", "--override", action="append", default=[], help="Hydra override")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "real_speech.json")
    args = parser.parse_args()
    data = args.data.resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="audioclf-real-speech-") as tmp:
        for name in args.scenarios.split(","):
            row = run_scenario(name, data, args.override, args.threads, Path(tmp))
            print(json.dumps(row), flush=True)
            results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"data": str(args.data), "overrides": args.override, "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
