"""The registered versions' tags, description and aliases: ``champion`` moves only on validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from audioclf.registry import CANDIDATE, CHAMPION, beats, record_version

DIGEST = "ab" * 32


@dataclass
class Registry:
    client: Any
    name: str  # a registered model of the test's own


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


@pytest.fixture
def registry(
    store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store, registry_uri=store)
    name = f"audioclf-{request.node.name}"
    client.create_registered_model(name)
    return Registry(client, name)


def register(registry: Registry, metrics: dict[str, float], best_metric: str = "accuracy"):
    """A run with ``metrics`` and lineage tags, registered as the next version and recorded."""
    client = registry.client
    experiment = client.get_experiment_by_name("t")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("t")
    run_id = client.create_run(
        experiment_id,
        tags={"data.digest": DIGEST, "git.commit": "c0ffee", "dvc.experiment": "exp-1"},
    ).info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    version = client.create_model_version(
        registry.name, f"runs:/{run_id}/model", run_id=run_id
    ).version
    return version, run_id, record_version(registry.name, version, run_id, best_metric)


def aliases(registry: Registry) -> dict[str, str]:
    return dict(registry.client.get_registered_model(registry.name).aliases)


def test_champion_moves_on_validation_only_and_candidate_marks_the_latest(
    registry: Registry,
) -> None:
    first, run_id, got = register(registry, {"val_best/accuracy": 0.80, "test/accuracy": 0.70})
    assert got == [CANDIDATE, CHAMPION]
    assert aliases(registry) == {CANDIDATE: first, CHAMPION: first}

    # Better on test, worse on validation: the latest, not the champion.
    second, _, got = register(registry, {"val_best/accuracy": 0.75, "test/accuracy": 0.95})
    assert got == [CANDIDATE]
    assert aliases(registry) == {CANDIDATE: second, CHAMPION: first}

    # A tie keeps the champion; better on validation takes it.
    register(registry, {"val_best/accuracy": 0.80, "test/accuracy": 0.99})
    assert aliases(registry)[CHAMPION] == first
    fourth, _, got = register(registry, {"val_best/accuracy": 0.85, "test/accuracy": 0.60})
    assert got == [CANDIDATE, CHAMPION]
    assert aliases(registry) == {CANDIDATE: fourth, CHAMPION: fourth}

    version = registry.client.get_model_version(registry.name, first)
    assert version.tags["data.digest"] == DIGEST and version.tags["git.commit"] == "c0ffee"
    assert version.tags["dvc.experiment"] == "exp-1"
    assert version.tags["val_best/accuracy"] == "0.8" and version.tags["test/accuracy"] == "0.7"
    assert run_id in version.description and DIGEST in version.description
    assert "val_best/accuracy" in version.description


def test_a_loss_objective_improves_downwards(registry: Registry) -> None:
    register(registry, {"val_best/loss": 0.5}, best_metric="loss")
    second, _, got = register(registry, {"val_best/loss": 0.4}, best_metric="loss")
    assert got == [CANDIDATE, CHAMPION] and aliases(registry)[CHAMPION] == second
    assert beats("val_best/loss", 0.3, 0.4) and beats("val_best/accuracy", 0.9, 0.8)
    assert not beats("val_best/accuracy", 0.8, 0.8)
