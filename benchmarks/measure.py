"""Small measuring tools: medians and percentiles, load average, subprocesses with peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

MB = 1024 * 1024


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine's cores are shared with other jobs)."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Measured:
    """One subprocess: wall time, exit code, the tail of its output and its peak memory.

    ``peak_tree_rss_mb``: the largest sum of RSS over the process and all its descendants
    (e.g. ``datasets``' ``num_proc`` workers), polled; pages shared between processes count
    once per process. ``peak_tree_anon_mb``: the same without file-backed pages (memory-mapped
    Arrow files, shared libraries), i.e. the memory the processes really allocated.
    ``max_process_rss_mb``: the kernel's peak RSS of the largest single process of the tree
    (``wait4``'s ``ru_maxrss``, exact but not summed over processes).
    """

    cmd: list[str]
    wall_s: float
    returncode: int
    output_tail: str
    peak_tree_rss_mb: float
    peak_tree_anon_mb: float
    max_process_rss_mb: float

    def memory(self) -> dict[str, float]:
        return {
            "peak_tree_rss_mb": round(self.peak_tree_rss_mb, 1),
            "peak_tree_anon_mb": round(self.peak_tree_anon_mb, 1),
            "max_process_rss_mb": round(self.max_process_rss_mb, 1),
        }


def _tree_memory(root: psutil.Process) -> tuple[int, int]:
    rss = anon = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for proc in procs:
        try:
            info = proc.memory_info()
        except psutil.Error:
            continue
        rss += info.rss
        anon += info.rss - getattr(info, "shared", 0)
    return rss, anon


def run_measured(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    poll_s: float = 0.05,
    check: bool = True,
) -> Measured:
    """Run ``cmd``, polling its process tree's memory; output goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=out)
        root = psutil.Process(proc.pid)
        peak_rss = peak_anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss, anon = _tree_memory(root)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(poll_s)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = log.read_text(errors="replace")[-3000:]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    # ru_maxrss is in KiB on Linux: the largest process among the child and its reaped children.
    max_rss = max(usage.ru_maxrss * 1024, 0)
    return Measured(
        cmd=list(cmd),
        wall_s=wall,
        returncode=proc.returncode,
        output_tail=tail,
        peak_tree_rss_mb=peak_rss / MB,
        peak_tree_anon_mb=peak_anon / MB,
        max_process_rss_mb=max_rss / MB,
    )
