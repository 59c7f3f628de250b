"""Fixtures: an offline environment, tiny generated datasets, throwaway project directories;
and the layers: every test under tests/system/ is marked ``slow``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# huggingface_hub and datasets read these once, when they are first imported, so they are set
# here, before any test module imports them (the autouse fixture below sets them again for
# subprocesses). The Hugging Face cache goes to a throwaway directory for the session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
HF_HOME = tempfile.mkdtemp(prefix="audioclf-tests-hf-")
os.environ["HF_HOME"] = HF_HOME
os.environ["DVC_NO_ANALYTICS"] = "1"
SESSION_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")

from audioclf.testing import (  # noqa: E402  (after the environment above)
    FOLDER_DIR,
    FOLDER_OVERRIDES,
    HUB_DIR,
    HUB_OVERRIDES,
    TINY_TRAIN_OVERRIDES,
    Project,
    folder_items,
    hub_rows,
    make_project,
    run_data_stages,
    write_audiofolder,
    write_hub_repo,
)

SYSTEM_TESTS = Path(__file__).resolve().parent / "system"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole pipelines, DVC queues, servers and many processes (tests/system/) take seconds to
    minutes each: the folder is the ``slow`` marker, which ``make test-fast`` leaves out."""
    for item in items:
        if SYSTEM_TESTS in item.path.resolve().parents:
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(HF_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network, and no datasets cache files written next to stage inputs or outputs."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", HF_HOME)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    import datasets

    was_enabled = datasets.is_caching_enabled()
    datasets.disable_caching()  # what run_stage does for the CLI stages
    yield
    if was_enabled:
        datasets.enable_caching()


@pytest.fixture(autouse=True)
def _mlflow_uri_isolation() -> Iterator[None]:
    """Stages run in-process point MLflow at their store process-wide (``set_tracking_uri`` also
    exports ``MLFLOW_TRACKING_URI``); later tests and their subprocesses (a queued sweep's
    ``dvc exp run``) must not inherit it: each test ends with the session's own setting."""
    import mlflow

    from audioclf.tracking.store import restore_tracking_uri

    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    restore_tracking_uri(SESSION_TRACKING_URI)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """An empty project (conf/ only), which is the current directory."""
    proj = make_project(tmp_path / "project")
    monkeypatch.chdir(proj.root)
    return proj


@pytest.fixture
def hub_project(project: Project) -> Project:
    """A project whose data.path is a tiny Hub-layout replica (4 classes x 6 speakers x 2)."""
    write_hub_repo(project.root / HUB_DIR, hub_rows())
    project.write_params(*HUB_OVERRIDES)
    return project


@pytest.fixture
def folder_project(project: Project) -> Project:
    """A project whose data is a tiny audiofolder (3 classes x 6 speakers, WAV/FLAC/OGG)."""
    write_audiofolder(project.root / FOLDER_DIR, folder_items())
    project.write_params(*FOLDER_OVERRIDES)
    return project


@pytest.fixture
def trained_project(project: Project) -> Project:
    """The tiny Hub-layout project on the fast recipe (``debug=fast``) with its data stages
    run: ready for the train stage."""
    write_hub_repo(project.root / HUB_DIR, hub_rows())
    project.write_params(*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES)
    run_data_stages()
    return project
