"""A search as ``conf/hparams_search/NAME.yaml`` says it: its space, objective and sampler.

The file is a Hydra config group that ``params.yaml`` never includes: a search is not a stage
param, and a trial's params are only the values it samples. Its space keys are checked against
the composed config, so a misspelled key fails before any trial runs, naming the key and file.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from audioclf.config import CONF_DIR, ConfigError, compose_conf
from audioclf.training import pruning

SEARCH_GROUP = "hparams_search"
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid")
PARAM_TYPES = ("float", "int", "categorical")
# Figures of reports/validation.json a search may optimize: chosen on validation, never test.
OBJECTIVE_PREFIX = "best_"


@dataclass(frozen=True)
class Param:
    """One dimension of the space: a float or int range (``log`` scale, ``step``) or choices."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        """``float[0.0001, 0.01] log`` or ``categorical[32, 64]``: the space as the parent run's
        param."""
        if self.type == "categorical":
            return f"categorical{list(self.choices)}"
        scale = " log" if self.log else ""
        step = f" step {self.step}" if self.step else ""
        return f"{self.type}[{self.low}, {self.high}]{scale}{step}"


@dataclass(frozen=True)
class SearchSpec:
    """What ``conf/hparams_search/<name>.yaml`` holds, checked."""

    name: str
    source: Path
    objective: str
    direction: str
    n_trials: int
    space: tuple[Param, ...]
    sampler: Mapping[str, Any] = field(default_factory=dict)
    pruner: Mapping[str, Any] | None = None
    overrides: tuple[str, ...] = ()
    heartbeat_s: int = 60
    storage: str | None = None

    @property
    def study_name(self) -> str:
        return self.name

    @property
    def curve_metric(self) -> str:
        """The validation figure a pruner sees after each evaluation (``accuracy`` for
        ``best_accuracy``)."""
        return self.objective.removeprefix(OBJECTIVE_PREFIX)

    def make_sampler(self, worker_index: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler; ``worker_index`` shifts its seed, so that workers started together do
        not draw the same first points."""
        options = dict(self.sampler)
        kind = options.pop("name", "tpe")
        seed = options.pop("seed", None)
        if seed is not None:
            seed = int(seed) + worker_index
        if kind == "grid":
            return optuna.samplers.GridSampler(self.grid(), seed=seed)
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed, **options)
        return optuna.samplers.TPESampler(seed=seed, **options)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return pruning.make_pruner(self.pruner)

    def grid(self) -> dict[str, list[Any]]:
        return {param.key: list(param.choices) for param in self.space}

    def describe(self) -> dict[str, str]:
        """The search as params of its parent run: space, objective, sampler, trials."""
        described = {f"space.{param.key}": param.describe() for param in self.space}
        sampler = {"name": "tpe", **self.sampler}
        pruner = dict(self.pruner or {})
        described.update(
            {
                "search.name": self.name,
                "search.objective": self.objective,
                "search.direction": self.direction,
                "search.n_trials": str(self.n_trials),
                "search.sampler": options_text(sampler),
                "search.pruner": options_text(pruner) if pruner else "none",
            }
        )
        if self.overrides:
            described["search.overrides"] = " ".join(self.overrides)
        return described


def options_text(options: Mapping[str, Any]) -> str:
    """``name=tpe, seed=42``: the name first, then the options as given."""
    ordered = {"name": options.get("name"), **options}
    return ", ".join(f"{k}={v}" for k, v in ordered.items())


def search_file(name: str, root: Path) -> Path:
    return root / CONF_DIR / SEARCH_GROUP / f"{name}.yaml"


