"""The sweep in MLflow: one parent run holding the search, each trial's run its child.

The parent's params are the search (space, objective, sampler, trial count); its tags the best
trial so far (``best.value``, ``best.trial``, ``best.run_id``, ``best.params.<key>``), kept up to
date by whichever worker finishes a trial. A trial's run is opened by the train stage, which
nests it under the parent from the environment the worker gives ``dvc exp run``
(``AUDIOCLF_SWEEP_PARENT_RUN_ID``). A trial that DVC restores from its run cache trains nothing and
opens no run: the worker gives it a child run of its own, with the params and metrics of the
run that made the restored outputs and the tag ``restored_from_run`` naming it.
"""

from __future__ import annotations

from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from audioclf.hparams_search.spec import SearchSpec
from audioclf.tracking.tags import PARENT_RUN_ENV, SWEEP_TAG, TRIAL_ENV, TRIAL_TAG

__all__ = ["PARENT_RUN_ENV", "TRIAL_ENV"]
PARENT_ATTR = "mlflow_parent_run_id"
EXPERIMENT_TAG = "dvc.experiment"
STATE_TAG = "optuna.state"
STUDY_TAG = "optuna.study"
RESTORED_TAG = "restored_from_run"
ROLE_TAG = "sweep.role"


def open_parent(client: MlflowClient, experiment_id: str, spec: SearchSpec, storage: str) -> str:
    """A new parent run for the study: params the search, tags the sweep and study."""
    run = client.create_run(
        experiment_id,
        run_name=spec.study_name,
        tags={
            SWEEP_TAG: spec.study_name,
            STUDY_TAG: spec.study_name,
            ROLE_TAG: "parent",
            "optuna.storage": storage,
            "mlflow.note.content": (
                f"Search {spec.source.name}: {spec.n_trials} trials, {spec.direction} "
                f"{spec.objective} (reports/validation.json). Its trials are the child runs; "
                "the best so far is in the tags best.*."
            ),
        },
    )
    params = [Param(k, v) for k, v in spec.describe().items()]
    client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


def trial_run(client: MlflowClient, experiment_id: str, dvc_experiment: str) -> Any | None:
    """The run the train stage opened for ``dvc_experiment`` (None when it opened none)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{EXPERIMENT_TAG}` = '{dvc_experiment}'"
    )
    return runs[0] if runs else None


def tag_trial(
    client: MlflowClient,
    run_id: str,
    parent_id: str,
    trial: optuna.Trial | optuna.trial.FrozenTrial,
    spec: SearchSpec,
    state: str,
) -> None:
    """Nest ``run_id`` under the parent and say which trial it is and how it ended."""
    client.log_batch(
        run_id,
        tags=[
            RunTag(MLFLOW_PARENT_RUN_ID, parent_id),
            RunTag(SWEEP_TAG, spec.study_name),
            RunTag(STUDY_TAG, spec.study_name),
            RunTag(TRIAL_TAG, str(trial.number)),
            RunTag(STATE_TAG, state),
        ],
    )


def restored_child(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    dvc_experiment: str,
    original_id: str,
) -> str:
    """A FINISHED child run for a trial DVC restored: the original run's params, latest
    metrics and lineage tags, and ``restored_from_run`` naming it."""
    original = client.get_run(original_id)
    inherited = {
        k: v for k, v in original.data.tags.items() if not k.startswith(("mlflow.", "optuna."))
    }
    run = client.create_run(
        experiment_id,
        run_name=dvc_experiment,
        tags={
            **inherited,
            MLFLOW_RUN_NAME: dvc_experiment,
            MLFLOW_PARENT_RUN_ID: parent_id,
            EXPERIMENT_TAG: dvc_experiment,
            RESTORED_TAG: original_id,
            "mlflow.note.content": (
                f"DVC restored this trial's outputs from its run cache: nothing trained. "
                f"They are those of run {original_id} ({original.info.run_name}), whose params "
                "and metrics this run repeats."
            ),
        },
    )
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in original.data.params.items()],
        metrics=[
            Metric(k, v, original.info.end_time or original.info.start_time, 0)
            for k, v in original.data.metrics.items()
        ],
    )
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def record_best(client: MlflowClient, parent_id: str, study: optuna.Study) -> None:
    """The best trial so far on the parent: value, number, params and its run."""
    try:
        best = study.best_trial
    except ValueError:  # no trial completed yet
        return
    tags = [
        RunTag("best.value", repr(best.value)),
        RunTag("best.trial", str(best.number)),
        *(RunTag(f"best.params.{k}", str(v)) for k, v in best.params.items()),
    ]
    if run_id := best.user_attrs.get("mlflow_run_id"):
        tags.append(RunTag("best.run_id", run_id))
    if name := best.user_attrs.get("dvc_experiment"):
        tags.append(RunTag("best.dvc_experiment", name))
    client.log_batch(parent_id, tags=tags)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name, every state listed (0 for none)."""
    counts = {state.name: 0 for state in optuna.trial.TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


def record_counts(client: MlflowClient, parent_id: str, study: optuna.Study) -> dict[str, int]:
    """Trials per state as the parent's tags (``trials.COMPLETE`` ...); the counts."""
    counts = trial_counts(study)
    client.log_batch(parent_id, tags=[RunTag(f"trials.{k}", str(v)) for k, v in counts.items()])
    return counts


def finish_parent(client: MlflowClient, parent_id: str, study: optuna.Study) -> None:
    record_best(client, parent_id, study)
    record_counts(client, parent_id, study)
    client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FINISHED))


def fail_stale_run(
    client: MlflowClient, experiment_id: str, trial: optuna.trial.FrozenTrial, spec: SearchSpec
) -> None:
    """The run of a trial whose worker died (Optuna failed it): FAILED too, tagged so."""
    name = trial.user_attrs.get("dvc_experiment")
    run = trial_run(client, experiment_id, name) if name else None
    if run is None:
        return
    parent_id = run.data.tags.get(MLFLOW_PARENT_RUN_ID, "")
    tag_trial(client, run.info.run_id, parent_id, trial, spec, "FAIL")
    client.set_tag(run.info.run_id, "sweep.failure", "its worker stopped beating")
    if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
