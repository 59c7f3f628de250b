"""``python -m benchmarks.gpu``: the flagship model's training on GPUs, into reports/gpu.json.

Two parts, each recorded even when the other cannot run:

- **Training throughput and memory.** A wav2vec2-base-sized classifier (transformers'
  ``Wav2Vec2Config`` defaults are the base size; random init, so nothing is downloaded) trained
  with AdamW as ``train=wav2vec2_base`` does (its batch, crop, learning rate, gradient clipping,
  frozen feature encoder, read from ``conf/``): samples/s and peak GPU memory
  (``torch.cuda.max_memory_allocated``) at fp32 and bf16 (Accelerate's ``mixed_precision``) on
  one GPU, then the same through ``accelerate launch --multi_gpu`` on all GPUs where there are
  several. Batches are seeded random audio: a step's cost depends on the batch's shape only.
  This part needs torch, transformers, accelerate, numpy, PyYAML and psutil, nothing else of
  the project: a GPU machine's stock PyTorch image runs it.
- **The flagship recipe's code path, one epoch.** ``dvc repro`` with ``model=wav2vec2_base
  train=wav2vec2_base train.epochs=1`` on the embedded data, in a throwaway copy of the
  repository (:func:`tests.datagen.copy_pipeline`), ``model.name_or_path`` pointing at a
  randomly initialised wav2vec2-base saved with ``save_pretrained`` in a local folder (laid out
  like ``facebook/wav2vec2-base``: a pre-training checkpoint, its feature extractor), so it runs
  offline. Run stage by stage (``dvc repro STAGE``), it records each stage's wall time and
  memory, test accuracy, and the device the train stage's MLflow run says it trained on.
  Needs the whole project installed (DVC, MLflow, datasets, Hydra ...).

``--smoke`` runs both on the CPU with a tiny config and generated data (seconds, and about a
minute for the pipeline): the tests' check of this code path on a machine without a GPU.
``scripts/gpu_check.sh`` checks the prerequisites first and runs this module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks.gpu")

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_LABELS = 14  # MInDS-14's intents
SEED = 42
PRECISIONS = ("no", "bf16")  # Accelerate's names; "no" is fp32
PRECISION_NAMES = {"no": "fp32", "bf16": "bf16"}
# A wav2vec2 small enough to train a few steps on a CPU in seconds (--smoke only).
SMOKE_MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16, 16, 16, 16, 16),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "classifier_proj_size": 16,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
}
PRETRAINED_DIR = "pretrained/wav2vec2-base-random"
REPRO_OVERRIDES = ("model=wav2vec2_base", "train=wav2vec2_base", "train.epochs=1")
# The repro on generated data (--smoke): a few 1-2 s clips, so crops and batches shrink too.
SMOKE_REPRO_OVERRIDES = ("train.crop_s=1.0", "train.batch_size=4", "train.log_every_n_steps=1")


@dataclass(frozen=True)
class Settings:
    """What one throughput arm trains: the recipe's optimisation, on random batches."""

    batch_size: int
    crop_s: float
    sampling_rate: int
    learning_rate: float
    weight_decay: float
    max_grad_norm: float
    freeze_feature_encoder: bool
    warmup_steps: int = 10
    timed_steps: int = 50
    model_config: tuple[tuple[str, Any], ...] = ()  # Wav2Vec2Config overrides; () = base size
    cpu: bool = False

    @property
    def samples_per_clip(self) -> int:
        return int(self.crop_s * self.sampling_rate)


def recipe_settings(repo: Path = REPO_ROOT) -> Settings:
    """``train=wav2vec2_base`` and ``model=wav2vec2_base`` as configured in ``conf/``.

    Read as plain YAML, not composed with Hydra: a GPU machine's stock PyTorch image may lack
    Hydra, and these two files hold no interpolation.
    """
    import yaml

    def read(path: Path) -> dict[str, Any]:
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise RuntimeError(f"cannot read {path}: {err}") from err

    train = read(repo / "conf" / "train" / "wav2vec2_base.yaml")
    model = read(repo / "conf" / "model" / "wav2vec2_base.yaml")
    try:
        return Settings(
            batch_size=int(train["batch_size"]),
            crop_s=float(train["crop_s"]),
            sampling_rate=int(model["sampling_rate"]),
            learning_rate=float(train["learning_rate"]),
            weight_decay=float(train["weight_decay"]),
            max_grad_norm=float(train["max_grad_norm"] or 0.0),
            freeze_feature_encoder=bool(model["freeze_feature_encoder"]),
        )
    except KeyError as err:
        raise RuntimeError(f"conf/train or conf/model wav2vec2_base.yaml lacks {err}") from err


