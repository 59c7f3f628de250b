"""Each pipeline stage as its own subprocess (``python -m audioclf.stages.X``): time and memory.

Running the stages one by one is how the pipeline is first built in the throwaway copy; ``dvc
commit`` then records them in ``dvc.lock``, exactly as if ``dvc repro`` had run them (the same
commands, in the same order), so that the ``dvc repro`` figures start from a finished pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from benchmarks.measure import run_measured
from benchmarks.workspace import STAGES, Workspace


def run_stages(ws: Workspace, names: tuple[str, ...] = STAGES) -> dict[str, dict[str, Any]]:
    """Run the stages in order and commit them; returns wall time and peak memory per stage."""
    out: dict[str, dict[str, Any]] = {}
    for stage in names:
        m = run_measured(
            [sys.executable, "-m", f"audioclf.stages.{stage}"],
            cwd=ws.root,
            env=ws.env(),
            log=ws.root.parent / "logs" / f"stage-{stage}.log",
        )
        out[stage] = {"wall_s": round(m.wall_s, 2), **m.memory()}
    ws.dvc("commit", "-f", "-q", *names)
    return out


def _override(key: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{key}=[{','.join(str(v) for v in value)}]"
    return f"{key}={value}"


def run_recipe_stages(
    ws: Workspace, recipe: DictConfig, scratch: Path, train_rows: int, test_rows: int
) -> dict[str, dict[str, Any]]:
    """Train and evaluate with the real ``model``/``train`` config, for their memory.

    The pipeline in the copy trains a small stand-in (fast overrides); this runs both stages
    once more with the configured model, batch and crop, for one epoch over the first
    ``train_rows``/``test_rows`` clips (the peak comes from the model, batch and clip length;
    the Arrow data are memory-mapped), writing into ``scratch``.
    """
    from datasets import DatasetDict, load_from_disk

    features = load_from_disk(str(ws.root / ws.cfg().paths.features))
    rows = {"train": train_rows, "validation": test_rows, "test": test_rows}
    subset = DatasetDict(
        {name: ds.select(range(min(rows[name], len(ds)))) for name, ds in features.items()}
    )
    subset.save_to_disk(str(scratch / "features"))
    plain = OmegaConf.to_container(recipe, resolve=True)

    def value(key: str) -> Any:
        node: Any = plain
        for part in key.split("."):
            node = node[part]
        return node

    fast = [o for o in ws.overrides if o not in ws.data_overrides]
    keys = dict.fromkeys(o.split("=", 1)[0] for o in fast)
    real = [_override(k, value(k)) for k in keys]
    paths = [
        f"paths.features={scratch / 'features'}",
        f"paths.model={scratch / 'model'}",
        f"paths.checkpoints={scratch / 'checkpoints'}",
        f"paths.run={scratch / 'run.json'}",
        f"paths.train_log={scratch / 'train_log.csv'}",
        f"paths.metrics={scratch / 'metrics.json'}",
        f"paths.per_class={scratch / 'per_class.json'}",
        f"paths.predictions={scratch / 'predictions.csv'}",
        f"paths.confusion_png={scratch / 'confusion.png'}",
    ]
    out: dict[str, dict[str, Any]] = {}
    for stage in ("train", "evaluate"):
        m = run_measured(
            [sys.executable, "-m", f"audioclf.stages.{stage}", *real, "train.epochs=1", *paths],
            cwd=ws.root,
            env=ws.env(),
            log=scratch / f"stage-{stage}-recipe.log",
        )
        out[f"{stage} (model/train as configured)"] = {
            "wall_s": round(m.wall_s, 2),
            **m.memory(),
            "clips": len(subset["train" if stage == "train" else "test"]),
        }
    return out
