"""One source of truth for configuration.

``conf/`` holds the Hydra groups; ``params.yaml`` is their composition, the file DVC tracks and
the only file stages read. DVC's own Hydra integration writes ``params.yaml`` under
``dvc exp run``; :func:`write_params` calls the very same function so the two never differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"


class ConfigError(ValueError):
    """A configuration file or key is missing or invalid."""


def workspace() -> Path:
    """The DVC workspace a stage runs in (the current directory, as DVC sets it).

    Queued experiments run in a copy of the repository, so this is not always the user's
    repository: see :func:`user_repo_root` for that.
    """
    return Path.cwd()


def user_repo_root() -> Path:
    """The user's repository, also when DVC runs a stage in a temporary experiment copy."""
    return Path(os.environ.get("DVC_ROOT") or workspace()).resolve()


def compose_conf(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose ``conf/`` with Hydra overrides, resolved, as DVC would write it."""
    conf_dir = (root or workspace()) / CONF_DIR
    if not conf_dir.is_dir():
        raise ConfigError(f"config directory not found: {conf_dir}")
    with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(overrides: Sequence[str] = (), root: Path | None = None) -> Path:
    """Regenerate ``params.yaml`` from ``conf/`` with DVC's own Hydra composition."""
    from dvc.utils.hydra import compose_and_dump  # DVC is heavy: only `audioclf params` needs it

    root = (root or workspace()).resolve()
    out = root / PARAMS_FILE
    compose_and_dump(out, str(root / CONF_DIR), None, CONFIG_NAME, str(root), list(overrides))
    return out


def load_params(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Read ``params.yaml`` and apply Hydra value overrides (``train.epochs=3``).

    Stages read this, never ``conf/``: under ``dvc exp run -S`` only ``params.yaml`` carries
    the experiment's values. Switching a config group (``data=minds14``) is a change of
    ``params.yaml``: use ``audioclf params data=minds14`` or ``dvc exp run -S data=minds14``.
    """
    root = (root or workspace()).resolve()
    params = root / PARAMS_FILE
    if not params.is_file():
        raise ConfigError(f"{params} not found; create it with `audioclf params`")
    switches = [o for o in overrides if _is_group_switch(o, root / CONF_DIR)]
    if switches:
        raise ConfigError(
            f"{' '.join(switches)} switches a config group, which changes {PARAMS_FILE}, the one "
            f"source of truth of every stage: run `audioclf params {' '.join(switches)}` (or "
            f"`dvc exp run -S {' -S '.join(switches)}`) first; a stage takes value overrides only"
        )
    with initialize_config_dir(str(root), version_base=None):
        try:
            return compose(config_name=Path(PARAMS_FILE).stem, overrides=list(overrides))
        except Exception as err:
            raise ConfigError(f"bad override for {params}: {err}") from err


def full_key(cfg: DictConfig, key: str) -> str:
    """``data.path`` for ``key="path"`` of the node ``cfg.data``: error messages name the key a
    user writes. OmegaConf has no public accessor: this calls ``DictConfig._get_full_key``, the
    one use of it here (pyproject bounds omegaconf below 2.4; tests/unit/test_config.py checks
    it)."""
    return cfg._get_full_key(key) or key


def _is_group_switch(override: str, conf_dir: Path) -> bool:
    """``data=audiofolder``: a key that names a config group (a folder of ``conf/``)."""
    key, sep, _ = override.lstrip("+~").partition("=")
    return bool(sep) and "." not in key and (conf_dir / key).is_dir()


def require(cfg: DictConfig, key: str) -> Any:
    """Read a dotted ``key``, failing with the key's name when it is unset or ``???``.

    The name is the full one (``data.path``) also when ``cfg`` is a sub-node (``cfg.data``).
    """
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        value = None
    if value is None:
        name = full_key(cfg, key)
        raise ConfigError(f"config key '{name}' must be set (in {PARAMS_FILE} or as an override)")
    return value
