"""Working as a team: data and models shared through a DVC remote (a local folder here); runs,
registered models and sweeps on a team MLflow server (PostgreSQL store, proxied artifacts),
real servers on 127.0.0.1 (:mod:`tests.servers`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audioclf.cli import main
from audioclf.testing import (
    HUB_CLASSES,
    HUB_OVERRIDES,
    TINY_TRAIN_OVERRIDES,
    Project,
    dvc,
    encode,
    git,
    make_dvc_repo,
    tone,
)
from tests.servers import (
    MlflowServer,
    Postgres,
    start_mlflow_server,
    start_postgres,
    stop_mlflow_server,
    stop_postgres,
)

MODEL_NAME = "audioclf-intent"  # conf/tracking/mlflow.yaml's registered_model_name
REPRO_LEARNING_RATE = "0.003"  # debug=fast's; the sweep's points differ, so train runs again
SWEEP = "team-grid"


def test_a_fresh_clone_pulls_everything_and_reproduces_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`dvc push` from one clone, `dvc pull` in another: the pipeline is up to date there (no
    stage runs) and the pulled model predicts."""
    project: Project = make_dvc_repo(tmp_path / "alice")
    alice = project.root
    remote = tmp_path / "remote"
    git(alice, "add", "-A")
    git(alice, "commit", "-qm", "pipeline")
    dvc(alice, "repro", timeout=600)
    dvc(alice, "remote", "add", "-d", "shared", str(remote))
    dvc(alice, "push")
    git(alice, "add", "-A")
    git(alice, "commit", "-qm", "results")
    assert any(p.is_file() for p in remote.rglob("*"))

    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(alice), str(bob))
    assert not (bob / "models" / "final").exists()
    dvc(bob, "pull")
    for path in ("data/features", "models/final/model.safetensors"):
        assert (bob / path).exists(), path
    status = dvc(bob, "status")
    assert "changed" not in status, status
    again = dvc(bob, "repro")
    assert "Running stage" not in again, again

    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(tone(440.0, 0.5, seed=3)))
    monkeypatch.chdir(bob)
    assert main(["predict", str(clip), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    labels = predictions[0]["labels"]  # all four classes (top 5 of 4), best first
    assert {label["label"] for label in labels} == set(HUB_CLASSES)
    assert np.isclose(sum(label["score"] for label in labels), 1.0, atol=1e-4)


# --------------------------------------------------------------------------- team MLflow server


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    stop_postgres(server)


@pytest.fixture(scope="module")
def mlflow_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    server = start_mlflow_server(postgres, tmp_path_factory.mktemp("mlflow-server"))
    yield server
    stop_mlflow_server(server)


@pytest.fixture(scope="module")
def team_repo(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose whole pipeline ran (`dvc repro`) with MLFLOW_TRACKING_URI set to the
    team server, results committed: also the baseline of the sweep."""
    repo = make_dvc_repo(tmp_path_factory.mktemp("team") / "repo").root
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pipeline")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        dvc(repo, "repro", timeout=600)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results")
    return repo


def rows(postgres: Postgres, query: str, *args: str) -> list[tuple]:
    """What PostgreSQL itself holds (MLflow's tables), read as the server's role."""
    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute(query, args)
        found = cursor.fetchall()
    connection.close()
    return found


def server_file(server: MlflowServer, artifact_uri: str, path: str) -> Path:
    """Where the server keeps a run's artifact: ``mlflow-artifacts:/EXP/RUN/artifacts`` is
    ``--artifacts-destination``/EXP/RUN/artifacts."""
    return server.artifacts / artifact_uri.removeprefix("mlflow-artifacts:/") / path


def assert_nothing_stored_locally(repo: Path) -> None:
    """No run went to the repository's default sqlite store, from it or an experiment copy."""
    assert not (repo / "mlflow.db").exists()
    assert not (repo / "mlartifacts").exists()
    assert not list((repo / ".dvc" / "tmp").glob("exps/**/mlflow.db"))


def test_a_pipeline_run_and_its_registered_model_land_on_the_team_server(
    team_repo: Path,
    mlflow_server: MlflowServer,
    postgres: Postgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from audioclf.model_store import model_dir_in
    from audioclf.tracking.artifacts import model_digest
    from audioclf.tracking.tags import MODEL_DIGEST_TAG

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    run_file = json.loads((team_repo / "reports" / "mlflow_run.json").read_text())
    assert run_file["tracking_uri"] == mlflow_server.url
    assert_nothing_stored_locally(team_repo)

    client = MlflowClient(mlflow_server.url)
    run = client.get_run(run_file["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == REPRO_LEARNING_RATE
    metrics = json.loads((team_repo / "reports" / "metrics.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.metrics["test/f1_macro"] == pytest.approx(metrics["f1_macro"])

    # Artifacts went through the server (proxied) to its --artifacts-destination, and back.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    for path in ("config/params.yaml", "lineage/dvc.lock", "evaluation/metrics.json"):
        assert server_file(mlflow_server, run.info.artifact_uri, path).is_file(), path
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="evaluation/metrics.json",
        dst_path=str(tmp_path / "fetched"),
        tracking_uri=mlflow_server.url,
    )
    assert json.loads(Path(fetched).read_text()) == metrics

    # The registered version is this run's model: same weights as the workspace's models/final.
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert version.name == MODEL_NAME
    uri = f"models:/{MODEL_NAME}/{version.version}"
    folder = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(tmp_path / "model"), tracking_uri=mlflow_server.url
    )
    digest = model_digest(model_dir_in(Path(folder)))
    assert digest == run.data.tags[MODEL_DIGEST_TAG] == model_digest(team_repo / "models/final")

    # ...and it loads from the server: `audioclf predict --model models:/NAME/VERSION` scores
    # a clip as the workspace's model does.
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(tone(440.0, 0.5, seed=3)))
    monkeypatch.chdir(team_repo)
    scores = {}
    for model in (uri, "models/final"):
        assert main(["predict", str(clip), "--model", model, "--json"]) == 0
        labels = json.loads(capsys.readouterr().out)["predictions"][0]["labels"]
        scores[model] = {label["label"]: label["score"] for label in labels}
    assert set(scores[uri]) == set(HUB_CLASSES)
    assert scores[uri] == pytest.approx(scores["models/final"], abs=1e-6)
    # `audioclf lineage` follows the version to its run and the run's artifacts on the server.
    assert main(["lineage", uri, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run"]["id"] == run.info.run_id
    assert report["run"]["tracking_uri"] == mlflow_server.url
    assert report["dvc_lock"]["source"] == "artifact lineage/dvc.lock"
    assert report["data"] is not None and report["environment"] is not None

    # The rows are in PostgreSQL.
    assert rows(postgres, "SELECT status FROM runs WHERE run_uuid = %s", run.info.run_id) == [
        ("FINISHED",)
    ]
    assert rows(
        postgres,
        "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'test/accuracy'",
        run.info.run_id,
    ) == [(pytest.approx(metrics["accuracy"]),)]
    assert rows(
        postgres,
        "SELECT name, version FROM model_versions WHERE run_id = %s",
        run.info.run_id,
    ) == [(MODEL_NAME, int(version.version))]


def wait_for_queue(repo: Path, timeout: float = 900) -> str:
    """Wait until `dvc queue status` lists no queued or running experiment; its last output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status")
        tasks = status.split("Worker status")[0].split()
        if "Queued" not in tasks and "Running" not in tasks:
            return status
        time.sleep(3)
    raise AssertionError(f"queued experiments still running after {timeout} s:\n{status}")


def failed_logs(repo: Path, status: str) -> str:
    """`dvc queue logs` of each failed task in a `dvc queue status` table, for the message."""
    failed = [line.split()[0] for line in status.splitlines() if "Failed" in line.split()]
    return "\n".join(dvc(repo, "queue", "logs", task, check=False)[-3000:] for task in failed)


def test_a_sweep_run_by_queue_workers_lands_one_run_per_experiment_on_the_team_server(
    team_repo: Path,
    mlflow_server: MlflowServer,
    postgres: Postgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dvc queue start` runs the experiments in background workers, which take the
    environment of the command that started them: MLFLOW_TRACKING_URI reaches every stage."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    # `dvc exp run -S` recomposes params.yaml from conf/: the tiny recipe goes in as overrides.
    recipe = [
        arg for override in (*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES) for arg in ("-S", override)
    ]
    grid = ("-S", "train.learning_rate=0.001,0.002", "-S", f"tracking.sweep={SWEEP}")
    queued = dvc(team_repo, "exp", "run", "--queue", *recipe, *grid)
    assert queued.count("Queued experiment") == 2, queued
    dvc(team_repo, "queue", "start")
    status = wait_for_queue(team_repo)
    dvc(team_repo, "queue", "stop")
    assert status.count("Success") == 2, f"{status}\n{failed_logs(team_repo, status)}"

    # Each experiment's commit names its MLflow run (reports/mlflow_run.json).
    experiments = {}
    for ref in git(team_repo, "for-each-ref", "--format=%(refname)", "refs/exps").split():
        run_file = json.loads(git(team_repo, "show", f"{ref}:reports/mlflow_run.json"))
        metrics = json.loads(git(team_repo, "show", f"{ref}:reports/metrics.json"))
        experiments[run_file["run_id"]] = (ref.rsplit("/", 1)[-1], run_file, metrics)
    assert len(experiments) == 2, experiments
    assert_nothing_stored_locally(team_repo)

    client = MlflowClient(mlflow_server.url)
    experiment_id = client.get_experiment_by_name("audioclf").experiment_id
    runs = client.search_runs([experiment_id], filter_string=f"tags.sweep = '{SWEEP}'")
    assert {run.info.run_id for run in runs} == set(experiments)
    assert {run.data.params["train.learning_rate"] for run in runs} == {"0.001", "0.002"}
    for run in runs:
        name, run_file, metrics = experiments[run.info.run_id]
        assert run.info.status == "FINISHED"
        assert run.info.run_name == run.data.tags["dvc.experiment"] == name
        assert run_file["tracking_uri"] == mlflow_server.url and run_file["sweep"] == SWEEP
        assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        assert server_file(mlflow_server, run.info.artifact_uri, "lineage/dvc.lock").is_file()
        (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        assert version.name == MODEL_NAME

    assert sorted(
        rows(
            postgres,
            "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
            " WHERE t.key = 'sweep' AND t.value = %s",
            SWEEP,
        )
    ) == sorted((run_id, "FINISHED") for run_id in experiments)
