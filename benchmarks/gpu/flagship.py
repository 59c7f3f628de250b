"""The flagship recipe's code path, one epoch of ``dvc repro``, in a throwaway copy.

``model=wav2vec2_base train=wav2vec2_base train.epochs=1`` on the embedded data, in a copy made
by :func:`audioclf.testing.copy_pipeline`, with ``model.name_or_path`` pointing at a randomly
initialised wav2vec2-base saved in a local folder (laid out like ``facebook/wav2vec2-base``),
so it runs offline. Run stage by stage (``dvc repro STAGE``), it records each stage's wall time
and memory, test accuracy, and the device the train stage's MLflow run says it trained on.
It needs the whole project (DVC, MLflow, datasets, Hydra ...), imported when it runs: the
training figures run on a machine without them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

from benchmarks.gpu.settings import RECIPE, SEED, Settings, wav2vec2_config
from benchmarks.measure import run_measured

PRETRAINED_DIR = "pretrained/wav2vec2-base-random"
REPRO_OVERRIDES = (f"model={RECIPE}", f"train={RECIPE}", "train.epochs=1")
# The repro on generated data (--smoke): a few 1-2 s clips, so crops and batches shrink too.
SMOKE_REPRO_OVERRIDES = ("train.crop_s=1.0", "train.batch_size=4", "train.log_every_n_steps=1")


def save_random_pretrained(folder: Path, settings: Settings) -> dict[str, Any]:
    """A randomly initialised checkpoint laid out like ``facebook/wav2vec2-base``.

    That repo holds a ``Wav2Vec2ForPreTraining`` checkpoint and a ``Wav2Vec2FeatureExtractor``
    (normalising, no attention mask); the recipe loads its encoder and adds a new
    classification head, which is what happens here too, from safetensors.
    """
    set_seed(SEED)
    config = wav2vec2_config(settings, num_labels=2)
    config.architectures = ["Wav2Vec2ForPreTraining"]
    model = Wav2Vec2ForPreTraining(config)
    model.save_pretrained(folder, safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=settings.sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(folder)
    return {
        "path": str(folder),
        "parameters": sum(p.numel() for p in model.parameters()),
        "files": sorted(p.name for p in folder.iterdir()),
    }


def flagship_repro(repo: Path, scratch: Path, settings: Settings, *, smoke: bool) -> dict[str, Any]:
    """One epoch of the flagship recipe through ``dvc repro`` in a throwaway copy of ``repo``."""
    import mlflow

    from audioclf.dvc_stages import stage_names
    from audioclf.testing import SMALL_SPEAKERS, copy_pipeline, hub_rows, write_hub_repo
    from benchmarks.workspace import SMOKE_DATA, SMOKE_DATA_OVERRIDES, Workspace

    root = scratch / "repo"
    copy_pipeline(root, repo)
    if smoke:
        write_hub_repo(root / SMOKE_DATA, hub_rows(speakers=SMALL_SPEAKERS))
        extra: tuple[str, ...] = (*SMOKE_DATA_OVERRIDES, *SMOKE_REPRO_OVERRIDES)
    else:
        shutil.copytree(repo / "data" / "embedded", root / "data" / "embedded")
        extra = ()
    pretrained = save_random_pretrained(root / PRETRAINED_DIR, settings)
    # model.revision stays the recipe's (main): a local folder must load with it as it is.
    overrides = [
        *REPRO_OVERRIDES,
        f"model.name_or_path={root / PRETRAINED_DIR}",
        *extra,
    ]
    ws = Workspace(root, overrides)
    ws.write_params()
    env = ws.env()
    if settings.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # --smoke: the train stage on the CPU, as measured
    exe = Path(sys.executable).parent / "dvc"
    dvc = str(exe) if exe.exists() else "dvc"
    out: dict[str, Any] = {
        "command": "dvc repro STAGE, for each stage in order (together: dvc repro)",
        "params_overrides": [o.replace(str(root), "<copy>") for o in overrides],
        "pretrained": {**pretrained, "path": PRETRAINED_DIR},
        "stages": {},
    }
    # One stage per `dvc repro` call: each stage's wall time and memory (a few seconds of
    # DVC's own start-up each, counted in).
    for stage in stage_names(root):
        measured = run_measured(
            [dvc, "repro", stage], cwd=root, env=env, log=scratch / f"{stage}.log", check=False
        )
        out["stages"][stage] = {"wall_s": round(measured.wall_s, 1), **measured.memory()}
        if measured.returncode != 0:
            raise RuntimeError(
                f"dvc repro {stage} failed ({measured.returncode}):\n{measured.output_tail}"
            )
    out["wall_s"] = round(sum(s["wall_s"] for s in out["stages"].values()), 1)
    cfg = ws.cfg()
    metrics = json.loads((root / cfg.paths.metrics).read_text(encoding="utf-8"))
    run_file = json.loads((root / cfg.paths.run).read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_run(run_file["run_id"])
    tags = run.data.tags
    device = tags.get("accelerate.device", "")
    out.update(
        {
            "test_accuracy": metrics["accuracy"],
            "test_f1_macro": metrics.get("f1_macro"),
            "num_test": metrics.get("num_test"),
            "train_device": device,
            "used_cuda": device.startswith("cuda"),
            "gpu": tags.get("env.gpu"),
            "mixed_precision": tags.get("accelerate.mixed_precision"),
            "train_epochs": int(cfg.train.epochs),
            "train_batch_size": int(cfg.train.batch_size),
            "train_crop_s": float(cfg.train.crop_s),
            "data": str(cfg.data.path),
        }
    )
    return out
