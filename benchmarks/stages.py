"""Each pipeline stage as its own subprocess (``python -m audioclf.stages.X``): time and memory.

Running the stages one by one is how the pipeline is first built in the throwaway copy; ``dvc
commit`` then records them in ``dvc.lock``, exactly as if ``dvc repro`` had run them (the same
commands, in the same order), so that the ``dvc repro`` figures start from a finished pipeline.

The recipe stages run train and evaluate once more with the configured model. A stage reads the
copy's ``params.yaml`` (the fast recipe) and takes value overrides only, so the overrides are
the difference between the two composed configs, value by value: a group choice such as
``debug=fast`` is no key to look up, its values are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from benchmarks.measure import run_measured
from benchmarks.workspace import STAGES, Workspace

# What the recipe stages read of the copy's pipeline, besides the features they are given.
PIPELINE_INPUTS = ("raw", "manifest", "resampled")


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


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.epochs": 3, ...}``: every value of a plain config by its dotted key (a list or
    an empty mapping is one value)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (strings quoted: ``'main'`` stays a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Hydra override for a {type(value).__name__}: {value!r}")


def value_overrides(current: DictConfig, wanted: DictConfig) -> list[str]:
    """The value overrides that make a stage reading ``current`` (params.yaml) read ``wanted``.

    Both are composed configs, so a group choice (``debug=fast``) is already its values: each
    value that differs is set, each new one added (``++``), each one ``wanted`` lacks removed.
    """
    have = _leaves(OmegaConf.to_container(current, resolve=True))
    want = _leaves(OmegaConf.to_container(wanted, resolve=True))
    removed = [f"~{key}" for key in have if key not in want]
    changed = [
        f"{'' if key in have else '++'}{key}={_hydra_value(value)}"
        for key, value in want.items()
        if key not in have or have[key] != value
    ]
    return [*removed, *changed]


def recipe_stage_paths(recipe: DictConfig, scratch: Path) -> dict[str, str]:
    """Every ``paths`` entry but the pipeline's inputs, in ``scratch`` under its own name: the
    recipe stages write nothing into the copy's pipeline, and read their subset of the
    features from ``scratch`` too."""
    return {
        key: str(scratch / Path(value).name)
        for key, value in recipe.paths.items()
        if key not in PIPELINE_INPUTS
    }


def recipe_stage_overrides(ws: Workspace, recipe: DictConfig, scratch: Path) -> list[str]:
    """What train and evaluate take in ``ws`` to run ``recipe`` for one epoch in ``scratch``:
    overrides of the workspace's params.yaml (the fast recipe)."""
    wanted = OmegaConf.merge(
        recipe, {"train": {"epochs": 1}, "paths": recipe_stage_paths(recipe, scratch)}
    )
    return value_overrides(ws.cfg(), wanted)


def run_recipe_stages(
    ws: Workspace, recipe: DictConfig, scratch: Path, train_rows: int, test_rows: int
) -> dict[str, dict[str, Any]]:
    """Train and evaluate with the real ``model``/``train`` config, for their memory.

    The pipeline in the copy trains a small stand-in (the fast recipe); this runs both stages
    once more with ``recipe``'s model, batch and crop, for one epoch over the first
    ``train_rows``/``test_rows`` clips (the peak comes from the model, batch and clip length;
    the Arrow data are memory-mapped), writing into ``scratch``.
    """
    from datasets import DatasetDict, load_from_disk

    features = load_from_disk(str(ws.root / ws.cfg().paths.features))
    rows = {"train": train_rows, "validation": test_rows, "test": test_rows}
    subset = DatasetDict(
        {name: ds.select(range(min(rows[name], len(ds)))) for name, ds in features.items()}
    )
    subset.save_to_disk(recipe_stage_paths(recipe, scratch)["features"])
    overrides = recipe_stage_overrides(ws, recipe, scratch)
    out: dict[str, dict[str, Any]] = {}
    for stage in ("train", "evaluate"):
        m = run_measured(
            [sys.executable, "-m", f"audioclf.stages.{stage}", *overrides],
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
