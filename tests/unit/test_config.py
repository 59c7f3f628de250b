"""params.yaml is the composition of conf/, and the config helpers name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from audioclf.config import ConfigError, compose_conf, load_params, require, write_params
from audioclf.testing import REPO_ROOT

TRAIN_CONF = REPO_ROOT / "conf" / "train"
RECIPES = sorted(path.stem for path in TRAIN_CONF.glob("*.yaml") if path.stem != "base")


def repo_params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_params_yaml_is_the_composition_of_conf() -> None:
    composed = OmegaConf.to_container(compose_conf(root=REPO_ROOT), resolve=True)
    assert repo_params() == composed, (
        "params.yaml differs from conf/: regenerate it with `audioclf params`"
    )


def test_params_yaml_is_byte_identical_to_what_write_params_writes(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    written = write_params(root=tmp_path)
    assert written == tmp_path / "params.yaml"
    assert written.read_bytes() == (REPO_ROOT / "params.yaml").read_bytes(), (
        "params.yaml is not what `audioclf params` writes from conf/: regenerate it"
    )


def test_a_conf_edit_without_regenerating_is_caught(tmp_path: Path) -> None:
    # The comparison above is sensitive: a changed conf/ composes to something else.
    edited = OmegaConf.to_container(
        compose_conf(["audio.max_duration_s=7.5"], root=REPO_ROOT), resolve=True
    )
    assert edited != repo_params()
    assert edited["audio"]["max_duration_s"] == 7.5
    # ... and so does an edit of a file in conf/ itself.
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    config = tmp_path / "conf" / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("max_duration_s: 20.0", "max_duration_s: 9.0"),
        encoding="utf-8",
    )
    assert write_params(root=tmp_path).read_bytes() != (REPO_ROOT / "params.yaml").read_bytes()


def test_compose_conf_fails_clearly_without_conf_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config directory not found"):
        compose_conf(root=tmp_path)


def test_load_params_applies_value_overrides(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    write_params(root=tmp_path)
    base = load_params(root=tmp_path)
    assert base.audio.max_duration_s == 20.0
    cfg = load_params(["audio.max_duration_s=3.5", "data.split.seed=7"], root=tmp_path)
    assert cfg.audio.max_duration_s == 3.5
    assert cfg.data.split.seed == 7
    # Everything else is params.yaml as written.
    assert cfg.paths == base.paths and cfg.model == base.model


def test_load_params_reads_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    write_params(["data.split.test_size=0.25"], root=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_params().data.split.test_size == 0.25


def test_load_params_without_params_yaml_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params\.yaml not found"):
        load_params(root=tmp_path)


def test_load_params_bad_override_is_a_config_error(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    write_params(root=tmp_path)
    with pytest.raises(ConfigError, match="no_such_key"):
        load_params(["data.no_such_key=1"], root=tmp_path)


def test_a_group_switch_on_a_stage_says_to_recompose_params_yaml(tmp_path: Path) -> None:
    """A stage reads params.yaml; `data=audiofolder` would need a new one, not Hydra's `+`."""
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    write_params(root=tmp_path)
    with pytest.raises(ConfigError) as info:
        load_params(["data=audiofolder", "train.epochs=2"], root=tmp_path)
    message = str(info.value)
    assert "`audioclf params data=audiofolder`" in message and "+data" not in message
    assert load_params(["train.epochs=2"], root=tmp_path).train.epochs == 2


def test_missing_mandatory_key_names_the_key(tmp_path: Path) -> None:
    cfg = compose_conf(["data=audiofolder"], root=REPO_ROOT)
    with pytest.raises(ConfigError, match=r"'data\.path'"):
        require(cfg, "data.path")
    # The same through params.yaml, the file the stages read.
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    write_params(["data=audiofolder"], root=tmp_path)
    with pytest.raises(ConfigError, match=r"'data\.path'"):
        require(load_params(root=tmp_path), "data.path")


def test_require_returns_set_values_and_rejects_null() -> None:
    cfg = compose_conf(["data=audiofolder", "data.path=some/folder"], root=REPO_ROOT)
    assert require(cfg, "data.path") == "some/folder"
    assert cfg.data.tracked_path == "some/folder"  # interpolated from data.path
    with pytest.raises(ConfigError, match=r"'model\.name_or_path'"):
        require(cfg, "model.name_or_path")


def test_the_flagship_experiment_is_its_three_groups() -> None:
    """`experiment=flagship` (the Makefile's flagship) composes as the three group switches."""
    flagship = compose_conf(["experiment=flagship"], root=REPO_ROOT)
    switched = compose_conf(
        ["data=minds14", "model=wav2vec2_base", "train=wav2vec2_base"], root=REPO_ROOT
    )
    assert flagship == switched
    assert flagship.data.path == "PolyAI/minds14"
    assert flagship.model.name_or_path == "facebook/wav2vec2-base"
    assert flagship.train.learning_rate == 5.0e-5
    # Overrides after it still apply, as `make flagship FLAGSHIP_ARGS="-S train.epochs=20"` does.
    longer = compose_conf(["experiment=flagship", "train.epochs=20"], root=REPO_ROOT)
    assert longer.train.epochs == 20


def dotted_keys(node: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in node.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_train_recipe_states_only_keys_of_the_base_and_sets_all_it_leaves_open(
    recipe: str,
) -> None:
    """conf/train/<recipe>.yaml extends base.yaml: a key base lacks would be a typo (Hydra adds it
    silently), and base's ??? keys (epochs, batch, learning rate, crop) are each recipe's to set."""
    base = yaml.safe_load((TRAIN_CONF / "base.yaml").read_text(encoding="utf-8"))
    stated = yaml.safe_load((TRAIN_CONF / f"{recipe}.yaml").read_text(encoding="utf-8"))
    assert stated.pop("defaults") == ["base", "_self_"]
    unknown = dotted_keys(stated) - dotted_keys(base)
    assert not unknown, f"{recipe}.yaml states keys base.yaml lacks: {sorted(unknown)}"
    composed = compose_conf([f"train={recipe}"], root=REPO_ROOT).train
    assert not OmegaConf.missing_keys(composed), f"{recipe}.yaml leaves base.yaml's ??? keys unset"
    assert list(composed) == list(base), "the composed recipe keeps base.yaml's order of keys"
