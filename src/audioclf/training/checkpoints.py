"""Checkpoints: Accelerate's ``save_state`` into ``last/`` and ``best/``, plus a small JSON state.

A run resumes only from an unfinished ``last/`` written with the same config: a finished run,
or one of another config, starts afresh (DVC keeps this folder between runs: ``persist``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

STATE_FILE = "train_state.json"


@dataclass
class TrainState:
    """What a resumed run needs beyond Accelerate's state: where it was and what it logged."""

    config_hash: str
    epoch: int = 0
    global_step: int = 0
    finished: bool = False
    run_id: str | None = None
    best: dict[str, float] | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    pruned: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


def read_state(folder: Path) -> TrainState | None:
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    return TrainState(**json.loads(path.read_text()))


def resumable(root: Path, config_hash: str) -> TrainState | None:
    """The state to resume from, if ``root/last`` is an unfinished run of this config."""
    state = read_state(root / "last")
    if state and not state.finished and state.config_hash == config_hash:
        return state
    return None


def save(accelerator: Accelerator, root: Path, name: str, state: TrainState) -> Path:
    """Save model, optimizer, scheduler and RNG states to ``root/name``, replacing it whole.

    Every process writes into one staging folder; the main process swaps it in, so a run
    killed mid-save leaves the previous checkpoint intact.
    """
    target, staging = root / name, root / f".{name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))
        retired = root / f".{name}.old"
        shutil.rmtree(retired, ignore_errors=True)
        if target.exists():
            target.replace(retired)
        staging.replace(target)
        shutil.rmtree(retired, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def mark_finished(root: Path) -> None:
    state = read_state(root / "last")
    if state:
        state.finished = True
        (root / "last" / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def clear(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