def smoke_settings(repo: Path = REPO_ROOT) -> Settings:
    """The recipe's optimisation on a tiny model, 2 x 1 s batches, a few steps, on the CPU."""
    return replace(
        recipe_settings(repo),
        batch_size=2,
        crop_s=1.0,
        warmup_steps=1,
        timed_steps=3,
        model_config=tuple(SMOKE_MODEL_CONFIG.items()),
        cpu=True,
    )


def model_config(settings: Settings, num_labels: int = NUM_LABELS) -> Any:
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(**dict(settings.model_config), num_labels=num_labels)


def build_classifier(settings: Settings) -> Any:
    """A randomly initialised ``Wav2Vec2ForSequenceClassification`` (feature encoder frozen as
    the recipe freezes it)."""
    from transformers import Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification(model_config(settings))
    if settings.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


def random_batches(settings: Settings, count: int, seed: int, pin: bool) -> list[tuple[Any, Any]]:
    """``count`` seeded batches of unit-variance audio and labels, on the CPU."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        values = torch.randn(settings.batch_size, settings.samples_per_clip, generator=generator)
        labels = torch.randint(0, NUM_LABELS, (settings.batch_size,), generator=generator)
        batches.append((values.pin_memory(), labels.pin_memory()) if pin else (values, labels))
    return batches


def measure_training(settings: Settings, precision: str) -> dict[str, Any]:
    """Train ``settings.warmup_steps`` then ``timed_steps`` steps under Accelerate.

    Run on every process of an ``accelerate launch`` (each its own batches); the figures are
    the main process's clock over the timed steps, the global batch and the largest peak
    memory of any process. Each batch is copied to the device in the step, as a loader's is.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from benchmarks.common import reset_accelerate

    reset_accelerate()
    accelerator = Accelerator(mixed_precision=precision, cpu=settings.cpu)
    device = accelerator.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    set_seed(SEED)
    model = build_classifier(settings)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    batches = random_batches(settings, 4, SEED + accelerator.process_index, pin=cuda)

    def step(index: int) -> Any:
        values, labels = batches[index % len(batches)]
        values = values.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        loss = model(input_values=values, labels=labels).loss
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def settle() -> None:
        if cuda:
            torch.cuda.synchronize(device)
        accelerator.wait_for_everyone()

    losses = [step(i) for i in range(settings.warmup_steps)]
    settle()
    start = time.perf_counter()
    losses += [step(settings.warmup_steps + i) for i in range(settings.timed_steps)]
    settle()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    reserved = torch.cuda.max_memory_reserved(device) if cuda else 0
    peaks = accelerator.gather(torch.tensor([peak, reserved], device=device).view(1, 2))
    loss_values = [float(x) for x in torch.stack(losses).float().cpu()]
    global_batch = settings.batch_size * accelerator.num_processes
    result = {
        "precision": PRECISION_NAMES.get(precision, precision),
        "device": str(device),
        "processes": accelerator.num_processes,
        "batch_per_process": settings.batch_size,
        "global_batch": global_batch,
        "timed_steps": settings.timed_steps,
        "warmup_steps": settings.warmup_steps,
        "elapsed_s": round(elapsed, 4),
        "samples_per_s": round(settings.timed_steps * global_batch / elapsed, 2),
        "audio_s_per_s": round(settings.timed_steps * global_batch * settings.crop_s / elapsed, 1),
        "step_ms": round(1000 * elapsed / settings.timed_steps, 2),
        "peak_gpu_memory_mb": round(float(peaks[:, 0].max()) / 2**20, 1) if cuda else None,
        "peak_gpu_reserved_mb": round(float(peaks[:, 1].max()) / 2**20, 1) if cuda else None,
        "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "loss_first": round(loss_values[0], 4),
        "loss_last": round(loss_values[-1], 4),
        "losses_finite": all(math.isfinite(x) for x in loss_values),
    }
    accelerator.free_memory()
    return result


