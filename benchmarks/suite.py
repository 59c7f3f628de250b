"""Run the whole suite (or ``--smoke``) and write ``bench.json`` + ``bench.md``.

Everything runs in a temporary copy of the repository (see :mod:`.workspace`): the pipeline is
built there once, stage by stage (memory per stage), committed to DVC (``dvc repro`` figures),
and its data feed the in-process figures (throughput, time to accuracy, inference).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audioclf.dvc_stages import data_stages
from benchmarks.measure import loadavg
from benchmarks.workspace import REPO_ROOT, STAGES

log = logging.getLogger("benchmarks")

HIGH_LOAD = 1.5
FIGURES = (
    "stages",
    "repro",
    "scaling",
    "disk",
    "throughput",
    "processes",
    "accuracy",
    "inference",
    "parallel",
)


@dataclass
class Settings:
    smoke: bool
    throughput_rounds: int = 7
    throughput_warmup: int = 2
    throughput_steps: int = 20
    accuracy_target: float | None = 0.9
    accuracy_budget_s: float = 540.0  # per recipe, evaluations included
    trainer_epochs: float | None = None  # None: the guide's 10
    repro_runs: int = 3
    # --smoke builds the data stages only: two more stage processes would double its time.
    pipeline: tuple[str, ...] = STAGES
    # train/evaluate once more with the configured model: (train clips, test clips), or None
    recipe_stage_rows: tuple[int, int] | None = (64, 32)
    scales: tuple[int, ...] = (1, 4, 16)
    scale_runs: dict[int, int] = field(default_factory=lambda: {1: 2, 4: 1, 16: 1})
    disk_scales: tuple[int, ...] = (1, 16)
    latency_calls: int = 40
    predict_batch: int = 32
    predict_rounds: int = 5
    parallel_sweep: bool = True  # benchmarks/parallel_sweep.py
    processes_rounds: int = 3  # benchmarks/processes.py; 0: not measured

    @classmethod
    def for_mode(cls, smoke: bool) -> Settings:
        if not smoke:
            return cls(smoke=False)
        return cls(
            smoke=True,
            throughput_rounds=3,
            throughput_warmup=3,
            throughput_steps=15,
            accuracy_target=None,
            accuracy_budget_s=60.0,
            trainer_epochs=2,
            repro_runs=1,
            pipeline=data_stages(REPO_ROOT),
            recipe_stage_rows=None,
            scales=(1, 4),
            scale_runs={1: 1, 4: 1},
            disk_scales=(1, 2),
            latency_calls=5,
            predict_batch=8,
            predict_rounds=1,
            parallel_sweep=False,
            processes_rounds=0,
        )


def _timed(name: str, timings: dict[str, Any], fn, *args, **kwargs):
    """Run one figure, recording its duration and the load average before and after."""
    log.info("bench: %s ...", name)
    before = loadavg()[0]
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        seconds = round(time.perf_counter() - start, 1)
        timings[name] = {"s": seconds, "load_1min": [before, loadavg()[0]]}
        log.info("bench: %s done in %.1f s (load %s)", name, seconds, loadavg())


def run(
    repo: Path,
    out: Path,
    *,
    smoke: bool = False,
    only: tuple[str, ...] = FIGURES,
    settings: Settings | None = None,
    keep: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the suite on ``repo``'s code and data; write ``out`` (JSON) and its ``.md``.

    ``threads``: torch's intra-op threads for everything measured (in-process figures, and
    ``OMP_NUM_THREADS`` for the stage subprocesses); None keeps torch's default (one per core).
    """
    import torch
    from datasets import load_from_disk
    from omegaconf import OmegaConf

    from benchmarks import accuracy, disk, repro, scaling, stages, throughput
    from benchmarks.common import mlflow_store
    from benchmarks.machine import machine_info, source_info
    from benchmarks.report import write_markdown
    from benchmarks.workspace import SMOKE_DATA, make_workspace

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_caching()
    s = settings or Settings.for_mode(smoke)
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "mode": "smoke" if smoke else "full",
        "command": "python -m benchmarks"
        + (" --smoke" if smoke else "")
        + (f" --threads {threads}" if threads else ""),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "source": source_info(repo),
        "train_throughput_ratio": None,
        "train_processes_ratio": None,
        "time_to_accuracy": None,
        "noop_repro_s": None,
        "featurize_scaling": None,
        "disk_per_audio_hour": None,
        "predict": None,
        "peak_rss_mb": None,
        "gpu": None,
        "details": {},
        "notes": {
            "gpu": "no GPU on this machine: the GPU bf16 training figure is not measured",
        },
        "settings": {**asdict(s), "threads": threads},
        "errors": {},
        "timings_s": {},
    }
    result["machine"]["torch_threads_default"] = default_threads
    timings = result["timings_s"]
    partial = out.with_suffix(".partial.json")
    scratch = Path(tempfile.mkdtemp(prefix="audioclf-bench-"))
    try:
        # The pipeline in the copy trains with the fast overrides (the train stage's cost is
        # not what these figures are about); the in-process figures use the real config.
        ws = make_workspace(repo, scratch / "repo", smoke=smoke)
        ws.threads = threads
        recipe = ws.recipe(smoke=smoke)
        result["data"] = {
            "source": OmegaConf.select(recipe, "data.path"),
            "pipeline_overrides": list(ws.overrides),
        }
        stage_figures = _timed("stages", timings, stages.run_stages, ws, s.pipeline)
        if s.recipe_stage_rows:
            stage_figures.update(
                _timed(
                    "stages_recipe",
                    timings,
                    stages.run_recipe_stages,
                    ws,
                    recipe,
                    scratch / "recipe-stages",
                    *s.recipe_stage_rows,
                )
            )
        result["peak_rss_mb"] = {k: v["peak_tree_rss_mb"] for k, v in stage_figures.items()}
        result["details"]["stages"] = stage_figures
        cfg = ws.cfg()
        features = load_from_disk(str(ws.root / cfg.paths.features))
        resampled = load_from_disk(str(ws.root / cfg.paths.resampled))
        result["data"].update(
            {
                split: {
                    "clips": len(ds),
                    "audio_s": round(float(sum(ds["duration_s"])), 1),
                }
                for split, ds in resampled.items()
            }
        )

        def fig_repro() -> None:
            until = None if s.pipeline[-1] == "evaluate" else s.pipeline[-1]
            noop = _timed("repro", timings, repro.noop_repro, ws, s.repro_runs, until)
            noop["pipeline_overrides"] = (
                "debug=fast + train.epochs=1 + train.log_every_n_steps=10"
            )
            result["noop_repro_s"] = noop["median_s"]
            result["details"]["noop_repro"] = noop
            if until is None:
                noop["after_param_change"] = _timed(
                    "repro_param_change", timings, repro.after_param_change, ws
                )

        def fig_scaling() -> None:
            result["featurize_scaling"] = _timed(
                "scaling",
                timings,
                scaling.featurize_scaling,
                ws,
                s.scales,
                s.scale_runs,
                scratch / "scaling",
                stage_figures.get("featurize"),
            )

        def fig_disk() -> None:
            result["disk_per_audio_hour"] = _timed(
                "disk",
                timings,
                disk.disk_per_audio_hour,
                repo,
                scratch / "disk",
                s.disk_scales,
                source=ws.root / (SMOKE_DATA if smoke else "data/embedded"),
                smoke=smoke,
            )

        def fig_throughput() -> None:
            with mlflow_store(scratch / "mlflow"):
                tp = _timed(
                    "throughput",
                    timings,
                    throughput.train_throughput,
                    recipe,
                    features,
                    scratch / "throughput",
                    rounds=s.throughput_rounds,
                    warmup=s.throughput_warmup,
                    steps=s.throughput_steps,
                )
                tp["threads_probe"] = _timed(
                    "threads_probe",
                    timings,
                    throughput.threads_probe,
                    recipe,
                    sorted({1, default_threads, torch.get_num_threads()}),
                )
            result["train_throughput_ratio"] = tp["ratio"]
            result["details"]["train_throughput"] = tp

        def fig_accuracy() -> None:
            tta: dict[str, Any] = {"target_accuracy": s.accuracy_target, "n": 1}
            result["time_to_accuracy"] = tta
            with mlflow_store(scratch / "mlflow"):
                tta["ours"] = _timed(
                    "accuracy_ours",
                    timings,
                    accuracy.ours,
                    recipe,
                    features,
                    scratch / "tta-ours",
                    target=s.accuracy_target,
                    budget_s=s.accuracy_budget_s,
                )
            tta["hf_trainer"] = _timed(
                "accuracy_trainer",
                timings,
                accuracy.hf_trainer,
                recipe,
                resampled,
                features,
                scratch / "tta-trainer",
                target=s.accuracy_target,
                budget_s=s.accuracy_budget_s,
                epochs=s.trainer_epochs,
            )

        def fig_inference() -> None:
            result["predict"] = _timed(
                "inference", timings, _inference, recipe, features, resampled, scratch, s
            )

        def fig_processes() -> None:
            from benchmarks.processes import processes_throughput

            if s.processes_rounds:
                figure = _timed(
                    "processes",
                    timings,
                    processes_throughput,
                    ws,
                    scratch / "processes",
                    rounds=s.processes_rounds,
                )
                result["train_processes_ratio"] = figure["ratio_two_to_one"]
                result["details"]["processes"] = figure

        def fig_parallel() -> None:
            from benchmarks.parallel_sweep import parallel_sweep

            if s.parallel_sweep:
                result["details"]["parallel_sweep"] = _timed(
                    "parallel", timings, parallel_sweep, ws
                )

        figures = {
            "repro": fig_repro,
            "scaling": fig_scaling,
            "disk": fig_disk,
            "throughput": fig_throughput,
            "processes": fig_processes,
            "accuracy": fig_accuracy,
            "inference": fig_inference,
            "parallel": fig_parallel,
        }
        for name, figure in figures.items():
            if name not in only:
                continue
            try:
                figure()
            except Exception as err:  # one broken figure must not lose the others
                log.exception("bench: %s failed", name)
                result["errors"][name] = f"{type(err).__name__}: {err}"[:2000]
            # what is measured so far, should the run be killed
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    finally:
        torch.set_num_threads(default_threads)
        result["machine"]["loadavg_end"] = loadavg()
        timings["total"] = {"s": round(time.perf_counter() - started, 1)}
        peak = max([v["load_1min"][1] for v in timings.values() if "load_1min" in v] or [0.0])
        if max(result["machine"]["loadavg_start"][0], peak) > HIGH_LOAD:
            result["notes"]["load"] = (
                f"the {result['machine']['cpu_count']} cores were shared with other jobs (1-minute "
                f"load average up to {peak:g}, see timings_s): absolute times are slower than "
                "on an idle machine; every comparison is a ratio measured side by side"
            )
        if keep:
            log.info("bench: kept %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        write_markdown(result, out.with_suffix(".md"))
        partial.unlink(missing_ok=True)
    return result


def _inference(recipe, features, resampled, scratch: Path, s: Settings) -> dict[str, Any]:
    from audioclf.models.build import build_model
    from audioclf.models.extractor import build_feature_extractor
    from audioclf.training.loop import save_model
    from benchmarks.inference import inference, make_clips

    model_dir = scratch / "predict-model"
    names = features["train"].features["label"].names
    save_model(build_model(recipe.model, names), build_feature_extractor(recipe.model), model_dir)
    rate = int(recipe.model.sampling_rate)
    test = resampled["test"].with_format("numpy", columns=["array"])
    arrays = [test[i]["array"] for i in range(min(len(test), 64))]
    clips = make_clips(arrays, rate, max(s.latency_calls, s.predict_batch))
    return inference(
        model_dir,
        clips,
        latency_calls=s.latency_calls,
        batch=s.predict_batch,
        throughput_rounds=s.predict_rounds,
    )
