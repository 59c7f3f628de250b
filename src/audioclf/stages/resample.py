"""resample: decode every clip, downmix to mono, resample to audio.sampling_rate (soxr).

Clips are stored as audio.storage_dtype: int16 (16-bit PCM, half the bytes of float32 and
lossless for sources of 16 bits or fewer, e.g. phone audio) or float32 (deeper sources).

python -m audioclf.stages.resample audio.sampling_rate=16000 audio.storage_dtype=float32
"""

from __future__ import annotations

from typing import Any

from datasets import List, Value
from omegaconf import DictConfig

from audioclf.data import audio
from audioclf.data.columns import AUDIO
from audioclf.data.store import dataset_fingerprint, fingerprint, load_splits, save_splits
from audioclf.stages import run_stage


def _resample_batch(batch: dict[str, list[Any]], rate: int, pcm16: bool) -> dict[str, list[Any]]:
    arrays = [audio.load(item["bytes"], rate) for item in batch[AUDIO]]
    stored = [audio.to_pcm16(a) for a in arrays] if pcm16 else arrays
    return {"array": stored, "duration_s": [a.size / rate for a in arrays]}


def resample(cfg: DictConfig) -> None:
    """Write paths.resampled: mono arrays at audio.sampling_rate (audio.storage_dtype), no
    audio bytes."""
    rate = int(cfg.audio.sampling_rate)
    dtype = audio.storage_dtype(cfg.audio.storage_dtype)
    splits = load_splits(cfg.paths.raw, "download")
    features = splits["train"].features.copy()
    del features[AUDIO]
    features.update({"array": List(Value(dtype.name)), "duration_s": Value("float64")})
    out = splits.map(
        _resample_batch,
        batched=True,
        batch_size=32,
        num_proc=cfg.audio.num_proc if cfg.audio.num_proc > 1 else None,
        fn_kwargs={"rate": rate, "pcm16": dtype == "int16"},
        remove_columns=[AUDIO],
        features=features,
        desc=f"Resampling to {rate} Hz",
    )
    source = {name: dataset_fingerprint(ds) for name, ds in splits.items()}
    save_splits(out, cfg.paths.resampled, key=fingerprint(source, rate, dtype.name))


def main() -> None:
    run_stage(resample)


if __name__ == "__main__":
    main()
