"""How many threads torch computes with: the cores shared among the experiments that run at once.

torch starts one thread per core. Two queued experiments doing that on the same cores
(``dvc queue start -j 2``) each wait for threads the other holds: a training step gets ~20x
slower, and two experiments in parallel take longer than the same two in sequence. The rule:

1. ``train.num_threads: N`` pins the count (for equal model bytes across machines).
2. Else ``OMP_NUM_THREADS``, when set, is the count torch already took: kept.
3. Else, inside a queued or ``--temp`` experiment (the stage runs in DVC's temporary copy
   under ``$DVC_ROOT/.dvc/tmp/exps/``, as each trial of ``audioclf sweep`` does),
   ``max(1, cores // running)``: ``cores`` are those this process may run on (its CPU
   affinity), ``running`` the experiments of the same repository that have a live process in
   their copy now, this one included. ``-j 2`` on 2 cores gives 1
   thread each; ``-j 1`` (or one experiment left) keeps every core.
4. Else (``dvc repro``, ``dvc exp run`` in the workspace) torch's default, one per core.

The train stage applies the rule with ``train.num_threads``, the evaluate stage without it
(scoring at batch 1 suffers from shared cores as much: two evaluations at once on 2 cores took
8x longer with 2 threads each than with 1). The count is taken once, when the stage starts: an
experiment started while another one runs does not give its threads back to it later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

EXPERIMENT_COPIES = Path(".dvc") / "tmp" / "exps"


@dataclass(frozen=True)
class ThreadBudget:
    """A thread count (None: torch's default, left alone) and the rule that chose it."""

    threads: int | None
    rule: str

    def apply(self) -> int:
        """Set torch's intra-op threads (when the budget has a count); the count torch uses."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, cgroup cpusets), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def experiment_copies_dir(cwd: Path | None = None) -> Path | None:
    """DVC's folder of temporary experiment copies when ``cwd`` lies in one, else None.

    DVC runs queued (and ``--temp``) experiments in copies under ``<repo>/.dvc/tmp/exps/`` and
    gives their stages ``DVC_ROOT=<repo>``; a stage of the workspace runs in ``DVC_ROOT`` itself.
    """
    root = os.environ.get("DVC_ROOT")
    if not root:
        return None
    copies = (Path(root) / EXPERIMENT_COPIES).resolve()
    here = (cwd or Path.cwd()).resolve()
    return copies if copies in here.parents else None


def running_experiments(copies: Path) -> int:
    """The experiment copies under ``copies`` in which some process works now.

    A copy is a folder holding a DVC project (``.dvc/``): ``copies/<tmp>`` for a queued
    experiment, ``copies/standalone/<tmp>`` for ``dvc exp run --temp`` (each trial of
    ``audioclf sweep``). DVC deletes it when its experiment ends, but one whose worker was killed
    stays: only copies that are some live process's working directory count (DVC's own worker
    folders under ``copies`` hold no project).
    """
    copies = copies.resolve()
    busy: set[Path] = set()
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info.get("cwd")
        if not cwd:
            continue
        try:
            parts = Path(cwd).relative_to(copies).parts
        except ValueError:
            continue
        for depth in (1, 2):
            copy = copies.joinpath(*parts[:depth])
            if len(parts) >= depth and (copy / ".dvc").is_dir():
                busy.add(copy)
                break
    return len(busy)


def thread_budget(num_threads: int | None = None) -> ThreadBudget:
    """The thread count for this process by the rule of this module (``num_threads``: the
    config's ``train.num_threads``)."""
    if num_threads:
        return ThreadBudget(int(num_threads), "train.num_threads")
    if os.environ.get("OMP_NUM_THREADS"):
        return ThreadBudget(None, "OMP_NUM_THREADS")
    copies = experiment_copies_dir()
    if copies is None:
        return ThreadBudget(None, "torch default (one per core)")
    cores = usable_cores()
    running = max(1, running_experiments(copies))
    return ThreadBudget(
        max(1, cores // running),
        f"queued experiment: {cores} cores / {running} running experiments",
    )
