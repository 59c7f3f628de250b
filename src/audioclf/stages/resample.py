"""resample: decode every clip, downmix to mono, resample to audio.sampling_rate (soxr).

python -m audioclf.stages.resample audio.sampling_rate=16000
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from audioclf.data import audio
from audioclf.data.sources import AUDIO
from audioclf.data.store import dataset_fingerprint, fingerprint, load_splits, save_splits
from audioclf.stages import run_stage


def _resample_batch(batch: dict[str, list[Any]], rate: int) -> dict[str, list[Any]]:
    arrays = [audio.load(item["bytes"], rate) for item in batch[AUDIO]]
    return {"array": arrays, "duration_s": [a.size / rate for a in arrays]}


def resample(cfg: DictConfig) -> None:
    """Write paths.resampled: float32 mono arrays at audio.sampling_rate, no audio bytes."""
    rate = int(cfg.audio.sampling_rate)
    splits = load_splits(cfg.paths.raw, "download")
    out = splits.map(
        _resample_batch,
        batched=True,
        batch_size=32,
        num_proc=cfg.audio.num_proc if cfg.audio.num_proc > 1 else None,
        fn_kwargs={"rate": rate},
        remove_columns=[AUDIO],
        desc=f"Resampling to {rate} Hz",
    )
    source = {name: dataset_fingerprint(ds) for name, ds in splits.items()}
    save_splits(out, cfg.paths.resampled, key=fingerprint(source, rate))


def main() -> None:
    run_stage(resample)


if __name__ == "__main__":
    main()
