"""Which registered version to serve: each version of the model says what it was trained and
scored on and how good it is, and the aliases move by a rule on validation, never on test.

``candidate`` marks the latest version. ``champion`` moves to a new version only when its
``val_best/<train.best_metric>`` beats the current champion's (lower for a loss, higher for any
other metric; a tie keeps the champion); the first version is champion. Test figures are shown,
never compared: choosing by them would make them a second validation set.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CANDIDATE = "candidate"
# The run tags a version copies: the data, the code and the DVC experiment it comes from.
LINEAGE_TAGS = ("data.digest", "data.source", "git.commit", "dvc.experiment", "sweep")


def objective(best_metric: str) -> str:
    """The metric champions are chosen by: training's own choice of checkpoint, on validation."""
    return f"val_best/{best_metric}"


def beats(metric: str, new: float, current: float) -> bool:
    return new < current if "loss" in metric else new > current


def version_tags(run: Run) -> dict[str, str]:
    """Lineage tags and every validation and test figure of ``run``, for its version."""
    tags = {key: run.data.tags[key] for key in LINEAGE_TAGS if key in run.data.tags}
    figures = {
        key: f"{value:.6g}"
        for key, value in sorted(run.data.metrics.items())
        if key.startswith(("val_best/", "test/"))
    }
    return {**tags, **figures}


def description(run: Run, metric: str) -> str:
    """One paragraph naming the run, its data and the figures that matter."""
    tags, metrics = run.data.tags, run.data.metrics
    name = run.info.run_name or run.info.run_id
    experiment = tags.get("dvc.experiment")
    figures = ", ".join(
        f"{key} {metrics[key]:.4g}"
        for key in (metric, "test/accuracy", "test/f1_macro")
        if key in metrics
    )
    return (
        f"Run {name} ({run.info.run_id})"
        + (f", DVC experiment {experiment}" if experiment else "")
        + f", commit {tags.get('git.commit', 'unknown')}; data {tags.get('data.source', '?')}"
        + f" digest {tags.get('data.digest', '?')}. {figures}. Champion rule: {metric}."
    )


def current_champion(client: MlflowClient, name: str) -> Any | None:
    """The version holding :data:`CHAMPION`, or None."""
    registered = client.get_registered_model(name)
    version = (registered.aliases or {}).get(CHAMPION)
    return client.get_model_version(name, version) if version else None


def record_version(name: str, version: str, run_id: str, best_metric: str) -> list[str]:
    """Tag and describe version ``version`` of ``name`` (registered from ``run_id``), mark it
    :data:`CANDIDATE`, and :data:`CHAMPION` when it beats the champion by :func:`objective`.

    Returns the aliases it got.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    metric = objective(best_metric)
    for key, value in version_tags(run).items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description(run, metric))
    client.set_registered_model_alias(name, CANDIDATE, version)
    aliases = [CANDIDATE]
    champion = current_champion(client, name)
    new = run.data.metrics.get(metric)
    if champion is None:
        promote = True
    else:
        current = client.get_run(champion.run_id).data.metrics.get(metric)
        promote = new is not None and (current is None or beats(metric, new, current))
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases
