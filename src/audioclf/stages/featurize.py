"""featurize: the model's feature extractor on whole clips (capped at audio.max_duration_s).

A waveform extractor is applied when rows are read, not stored (audioclf.data.features).

python -m audioclf.stages.featurize audio.max_duration_s=10
"""

from __future__ import annotations

from typing import Any

from datasets import Features, List, Value
from omegaconf import DictConfig

from audioclf.data.columns import LABEL
from audioclf.data.features import featurize_arrays, stores_waveform
from audioclf.data.store import dataset_fingerprint, fingerprint, load_splits, save_splits
from audioclf.models.extractor import build_feature_extractor
from audioclf.stages import run_stage

KEEP = ("path", "duration_s", "speaker")


def _featurize_batch(
    batch: dict[str, list[Any]], extractor: Any, rate: int, max_samples: int
) -> dict[str, list[Any]]:
    name = extractor.model_input_names[0]
    return {name: featurize_arrays(batch["array"], extractor, rate, max_samples)}


def featurize(cfg: DictConfig) -> None:
    """Write paths.features: the model input column, ``label`` (ClassLabel) and a few keys."""
    rate = int(cfg.audio.sampling_rate)
    extractor = build_feature_extractor(cfg.model)
    splits = load_splits(cfg.paths.resampled, "resample").with_format("numpy", ["array"], True)
    drop = [c for c in splits["train"].column_names if c not in (*KEEP, LABEL)]
    name = extractor.model_input_names[0]
    features = Features({k: v for k, v in splits["train"].features.items() if k not in drop})
    features[name] = (
        splits["train"].features["array"] if stores_waveform(extractor) else List(Value("float32"))
    )
    out = splits.map(
        _featurize_batch,
        batched=True,
        batch_size=32,
        num_proc=cfg.audio.num_proc if cfg.audio.num_proc > 1 else None,
        fn_kwargs={
            "extractor": extractor,
            "rate": rate,
            "max_samples": int(cfg.audio.max_duration_s * rate),
        },
        remove_columns=drop,
        features=features,
        desc="Featurizing",
    ).rename_column(LABEL, "label")
    source = {name: dataset_fingerprint(ds) for name, ds in splits.items()}
    key = fingerprint(source, extractor.to_dict(), cfg.audio.max_duration_s)
    save_splits(out, cfg.paths.features, key=key)


def main() -> None:
    run_stage(featurize)


if __name__ == "__main__":
    main()