def throughput(settings: Settings, precisions: Sequence[str] = PRECISIONS) -> dict[str, Any]:
    """One arm per precision in this process; bf16 is skipped where the device lacks it."""
    import torch

    from benchmarks.common import reset_accelerate

    arms: dict[str, Any] = {}
    for precision in precisions:
        name = PRECISION_NAMES.get(precision, precision)
        cuda = not settings.cpu and torch.cuda.is_available()
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            arms[name] = {"measured": False, "reason": "this GPU does not support bf16"}
            continue
        log.info("gpu: training %s on %s ...", name, "cpu" if settings.cpu else "the device")
        try:
            arms[name] = measure_training(settings, precision)
        finally:  # Accelerate's state is process-wide: leave none of this arm's behind
            reset_accelerate()
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    return arms


def launch_command(processes: int, settings: Settings, result: Path, smoke: bool) -> list[str]:
    """``accelerate launch`` of this module's ``--worker`` on ``processes`` processes."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # each arm sets its own on its Accelerator
        "--dynamo_backend",
        "no",
        "-m",
        "benchmarks.gpu",
        "--worker",
        str(result),
        "--warmup",
        str(settings.warmup_steps),
        "--steps",
        str(settings.timed_steps),
        *(["--smoke"] if smoke else []),
    ]


def multi_process(
    processes: int, settings: Settings, scratch: Path, *, smoke: bool, timeout_s: float = 600
) -> dict[str, Any]:
    """Both precisions on ``processes`` processes through ``accelerate launch``.

    ``ACCELERATE_USE_CPU`` makes the processes CPU ones (gloo) for ``--smoke``.
    """
    result = scratch / "multi_process.json"
    cmd = launch_command(processes, settings, result, smoke)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(_python_path())}
    if settings.cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    log.info("gpu: %s", " ".join(cmd[1:]))
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall = round(time.perf_counter() - started, 1)
    if done.returncode != 0 or not result.is_file():
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"accelerate launch failed ({done.returncode}):\n{tail}")
    arms = json.loads(result.read_text(encoding="utf-8"))
    return {"command": " ".join(["accelerate launch", *cmd[3:]]), "wall_s": wall, **arms}


def _python_path() -> list[str]:
    """The repository (for ``benchmarks``) and its ``src`` ahead of any inherited path."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [str(REPO_ROOT), str(REPO_ROOT / "src"), *inherited]


def scaling(single: dict[str, Any], multi: dict[str, Any], processes: int) -> dict[str, Any]:
    """Samples/s on all processes over ``processes`` x one process, per precision."""
    out = {}
    for name, arm in multi.items():
        one = single.get(name) or {}
        if isinstance(arm, dict) and arm.get("samples_per_s") and one.get("samples_per_s"):
            out[name] = round(arm["samples_per_s"] / (processes * one["samples_per_s"]), 3)
    return out


# --------------------------------------------------------------------------- the pipeline


def save_random_pretrained(folder: Path, settings: Settings) -> dict[str, Any]:
    """A randomly initialised checkpoint laid out like ``facebook/wav2vec2-base``.

    That repo holds a ``Wav2Vec2ForPreTraining`` checkpoint and a ``Wav2Vec2FeatureExtractor``
    (normalising, no attention mask); the recipe loads its encoder and adds a new
    classification head, which is what happens here too, from safetensors.
    """
    from accelerate.utils import set_seed
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

    set_seed(SEED)
    config = model_config(settings, num_labels=2)
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
    from benchmarks.measure import run_measured
    from benchmarks.workspace import SMOKE_DATA, SMOKE_DATA_OVERRIDES, Workspace
    from tests.datagen import SMALL_SPEAKERS, copy_pipeline, hub_rows, write_hub_repo

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


# --------------------------------------------------------------------------- wheels

# Never shipped as wheels to a GPU machine: its own CUDA build of torch is what is measured.
GPU_STACK_PREFIXES = ("torch", "triton", "nvidia-")


