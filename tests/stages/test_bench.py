"""`python -m benchmarks`: the full mode's config handling, which `--smoke` skips (the whole
suite on tiny generated data is tests/system/test_bench.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from audioclf.config import load_params
from audioclf.testing import REPO_ROOT
from benchmarks.stages import PIPELINE_INPUTS, recipe_stage_overrides, value_overrides
from benchmarks.workspace import make_workspace


def test_value_overrides_turn_one_config_into_another(tmp_path: Path) -> None:
    current = OmegaConf.create({"a": {"b": 1, "gone": 2}, "s": "x", "keep": [1, 2], "f": 0.5})
    wanted = OmegaConf.create(
        {"a": {"b": None}, "s": "10", "keep": [1, 2], "f": 3.0e-5, "new": {"l": [1, "two"]}}
    )
    OmegaConf.save(current, tmp_path / "params.yaml")

    overrides = value_overrides(current, wanted)

    assert not any(o.startswith("keep") for o in overrides)
    read = load_params(overrides, root=tmp_path)  # as a stage applies its arguments
    assert OmegaConf.to_container(read) == OmegaConf.to_container(wanted)


def test_full_mode_recipe_stages_read_the_configured_recipe(tmp_path: Path) -> None:
    """The suite's full mode (not --smoke) up to the recipe stages' command lines: over the
    copy's params.yaml (the fast recipe, ``debug=fast``) they read the configured model and
    training, for one epoch, writing into their scratch folder."""
    ws = make_workspace(REPO_ROOT, tmp_path / "repo", smoke=False)
    recipe = ws.recipe(smoke=False)
    scratch = tmp_path / "recipe-stages"
    pipeline = ws.cfg()
    assert pipeline.model.config != recipe.model.config  # the copy's pipeline trains the fast one

    read = load_params(recipe_stage_overrides(ws, recipe, scratch), root=ws.root)

    assert read.train.epochs == 1
    assert read.paths.features == str(scratch / "features")
    for key, path in read.paths.items():  # the copy's pipeline outputs stay as they are
        assert path.startswith(str(scratch)) == (key not in PIPELINE_INPUTS), (key, path)
    configured = OmegaConf.to_container(recipe)
    staged = OmegaConf.to_container(read)
    for cfg in (configured, staged):
        del cfg["train"]["epochs"], cfg["paths"]
    assert staged == configured
