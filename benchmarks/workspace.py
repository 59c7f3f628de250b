"""A throwaway git + DVC copy of the repository, where the pipeline may run and be timed.

The copy holds ``conf/``, ``dvc.yaml``, ``.dvc/config``, ``src/audioclf`` and the data source
(``data/embedded``, or generated tiny data for ``--smoke``); ``params.yaml`` is composed from
``conf/`` with overrides. Stages run with the copy's ``src`` first on ``PYTHONPATH`` and an
MLflow store inside the copy, so nothing in the user's workspace is read or written after the
copy is made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from audioclf.dvc_stages import stage_names
from audioclf.testing import (
    SMALL_SPEAKERS,
    TINY_TRAIN_OVERRIDES,
    copy_pipeline,
    hub_rows,
    write_hub_repo,
)

# The pipeline run in the copy: the fast model, one epoch, logged every 10 steps (its train
# and evaluate stages run twice: once to build the pipeline, once after a param change).
PIPELINE_EXTRA = ("train.epochs=1", "train.log_every_n_steps=10")

SMOKE_DATA = "data/smoke_hub"
SMOKE_DATA_OVERRIDES = (
    f"data.path={SMOKE_DATA}",
    f"data.tracked_path={SMOKE_DATA}",
    "data.split.validation_size=0.2",  # 5 speakers: one each for test and validation
    "audio.num_proc=1",
)
REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = stage_names(REPO_ROOT)


@dataclass
class Workspace:
    root: Path
    overrides: list[str] = field(default_factory=list)  # what params.yaml is composed with
    data_overrides: list[str] = field(default_factory=list)
    fast_overrides: list[str] = field(default_factory=list)
    threads: int | None = None  # OMP_NUM_THREADS for the stages (None: torch's default)

    def env(self) -> dict[str, str]:
        """The environment stages and ``dvc`` run with: this venv, the copy's code, offline."""
        venv_bin = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "DVC_EXP_NAME")}
        env.update(
            PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(self.root / "src"),
            MLFLOW_TRACKING_URI=f"sqlite:///{self.root / 'mlflow.db'}",
            DVC_SITE_CACHE_DIR=str(self.root.parent / "dvc-site-cache"),
            DVC_NO_ANALYTICS="1",
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            TQDM_DISABLE="1",
        )
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        return env

    def write_params(self, *extra: str) -> None:
        from audioclf.config import write_params

        write_params([*self.overrides, *extra], root=self.root)

    def cfg(self, *extra: str):
        from audioclf.config import load_params

        return load_params(list(extra), root=self.root)

    def recipe(self, *, smoke: bool):
        """What the in-process figures and the recipe stages measure: the data with the
        configured model and training (under ``--smoke``, the fast recipe's)."""
        from audioclf.config import compose_conf

        fast = self.fast_overrides if smoke else []
        return compose_conf([*self.data_overrides, *fast], root=self.root)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).parent / "dvc"
        result = subprocess.run(
            [str(exe) if exe.exists() else "dvc", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"dvc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result


def make_workspace(repo: Path, root: Path, *, smoke: bool) -> Workspace:
    """Copy what the pipeline needs from ``repo`` into ``root`` and compose its params.yaml.

    params.yaml: the data (``data/embedded``, or tiny generated data for --smoke) with the
    fast train overrides and :data:`PIPELINE_EXTRA`.
    """

    copy_pipeline(root, repo)
    data_overrides: tuple[str, ...] = ()
    if smoke:
        write_hub_repo(root / SMOKE_DATA, hub_rows(speakers=SMALL_SPEAKERS))
        data_overrides = SMOKE_DATA_OVERRIDES
    else:
        shutil.copytree(repo / "data" / "embedded", root / "data" / "embedded")
    fast = TINY_TRAIN_OVERRIDES  # the fast recipe (debug=fast), as the tests train
    ws = Workspace(
        root,
        [*data_overrides, *fast, *PIPELINE_EXTRA],
        data_overrides=list(data_overrides),
        fast_overrides=list(fast),
    )
    ws.write_params()
    return ws