def load_spec(
    name: str,
    root: Path,
    *,
    overrides: Sequence[str] = (),
    n_trials: int | None = None,
) -> SearchSpec:
    """``conf/hparams_search/<name>.yaml`` checked against ``conf/`` composed with
    ``overrides`` (the fixed ``-S`` values every trial takes besides its own)."""
    path = search_file(name, root)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{path} not found (searches in {path.parent}: {', '.join(known)})")
    raw = OmegaConf.load(path)
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: a search is a mapping of keys, not {type(raw).__name__}")
    fixed = (*(str(o) for o in raw.get("overrides") or ()), *overrides)
    try:
        composed = compose_conf(fixed, root=root)
    except Exception as err:
        raise ConfigError(f"{path}: overrides {list(fixed)} do not compose: {err}") from err
    spec = SearchSpec(
        name=str(raw.get("study_name") or name),
        source=path,
        objective=_objective(raw, path),
        direction=_choice(raw, "direction", DIRECTIONS, path, default="maximize"),
        n_trials=_n_trials(raw, path, n_trials),
        space=tuple(_param(key, value, composed, path) for key, value in _space(raw, path)),
        sampler=_options(raw, "sampler", SAMPLERS, path) or {"name": "tpe"},
        pruner=_options(raw, "pruner", pruning.PRUNERS, path),
        overrides=tuple(fixed),
        heartbeat_s=int(raw.get("heartbeat_s") or 60),
        storage=raw.get("storage"),
    )
    if spec.sampler.get("name") == "grid":
        loose = [p.key for p in spec.space if p.type != "categorical"]
        if loose:
            raise ConfigError(f"{path}: a grid takes categorical choices only; not {loose}")
        points = math.prod(len(p.choices) for p in spec.space)
        spec = dataclasses.replace(spec, n_trials=min(spec.n_trials, points))
    return spec


def _objective(raw: DictConfig, path: Path) -> str:
    objective = str(raw.get("objective") or "")
    if not objective.startswith(OBJECTIVE_PREFIX):
        raise ConfigError(
            f"{path}: objective must be a validation figure of reports/validation.json "
            f"(best_accuracy, best_f1_macro, best_loss), not {objective!r}: a search never "
            "selects on test"
        )
    return objective


def _is_grid(raw: DictConfig) -> bool:
    sampler = raw.get("sampler")
    name = sampler.get("name") if isinstance(sampler, DictConfig) else sampler
    return name == "grid"


def _choice(raw: DictConfig, key: str, allowed: Sequence[str], path: Path, default: str) -> str:
    value = str(raw.get(key) or default)
    if value not in allowed:
        raise ConfigError(f"{path}: {key} must be one of {list(allowed)}, not {value!r}")
    return value


def _n_trials(raw: DictConfig, path: Path, given: int | None) -> int:
    """``n_trials`` (a grid's default and most: its number of points)."""
    value = given if given is not None else raw.get("n_trials")
    if value is None and _is_grid(raw):
        return sys.maxsize
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{path}: n_trials must be a whole number of at least 1, not {value!r}")
    return value


def _space(raw: DictConfig, path: Path) -> list[tuple[str, Any]]:
    space = raw.get("space")
    if not isinstance(space, DictConfig) or not space:
        raise ConfigError(f"{path}: space must map config keys to ranges or choices")
    return [(str(key), value) for key, value in space.items()]


def _param(key: str, value: Any, composed: DictConfig, path: Path) -> Param:
    if OmegaConf.select(composed, key, default=_MISSING) is _MISSING:
        raise ConfigError(f"{path}: space.{key}: no such key in the composed config (conf/)")
    if not isinstance(value, DictConfig):
        raise ConfigError(f"{path}: space.{key} must be a mapping with a type, not {value!r}")
    kind = str(value.get("type") or "")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{path}: space.{key}.type must be one of {list(PARAM_TYPES)}")
    if kind == "categorical":
        choices = OmegaConf.to_container(value.get("choices") or OmegaConf.create([]))
        if not choices:
            raise ConfigError(f"{path}: space.{key}.choices must list at least one value")
        return Param(key, kind, choices=tuple(choices))
    low, high = value.get("low"), value.get("high")
    if low is None or high is None or not low < high:
        raise ConfigError(f"{path}: space.{key} needs low < high, got low={low} high={high}")
    log = bool(value.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{path}: space.{key}: a log scale needs low > 0, got {low}")
    return Param(key, kind, low=low, high=high, log=log, step=value.get("step"))


def _options(raw: DictConfig, key: str, names: Sequence[str], path: Path) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    options = OmegaConf.to_container(value) if isinstance(value, DictConfig) else {"name": value}
    if options.get("name") not in names:
        raise ConfigError(f"{path}: {key}.name must be one of {list(names)}, not {options}")
    return options


_MISSING = object()
