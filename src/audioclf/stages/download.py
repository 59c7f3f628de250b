"""download: load the configured source, check every item, split it, write raw data + manifest.

python -m audioclf.stages.download [data.on_bad_audio=skip] [data.split.test_size=0.3]
python -m audioclf.stages.download data.split.column=split   # the source's own splits
"""

from __future__ import annotations

from omegaconf import DictConfig

from audioclf.data.manifest import build_manifest
from audioclf.data.sources import load_source
from audioclf.data.split import split_dataset
from audioclf.data.store import save_splits, write_json
from audioclf.data.validate import drop_bad, inspect
from audioclf.stages import run_stage


def download(cfg: DictConfig) -> None:
    """Write paths.raw (train/validation/test DatasetDict) and paths.manifest from data.*."""
    data = cfg.data
    ds = inspect(load_source(data), num_proc=cfg.audio.num_proc)
    ds, skipped = drop_bad(ds, data.on_bad_audio, source=f"{data.source} {data.path}")
    splits = split_dataset(
        ds,
        validation_size=data.split.validation_size,
        test_size=data.split.test_size,
        seed=data.split.seed,
        group_by=data.split.get("group_by"),
        column=data.split.get("column"),
    )
    manifest = build_manifest(splits, data, skipped)
    save_splits(splits, cfg.paths.raw, key=manifest["digest"])
    write_json(cfg.paths.manifest, manifest)


def main() -> None:
    run_stage(download)


if __name__ == "__main__":
    main()
