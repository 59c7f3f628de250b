"""The GPU check on a CPU through its real entry points: ``scripts/gpu_check.sh --smoke`` with
this venv, two processes through ``accelerate launch`` and the flagship ``dvc repro``, and
``make flagship`` (the one target that goes to the Hub) against a stand-in Hub on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from audioclf.dvc_stages import stage_names
from audioclf.testing import REPO_ROOT, copy_pipeline, git
from benchmarks.gpu.__main__ import main
from tests.gpu_smoke import check_smoke_arm

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def test_gpu_check_smoke_runs_the_benchmark_with_this_venv(tmp_path: Path) -> None:
    """The script's own path (Python chosen, packages checked, module run) on the CPU."""
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--smoke", "--out", str(out), "--", "--no-repro", "--steps", "2"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cannot run" not in done.stderr  # this venv has every package the repro needs
    r = json.loads(out.read_text())
    assert r["mode"] == "smoke" and r["errors"] == {}
    for arm in r["single_gpu"].values():
        check_smoke_arm(arm, processes=1)
    assert f"wrote {out}" in done.stdout


def test_smoke_launch_and_flagship_repro(tmp_path: Path) -> None:
    """Two processes through ``accelerate launch`` (gloo on the CPU) and one epoch of the
    flagship recipe through ``dvc repro`` from a local random checkpoint, in a copy."""
    params_before = (REPO_ROOT / "params.yaml").read_bytes()
    out = tmp_path / "gpu.json"
    assert main(["--smoke", "--processes", "2", "--out", str(out)]) == 0

    r = json.loads(out.read_text())
    assert r["errors"] == {}
    multi = r["multi_gpu"]
    assert multi["command"].startswith("accelerate launch --multi_gpu --num_processes 2")
    for name in ("fp32", "bf16"):
        check_smoke_arm(multi[name], processes=2)
        assert multi["scaling_efficiency"][name] > 0

    repro = r["flagship_repro"]
    assert repro["wall_s"] > 0
    assert "model=wav2vec2_base" in repro["params_overrides"]
    assert "model.safetensors" in repro["pretrained"]["files"]
    assert 0 <= repro["test_accuracy"] <= 1 and repro["num_test"] > 0
    assert repro["train_device"] == "cpu" and repro["used_cuda"] is False
    assert repro["train_epochs"] == 1
    assert tuple(repro["stages"]) == stage_names(REPO_ROOT)
    stage_walls = [s["wall_s"] for s in repro["stages"].values()]
    assert all(w > 0 for w in stage_walls)
    assert repro["wall_s"] == pytest.approx(sum(stage_walls), abs=0.2)
    assert (REPO_ROOT / "params.yaml").read_bytes() == params_before


class _StandInHub(http.server.BaseHTTPRequestHandler):
    """Answers every request 404 and records its path: proof the Hub was asked."""

    paths: ClassVar[list[str]] = []

    def _missing(self) -> None:
        self.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _missing

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in_hub() -> Iterator[tuple[str, list[str]]]:
    paths: ClassVar[list[str]] = []
    handler = type("Handler", (_StandInHub,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()


def test_make_flagship_goes_to_the_hub_and_fails_clearly_without_it(
    tmp_path: Path, stand_in_hub: tuple[str, list[str]]
) -> None:
    """`make flagship` overrides the Makefile's (and the environment's) HF_HUB_OFFLINE=1."""
    endpoint, asked = stand_in_hub
    root = copy_pipeline(tmp_path / "repo")
    shutil.copy2(REPO_ROOT / "Makefile", root / "Makefile")
    (root / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    git(root, "add", "-A")
    git(root, "commit", "-qm", "baseline")
    venv = Path(sys.prefix)
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "1",  # as the conftest (and `make repro`) sets it
        "PYTHONPATH": str(root / "src"),
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "GIT_AUTHOR_NAME": "tests",
        "GIT_AUTHOR_EMAIL": "tests@example.com",
        "GIT_COMMITTER_NAME": "tests",
        "GIT_COMMITTER_EMAIL": "tests@example.com",
    }
    done = subprocess.run(
        # -o: the venv counts as installed (the test runs in it; nothing is rebuilt)
        ["make", "-o", f"{venv}/.installed", "flagship", f"VENV={venv}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "dvc exp run -S experiment=flagship" in output
    assert any("PolyAI/minds14" in p for p in asked), (asked, output[-3000:])
    assert "cannot load Hugging Face Hub dataset 'PolyAI/minds14'" in output, output[-3000:]
    assert "Traceback" not in output
