"""Featurize at 1x, 4x, 16x the data: time should grow linearly, memory stay flat.

The featurize stage's input (``paths.resampled``) is replicated row-wise N times into a
temporary folder, and the stage runs as a subprocess on it (``num_proc`` workers included in
the memory figures, see :class:`benchmarks.measure.Measured`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import median, run_measured
from benchmarks.workspace import Workspace


def _replicate(source: Path, target: Path, factor: int) -> float:
    """Save ``source`` (a saved DatasetDict) with every split repeated ``factor`` times."""
    from datasets import DatasetDict, concatenate_datasets, load_from_disk

    splits = load_from_disk(str(source))
    out = DatasetDict({name: concatenate_datasets([ds] * factor) for name, ds in splits.items()})
    out.save_to_disk(str(target))
    return float(sum(sum(ds["duration_s"]) for ds in out.values()))


def featurize_scaling(
    ws: Workspace,
    scales: tuple[int, ...],
    runs: dict[int, int],
    scratch: Path,
    stage_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``runs[scale]`` featurize runs per scale; ``stage_run`` (the featurize stage's own run
    on the same data) counts as one of the 1x runs."""
    cfg = ws.cfg()
    source = ws.root / cfg.paths.resampled
    points: dict[int, dict[str, Any]] = {}
    inputs: dict[int, Path] = {}
    for scale in scales:
        inputs[scale] = scratch / f"resampled-{scale}x"
        audio_s = _replicate(source, inputs[scale], scale)
        points[scale] = {"scale": scale, "audio_s": round(audio_s, 1), "runs": []}
    if stage_run is not None and 1 in points:
        points[1]["runs"].append({**stage_run, "note": "the featurize stage's own run"})
    # Interleaved rounds (1x 4x 16x, 1x 4x ...), so that a change in load hits every scale.
    for round_ in range(max(runs.values())):
        for scale in scales:
            if len(points[scale]["runs"]) >= runs.get(scale, 1):
                continue
            features = scratch / f"features-{scale}x"
            m = run_measured(
                [
                    sys.executable,
                    "-m",
                    "audioclf.stages.featurize",
                    f"paths.resampled={inputs[scale]}",
                    f"paths.features={features}",
                ],
                cwd=ws.root,
                env=ws.env(),
                log=scratch / f"featurize-{scale}x-{round_}.log",
            )
            shutil.rmtree(features, ignore_errors=True)
            points[scale]["runs"].append({"wall_s": round(m.wall_s, 2), **m.memory()})
    for scale in scales:
        shutil.rmtree(inputs[scale], ignore_errors=True)
        p = points[scale]
        p["n"] = len(p["runs"])
        p["wall_s"] = round(median([r["wall_s"] for r in p["runs"]]), 2)
        p["audio_s_per_s"] = round(p["audio_s"] / p["wall_s"], 1)
        for key in ("peak_tree_rss_mb", "peak_tree_anon_mb", "max_process_rss_mb"):
            p[key] = round(max(r[key] for r in p["runs"]), 1)
    rows = [points[s] for s in scales]
    return {"points": rows, **_summary(rows)}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A straight line through wall time vs audio seconds, and memory growth vs the smallest."""
    audio = np.array([r["audio_s"] for r in rows])
    wall = np.array([r["wall_s"] for r in rows])
    slope, intercept = np.polyfit(audio, wall, 1) if len(rows) > 1 else (wall[0] / audio[0], 0.0)
    fitted = slope * audio + intercept
    # Seconds per extra audio-hour between consecutive scales: linear growth keeps it constant,
    # a fixed start-up cost makes it fall, superlinear growth makes it rise.
    marginal = [
        float((wall[i + 1] - wall[i]) / (audio[i + 1] - audio[i]) * 3600)
        for i in range(len(rows) - 1)
    ]
    first, last = rows[0], rows[-1]
    return {
        "time_fit": {
            "fixed_s": round(float(intercept), 2),
            "s_per_audio_hour": round(float(slope) * 3600, 1),
            "marginal_audio_s_per_s": round(1.0 / float(slope), 1) if slope > 0 else None,
            "max_rel_residual": round(float(np.max(np.abs(wall - fitted) / wall)), 3),
            "marginal_s_per_audio_hour": [round(m, 1) for m in marginal],
            "superlinear": bool(len(marginal) > 1 and marginal[-1] > 1.1 * marginal[0]),
        },
        "memory_growth": {
            "scale": f"{last['scale']}x vs {first['scale']}x",
            "peak_tree_rss": round(last["peak_tree_rss_mb"] / first["peak_tree_rss_mb"], 2),
            "peak_tree_anon": round(last["peak_tree_anon_mb"] / first["peak_tree_anon_mb"], 2),
            "max_process_rss": round(last["max_process_rss_mb"] / first["max_process_rss_mb"], 2),
        },
    }
