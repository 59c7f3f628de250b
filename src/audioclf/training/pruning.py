"""Pruning a sweep's trial while it trains: its validation curve reported to its Optuna trial.

``audioclf sweep`` (:mod:`audioclf.hparams_search.worker`) runs a trial of a search with a
pruner as ``dvc exp run`` with :data:`STORAGE_ENV`, :data:`STUDY_ENV`, :data:`PRUNER_ENV` and
the trial's number set. After each evaluation the main process reports the validation figure
:data:`CURVE_ENV` names; when
the pruner says the trial cannot catch up, training stops there as if stopped early, the best
model so far is exported, and ``reports/validation.json`` says ``pruned``. The worker then
tells Optuna the trial was pruned. Outside a sweep (no variables) nothing is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audioclf.tracking.tags import TRIAL_ENV

STORAGE_ENV = "AUDIOCLF_SWEEP_STORAGE"
STUDY_ENV = "AUDIOCLF_SWEEP_STUDY"
CURVE_ENV = "AUDIOCLF_SWEEP_CURVE"
PRUNER_ENV = "AUDIOCLF_SWEEP_PRUNER"  # the search's pruner as JSON: Optuna's storage keeps none
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold")


@dataclass
class TrialReporter:
    """The trial this training reports its curve to."""

    trial: Any  # optuna.Trial
    metric: str

    def should_prune(self, epoch: int, scores: dict[str, float]) -> bool:
        self.trial.report(scores[self.metric], step=epoch)
        return bool(self.trial.should_prune())


def make_pruner(options: Mapping[str, Any] | None) -> Any:
    """The Optuna pruner ``{name: median, n_warmup_steps: 2, ...}`` names (none: NopPruner)."""
    import optuna

    if not options:
        return optuna.pruners.NopPruner()
    kwargs = dict(options)
    kind = kwargs.pop("name")
    return {
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }[kind](**kwargs)


def reporter_from_env() -> TrialReporter | None:
    """The sweep's trial when the environment names one, else None."""
    url, study_name, number = (os.environ.get(n) for n in (STORAGE_ENV, STUDY_ENV, TRIAL_ENV))
    if not (url and study_name and number):
        return None
    import optuna

    storage = optuna.storages.RDBStorage(url)
    pruner = make_pruner(json.loads(os.environ.get(PRUNER_ENV) or "null"))
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return TrialReporter(optuna.Trial(study, trial_id), os.environ.get(CURVE_ENV, "accuracy"))
