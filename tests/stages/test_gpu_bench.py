"""The GPU check on a CPU: ``python -m benchmarks.gpu --smoke`` in-process, its recipe and
requirements, and ``scripts/gpu_check.sh`` without a CUDA torch (the script's smoke run, the
multi-process one and ``make flagship`` are tests/system/test_gpu_bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from audioclf.testing import REPO_ROOT
from benchmarks.gpu.__main__ import main
from benchmarks.gpu.settings import recipe_settings
from benchmarks.gpu.wheels import missing_requirements
from tests.gpu_smoke import check_smoke_arm

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def test_smoke_measures_both_precisions_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--smoke", "--no-repro", "--steps", "2", "--out", str(out)]) == 0

    r = json.loads(out.read_text())
    assert r["mode"] == "smoke" and r["errors"] == {}
    assert r["machine"]["gpu_count"] == torch.cuda.device_count()
    assert r["machine"]["torch"] == torch.__version__
    train = yaml.safe_load((REPO_ROOT / "conf/train/wav2vec2_base.yaml").read_text())
    assert r["settings"]["learning_rate"] == train["learning_rate"]
    assert r["settings"]["timed_steps"] == 2 and r["settings"]["freeze_feature_encoder"]
    assert set(r["single_gpu"]) == {"fp32", "bf16"}
    for name, arm in r["single_gpu"].items():
        assert arm["precision"] == name
        check_smoke_arm(arm, processes=1)
    assert r["multi_gpu"]["measured"] is False and r["multi_gpu"]["reason"]
    assert r["flagship_repro"] == {"ran": False, "reason": "--no-repro"}


def test_recipe_settings_match_the_composed_recipe() -> None:
    """The GPU image may lack Hydra: the plain-YAML reading must equal Hydra's composition."""
    from audioclf.config import compose_conf

    cfg = compose_conf(["model=wav2vec2_base", "train=wav2vec2_base"], root=REPO_ROOT)
    s = recipe_settings()
    assert s.batch_size == cfg.train.batch_size and s.crop_s == cfg.train.crop_s
    assert s.learning_rate == cfg.train.learning_rate
    assert s.weight_decay == cfg.train.weight_decay
    assert s.max_grad_norm == cfg.train.max_grad_norm
    assert s.sampling_rate == cfg.audio.sampling_rate == cfg.model.sampling_rate
    assert s.freeze_feature_encoder == cfg.model.freeze_feature_encoder
    assert s.model_config == ()  # transformers' defaults: the base size


def test_missing_requirements_lists_what_the_gpu_machine_lacks() -> None:
    everything = missing_requirements(set())
    names = {pin.split("==")[0] for pin in everything}
    assert {"dvc", "mlflow", "datasets", "hydra-core", "omegaconf", "soxr"} <= names
    assert not any(n.startswith(("torch", "nvidia-", "triton")) for n in names)
    assert "audioclf" not in names
    fewer = missing_requirements({"datasets", "MLflow"})
    assert "datasets" not in {p.split("==")[0] for p in fewer}
    assert "mlflow" not in {p.split("==")[0] for p in fewer}
    assert len(fewer) == len(everything) - 2


def test_gpu_check_without_a_cuda_torch_says_what_is_missing(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Python here has a CUDA build of torch that sees a GPU" in done.stderr
    assert f"torch {torch.__version__}" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
