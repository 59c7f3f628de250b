"""Long recordings: `audioclf predict` on 10- and 60-minute 16 kHz WAV files, peak RSS and time.

    python -m benchmarks.long_recording                      # 10 and 60 minutes, 1 torch thread
    python -m benchmarks.long_recording --minutes 10,60,120 --whole-minutes 10 --threads 2

The recordings are synthetic (tones that change pitch every few seconds, plus noise; 16-bit
PCM, written block by block to a temporary folder). The model is ``model=tiny`` with random
weights, exported as the train stage exports it (``save_model``) with ``train=tiny``'s 2 s crop as
its recorded window: weights do not change the cost. Each run is ``audioclf predict FILE --json``
(default window and hop: 2 s every 1 s) in a subprocess, with and without ``--segments``; its
peak RSS is the kernel's (``wait4``'s ``ru_maxrss``) for the largest process. For contrast,
``--window-s 0`` (the whole file in one piece, as before windows existed) at the same lengths
shows how memory and time grow without windows (at 60 minutes that run takes minutes: the
attention over 90,000 frames). Target: windowed peak RSS under 1.5 GB at 60 minutes. Takes about
5 minutes on 2 cores; writes ``reports/long_recording.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks.machine import machine_info, source_info
from benchmarks.measure import loadavg, run_measured

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
TARGET_MB = 1500.0
LABELS = ("abroad", "balance", "freeze", "pay_bill")


def write_recording(path: Path, minutes: float, seed: int = 0) -> Path:
    """A ``minutes`` long 16 kHz mono 16-bit WAV: a tone whose pitch changes every 3 s, plus
    noise, written a minute at a time (the benchmark process never holds the recording)."""
    rng = np.random.default_rng(seed)
    total = round(minutes * 60 * RATE)
    step = 60 * RATE
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        for start in range(0, total, step):
            t = np.arange(start, min(start + step, total)) / RATE
            pitch = 200.0 + 150.0 * (np.floor(t / 3.0) % 8)
            block = 0.4 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(t.size)
            out.write(block.astype(np.float32))
    return path


def save_tiny_model(model_dir: Path) -> float:
    """``model=tiny`` with random weights, exported with ``train=tiny``'s crop; its window."""
    import torch

    from audioclf.config import compose_conf
    from audioclf.models.build import build_model
    from audioclf.models.extractor import build_feature_extractor
    from audioclf.training.loop import save_model

    cfg = compose_conf(["model=tiny", "train=tiny"], root=REPO)
    torch.manual_seed(0)
    window_s = float(cfg.train.crop_s)
    model = build_model(cfg.model, LABELS)
    save_model(model, build_feature_extractor(cfg.model), model_dir, window_s=window_s)
    return window_s


def predict(
    recording: Path, model_dir: Path, work: Path, *flags: str, threads: int | None
) -> dict[str, Any]:
    """One ``audioclf predict --json`` subprocess: wall time, peak memory, what it answered."""
    answer = work / "answer.json"
    command = (
        f"{sys.executable} -m audioclf.cli predict {recording} --model {model_dir} --json "
        f"{' '.join(flags)} > {answer}"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    measured = run_measured(["sh", "-c", command], cwd=REPO, env=env, log=work / "predict.log")
    [prediction] = json.loads(answer.read_text())["predictions"]
    return {
        "flags": list(flags),
        "wall_s": round(measured.wall_s, 1),
        "peak_rss_mb": round(measured.max_process_rss_mb, 1),
        "peak_tree_rss_mb": round(measured.peak_tree_rss_mb, 1),
        "windows": prediction["windows"],
        "segments": len(prediction.get("segments", [])),
        "top_label": prediction["labels"][0]["label"],
        "duration_s": prediction["duration_s"],
    }


def run(
    minutes: list[float], whole_minutes: list[float], threads: int | None, out: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": "python -m benchmarks.long_recording " + " ".join(sys.argv[1:]),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "source": source_info(REPO),
        "threads": threads,
        "target_peak_rss_mb": TARGET_MB,
        "windowed": [],
        "whole_file": [],
    }
    with tempfile.TemporaryDirectory(prefix="audioclf-long-") as tmp:
        work = Path(tmp)
        window_s = save_tiny_model(work / "model")
        result["model"] = {"config": "model=tiny (random weights)", "window_s": window_s}
        for length in sorted({*minutes, *whole_minutes}):
            recording = write_recording(work / f"{length:g}min.wav", length)
            runs = []
            if length in minutes:
                for flags in ((), ("--segments",)):
                    row = predict(recording, work / "model", work, *flags, threads=threads)
                    runs.append(("windowed", row))
            if length in whole_minutes:
                row = predict(recording, work / "model", work, "--window-s", "0", threads=threads)
                runs.append(("whole_file", row))
            for kind, row in runs:
                row = {
                    "minutes": length,
                    "file_mb": round(recording.stat().st_size / 2**20, 1),
                    **row,
                }
                result[kind].append(row)
                print(json.dumps(row), flush=True)
            recording.unlink()
    longest = max(minutes)
    peaks = [r["peak_rss_mb"] for r in result["windowed"] if r["minutes"] == longest]
    result["peak_rss_mb_at_longest"] = max(peaks)
    result["met"] = max(peaks) < TARGET_MB
    result["machine"]["loadavg_end"] = loadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=numbers, default=[10.0, 60.0], help="e.g. 10,60")
    parser.add_argument(
        "--whole-minutes",
        type=numbers,
        default=[10.0, 60.0],
        help="lengths also scored in one piece (--window-s 0), for contrast",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS (0: inherit)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "long_recording.json")
    args = parser.parse_args(argv)
    result = run(args.minutes, args.whole_minutes, args.threads or None, args.out)
    print(
        f"wrote {args.out}: peak RSS {result['peak_rss_mb_at_longest']:.0f} MB at "
        f"{max(args.minutes):g} min (target < {TARGET_MB:.0f} MB: "
        f"{'met' if result['met'] else 'NOT met'})"
    )
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
