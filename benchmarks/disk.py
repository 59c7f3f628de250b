"""Disk per audio-hour: what each stage's outputs and the DVC cache take, at 1x and 16x the data.

``python -m benchmarks.disk [--scales 1,16] [--stages download,resample,featurize]``

For each scale the shipped source (``data/embedded``, or ``--source``) is replicated row-wise
into a throwaway copy of the repository (:mod:`benchmarks.workspace`), ``dvc repro`` runs the
stages there with the repository's ``.dvc/config`` (its cache link type included), and the
bytes really allocated on disk are counted once per inode: a workspace file hard-linked to
the cache (or a reflink's shared extents, counted as separate here, so an upper bound) is
not paid twice. The yardstick is the audio as 16-bit PCM at the model's rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.workspace import REPO_ROOT, Workspace, make_workspace

log = logging.getLogger("benchmarks")

HOUR_S = 3600.0
PCM16_BYTES = 2
BOUND = 3.0  # the footprint may be at most this many times the audio's 16-bit PCM size
DATA_STAGES = ("download", "resample", "featurize")


def allocated_bytes(paths: Iterable[Path], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated on disk under ``paths``, each inode once (also across calls sharing
    ``seen``): hard links between the workspace and the DVC cache count a single time."""
    seen = set() if seen is None else seen
    total = 0
    for top in paths:
        if not top.exists():
            continue
        files = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())
        for path in files:
            st = path.lstat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total


def replicate_source(source: Path, target: Path, factor: int) -> None:
    """Copy a Hub-layout parquet dataset with every row repeated ``factor`` times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted(source.rglob("*")):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".parquet":
            out.parent.mkdir(parents=True, exist_ok=True)
            table = pq.read_table(path)
            pq.write_table(pa.concat_tables([table] * factor), out)
        elif path.name == "README.md":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(scaled_card(path.read_text(encoding="utf-8"), factor), "utf-8")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)


def scaled_card(card: str, factor: int) -> str:
    """A dataset card whose recorded split sizes (``datasets`` checks them) match the copy."""
    import yaml

    if not card.startswith("---\n"):
        return card
    front, body = card[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    infos = meta.get("dataset_info") or []
    for info in infos if isinstance(infos, list) else [infos]:
        for split in info.get("splits") or []:
            for key in ("num_examples", "num_bytes"):
                if key in split:
                    split[key] *= factor
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}"


def stage_outputs(ws: Workspace, stages: Sequence[str]) -> dict[str, list[Path]]:
    """The cached outputs of each stage, as ``dvc.lock`` records them."""
    import yaml

    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    return {
        stage: [ws.root / out["path"] for out in lock[stage].get("outs", [])] for stage in stages
    }


def footprint(ws: Workspace, stages: Sequence[str], rate: int) -> dict[str, Any]:
    """Bytes per stage (workspace outputs) and in total (outputs plus ``.dvc/cache``)."""
    from datasets import load_from_disk

    resampled = load_from_disk(str(ws.root / ws.cfg().paths.resampled))
    audio_s = float(sum(sum(ds["duration_s"]) for ds in resampled.values()))
    hours = audio_s / HOUR_S
    pcm = audio_s * rate * PCM16_BYTES
    outputs = stage_outputs(ws, stages)
    per_stage = {stage: allocated_bytes(paths) for stage, paths in outputs.items()}
    seen: set[tuple[int, int]] = set()
    workspace = allocated_bytes([p for paths in outputs.values() for p in paths], seen)
    cache_extra = allocated_bytes([ws.root / ".dvc" / "cache"], seen)
    total = workspace + cache_extra
    cache_alone = allocated_bytes([ws.root / ".dvc" / "cache"])
    mb = 1e6
    return {
        "audio_s": round(audio_s, 1),
        "sampling_rate": rate,
        "pcm16_mb": round(pcm / mb, 1),
        "stage_mb": {k: round(v / mb, 1) for k, v in per_stage.items()},
        "workspace_mb": round(workspace / mb, 1),
        "cache_mb": round(cache_alone / mb, 1),
        "cache_not_shared_mb": round(cache_extra / mb, 1),
        "total_mb": round(total / mb, 1),
        "disk_per_audio_hour_mb": {
            **{k: round(v / mb / hours, 1) for k, v in per_stage.items()},
            "dvc_cache_not_shared": round(cache_extra / mb / hours, 1),
            "total": round(total / mb / hours, 1),
        },
        "pcm16_per_audio_hour_mb": round(rate * PCM16_BYTES * HOUR_S / mb, 1),
        "x_pcm16": round(total / pcm, 2),
        "within_bound": total <= BOUND * pcm,
    }


def measure_scale(
    repo: Path,
    scratch: Path,
    factor: int,
    stages: Sequence[str],
    source: Path,
    smoke: bool = False,
) -> dict[str, Any]:
    """Build a copy whose source is ``source`` repeated ``factor`` times; run ``stages``."""
    root = scratch / f"repo-{factor}x"
    ws = make_workspace(repo, root, smoke=smoke)
    data = f"data/source_{factor}x"
    replicate_source(source, root / data, factor)
    ws.overrides = [o for o in ws.overrides if not o.startswith(("data.path=", "data.tracked"))]
    ws.overrides += [f"data.path={data}", f"data.tracked_path={data}"]
    ws.write_params()
    link_type = ws.dvc("config", "cache.type", check=False).stdout.strip() or "copy (default)"
    start = time.perf_counter()
    ws.dvc("repro", *stages)
    wall = time.perf_counter() - start
    cfg = ws.cfg()
    result = footprint(ws, stages, int(cfg.audio.sampling_rate))
    return {
        "scale": factor,
        "stages": list(stages),
        "repro_s": round(wall, 1),
        "cache_type": link_type,
        "storage_dtype": str(cfg.audio.storage_dtype),
        **result,
    }


def disk_per_audio_hour(
    repo: Path,
    scratch: Path,
    scales: Sequence[int] = (1, 16),
    stages: Sequence[str] = DATA_STAGES,
    source: Path | None = None,
    smoke: bool = False,
) -> dict[str, Any]:
    """The footprint at each scale, plus the bound it is held to. ``smoke``: the source is
    the suite's tiny generated data (:func:`benchmarks.workspace.make_workspace`)."""
    source = source or repo / "data" / "embedded"
    points = []
    for factor in scales:
        log.info("bench: disk at %dx ...", factor)
        points.append(measure_scale(repo, scratch, factor, stages, source, smoke))
        shutil.rmtree(scratch / f"repo-{factor}x", ignore_errors=True)
    return {
        "bound_x_pcm16": BOUND,
        "source": str(source.relative_to(repo) if source.is_relative_to(repo) else source),
        "points": points,
        "within_bound": all(p["within_bound"] for p in points),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.disk", description=__doc__)
    parser.add_argument("--scales", default="1,16", help="replication factors, e.g. 1,16")
    parser.add_argument("--stages", default=",".join(DATA_STAGES), help="stages to reproduce")
    parser.add_argument("--source", default=None, help="a Hub-layout dataset (default: shipped)")
    parser.add_argument("--out", default="reports/bench.json", help="JSON report to merge into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    scratch = Path(tempfile.mkdtemp(prefix="audioclf-disk-"))
    try:
        result = disk_per_audio_hour(
            REPO_ROOT,
            scratch,
            scales=[int(s) for s in args.scales.split(",")],
            stages=args.stages.split(","),
            source=Path(args.source).resolve() if args.source else None,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["command"] = " ".join(["python -m benchmarks.disk", *(argv or sys.argv[1:])])
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["disk_per_audio_hour"] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0 if result["within_bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