def missing_requirements(present: set[str], distribution: str = "audioclf") -> list[str]:
    """``name==version`` of every distribution ``distribution`` needs, as installed here,
    that ``present`` lacks (names as a GPU machine's ``pip list`` gives them), and never the
    GPU stack. Read from this environment's installed metadata, transitively."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    have = {canonicalize_name(n) for n in present}
    found: dict[str, str] = {}
    todo = [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as err:
            raise RuntimeError(f"{name} is needed but not installed in {sys.prefix}") from err
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(
        f"{name}=={version}"
        for name, version in found.items()
        if name != canonicalize_name(distribution)
        and name not in have
        and not name.startswith(GPU_STACK_PREFIXES)
    )


def read_present(path: Path) -> set[str]:
    """Package names from ``pip list``/``pip freeze`` output or a comma/line separated list."""
    import re

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RuntimeError(f"cannot read the package list {path}: {err}") from err
    names = set()
    for item in re.split(r"[,\n]", text):
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", item)
        if match and match.group(1).lower() not in ("package", "name"):
            names.add(match.group(1))
    return names


# --------------------------------------------------------------------------- the report


def machine() -> dict[str, Any]:
    """The GPUs, their count and memory, torch/CUDA/cuDNN and library versions, CPU cores."""
    import accelerate
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    gpus = []
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "name": props.name,
                "memory_gb": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return {
        "gpu_name": gpus[0]["name"] if gpus else None,
        "gpu_count": count,
        "gpus": gpus,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def _source() -> dict[str, Any]:
    from benchmarks.machine import source_info

    return source_info(REPO_ROOT)


def run(
    out: Path,
    *,
    smoke: bool,
    steps: int | None = None,
    warmup: int | None = None,
    repro: bool = True,
    repro_skipped: str | None = None,
    processes: int | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Measure what this machine allows and write ``out``; each failure goes to ``errors``.

    ``processes``: how many processes the multi-process figure uses (default: every GPU; with
    ``--smoke``, CPU processes, and none unless asked).
    """
    settings = smoke_settings() if smoke else recipe_settings()
    settings = replace(
        settings,
        timed_steps=steps or settings.timed_steps,
        warmup_steps=settings.warmup_steps if warmup is None else warmup,
    )
    info = machine()
    if not smoke and info["gpu_count"] == 0:
        raise SystemExit(
            "benchmarks.gpu: error: torch sees no CUDA GPU "
            f"(torch {info['torch']}, built for CUDA {info['cuda']}); use --smoke on a CPU"
        )
    processes = (processes or 0) if smoke else (processes or info["gpu_count"])
    result: dict[str, Any] = {
        "mode": "smoke" if smoke else "gpu",
        "command": "python -m benchmarks.gpu" + (" --smoke" if smoke else ""),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "source": _source(),
        "model": {
            "config": "transformers Wav2Vec2Config defaults (wav2vec2-base size), random init"
            if not smoke
            else f"tiny Wav2Vec2Config {dict(settings.model_config)} (--smoke)",
            "head": f"Wav2Vec2ForSequenceClassification, {NUM_LABELS} labels",
        },
        "settings": {
            **{k: v for k, v in asdict(settings).items() if k != "model_config"},
            "optimizer": "AdamW",
            "data": "seeded random audio batches (a step's cost depends on its shape only)",
            "from": "conf/train/wav2vec2_base.yaml, conf/model/wav2vec2_base.yaml",
        },
        "single_gpu": None,
        "multi_gpu": None,
        "flagship_repro": None,
        "errors": {},
        "timings_s": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="audioclf-gpu-"))

    def part(name: str, fn, *args: Any, **kwargs: Any) -> Any:
        log.info("gpu: %s ...", name)
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # one part's failure must not lose the others' figures
            log.exception("gpu: %s failed", name)
            result["errors"][name] = f"{type(err).__name__}: {err}"
            return None
        finally:
            result["timings_s"][name] = round(time.perf_counter() - started, 1)
            _write(out, result)

    try:
        single = part("single_gpu", throughput, settings) or {}
        result["single_gpu"] = single or None
        if processes > 1:
            multi = part("multi_gpu", multi_process, processes, settings, scratch, smoke=smoke)
            if multi:
                multi["scaling_efficiency"] = scaling(single, multi, processes)
            result["multi_gpu"] = multi
        else:
            result["multi_gpu"] = {
                "measured": False,
                "reason": f"{info['gpu_count']} GPU on this machine: accelerate launch "
                "--multi_gpu needs at least 2"
                if not smoke
                else "--smoke measures several processes only with --processes N",
            }
        if repro and not repro_skipped:
            result["flagship_repro"] = part(
                "flagship_repro",
                flagship_repro,
                REPO_ROOT,
                scratch / "repro",
                settings,
                smoke=smoke,
            )
        else:
            result["flagship_repro"] = {"ran": False, "reason": repro_skipped or "--no-repro"}
    finally:
        if keep:
            log.info("gpu: kept %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        _write(out, result)
    return result


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def summary(result: dict[str, Any]) -> list[str]:
    """One line per figure, for the terminal."""
    lines = []
    m = result["machine"]
    where = f"{m['gpu_count']} x {m['gpu_name']}" if m["gpu_count"] else "CPU"
    lines.append(f"machine: {where}, torch {m['torch']}, CUDA {m['cuda']}")
    for key, label in (("single_gpu", "one process"), ("multi_gpu", "all processes")):
        arms = result.get(key) or {}
        for name in PRECISION_NAMES.values():
            arm = arms.get(name)
            if isinstance(arm, dict) and arm.get("samples_per_s"):
                memory = arm["peak_gpu_memory_mb"]
                lines.append(
                    f"{label} {name}: {arm['samples_per_s']} samples/s "
                    f"({arm['processes']} x batch {arm['batch_per_process']}), peak "
                    + (f"{memory / 1024:.1f} GiB" if memory is not None else "n/a (CPU)")
                )
        if isinstance(arms, dict) and arms.get("measured") is False:
            lines.append(f"{label}: not measured: {arms['reason']}")
    repro = result.get("flagship_repro") or {}
    if "test_accuracy" in repro:
        lines.append(
            f"flagship recipe, 1 epoch (dvc repro): {repro['wall_s']} s, test accuracy "
            f"{repro['test_accuracy']:.3f}, trained on {repro['train_device']}"
        )
    elif repro.get("ran") is False:
        lines.append(f"flagship recipe: not run: {repro['reason']}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description="wav2vec2-base-sized training samples/s and peak GPU memory (fp32, bf16; "
        "one GPU and all GPUs) and a one-epoch dvc repro of the flagship recipe's code path.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps, on the CPU")
    parser.add_argument("--out", default="reports/gpu.json", help="the JSON report")
    parser.add_argument("--steps", type=_positive, default=None, help="timed steps per arm")
    parser.add_argument("--warmup", type=_non_negative, default=None, help="untimed steps first")
    parser.add_argument(
        "--processes",
        type=_positive,
        default=None,
        help="processes of the accelerate launch figure (default: all GPUs)",
    )
    parser.add_argument("--no-repro", action="store_true", help="skip the dvc repro part")
    parser.add_argument(
        "--repro-skipped",
        default=None,
        metavar="REASON",
        help="record the dvc repro part as not run, for this reason (scripts/gpu_check.sh)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument(
        "--missing-requirements",
        default=None,
        metavar="PRESENT",
        help="print name==version of what the project needs that the package list PRESENT "
        "(a GPU machine's pip list) lacks, and exit (scripts/gpu_check.sh --fetch-wheels)",
    )
    parser.add_argument("--worker", default=None, metavar="RESULT", help=argparse.SUPPRESS)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def worker(args: argparse.Namespace) -> int:
    """One process of ``accelerate launch``: both precisions; the main process writes them."""
    settings = smoke_settings() if args.smoke else recipe_settings()
    settings = replace(
        settings,
        timed_steps=args.steps or settings.timed_steps,
        warmup_steps=settings.warmup_steps if args.warmup is None else args.warmup,
        cpu=settings.cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true",
    )
    arms = throughput(settings)
    if os.environ.get("RANK", "0") == "0":  # set by accelerate launch
        Path(args.worker).write_text(json.dumps(arms, indent=2), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.worker:
        return worker(args)
    if args.missing_requirements is not None:
        listed = args.missing_requirements
        present = read_present(Path(listed)) if listed else set()
        print("\n".join(missing_requirements(present)))
        return 0
    out = Path(args.out)
    result = run(
        out,
        smoke=args.smoke,
        steps=args.steps,
        warmup=args.warmup,
        repro=not args.no_repro,
        repro_skipped=args.repro_skipped,
        processes=args.processes,
        keep=args.keep,
    )
    for line in summary(result):
        print(line)
    print(f"wrote {out}")
    for name, error in result["errors"].items():
        print(f"benchmarks.gpu: error: {name}: {error.splitlines()[0]}", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
