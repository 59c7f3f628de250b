"""Which stages an edit makes stale: the table a reader checks before touching a module.

``dvc repro`` reruns a stage when one of its deps changes; the deps are the code each stage
imports (``tests/test_stage_deps.py`` checks they cover it). This table says the converse:
editing one file of each module makes exactly these stages stale, so an edit to the model
reruns no data stage and an edit to serving or predict reruns no training. It is checked with
``dvc status`` on a throwaway copy of the working tree, one edit at a time.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dvc.repo import Repo

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "src" / "audioclf"
ALL = frozenset({"download", "resample", "featurize", "train", "evaluate"})
MODEL = frozenset({"train", "evaluate"})
NONE: frozenset[str] = frozenset()

STALE_AFTER_EDIT: dict[str, frozenset[str]] = {
    "__init__.py": ALL,
    "config.py": ALL,
    "stages/__init__.py": ALL,
    "stages/download.py": {"download"},
    "stages/resample.py": {"resample"},
    "stages/featurize.py": {"featurize"},
    "stages/train.py": {"train"},
    "launch.py": {"train"},
    "stages/evaluate.py": {"evaluate"},
    "data/__init__.py": ALL,
    "data/columns.py": {"download", "resample", "featurize", "evaluate"},
    "data/sources.py": {"download"},
    "data/split.py": {"download"},
    "data/manifest.py": {"download"},
    "data/validate.py": {"download"},
    "data/audio.py": ALL,
    "data/store.py": ALL,
    "data/features.py": {"featurize", "train"},
    "models/__init__.py": {"featurize", "train", "evaluate"},
    "models/extractor.py": {"featurize", "train"},
    "models/build.py": {"train"},
    "models/logmel_cnn.py": MODEL,
    "models/saved.py": MODEL,
    "training/__init__.py": {"train"},
    "training/loop.py": {"train"},
    "training/data.py": {"train"},
    "training/checkpoints.py": {"train"},
    "training/report.py": {"train"},
    "metrics/__init__.py": MODEL,
    "threads.py": MODEL,
    "devices.py": MODEL,
    "environment.py": {"train"},
    "dvc_stages.py": MODEL,
    "classifier.py": {"evaluate"},
    "windows.py": {"evaluate"},
    "evaluation.py": {"evaluate"},
    "serving.py": {"evaluate"},
    "model_store.py": {"evaluate"},
    "tracking/__init__.py": MODEL,
    "tracking/store.py": MODEL,
    "tracking/params.py": MODEL,
    "tracking/train_run.py": {"train"},
    "tracking/tags.py": MODEL,
    "tracking/artifacts.py": MODEL,
    "tracking/outcome.py": MODEL,
    "tracking/system_metrics.py": MODEL,
    "predict.py": NONE,
    "cli.py": NONE,
    "testing.py": NONE,
    "metrics/accuracy/accuracy.py": MODEL,
    "metrics/precision_recall_f1/precision_recall_f1.py": MODEL,
    "lineage/__init__.py": NONE,
    "lineage/collect.py": NONE,
    "lineage/records.py": NONE,
    "lineage/render.py": NONE,
    "lineage/resolve.py": NONE,
    "lineage/verify.py": NONE,
}


def working_tree_copy(destination: Path) -> Path:
    """The files git would commit now (tracked or not ignored), in a repository of their own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


def stale_stages(status: dict[str, list], edited: str) -> set[str]:
    """Stages whose changed deps include the edited file, itself or a directory above it."""
    edited_path = Path(edited)
    return {
        stage
        for stage, entries in status.items()
        for entry in entries
        if isinstance(entry, dict)
        for dep in entry.get("changed deps", {})
        if edited_path == Path(dep) or Path(dep) in edited_path.parents
    }


def test_the_table_names_every_module_of_the_package() -> None:
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert set(STALE_AFTER_EDIT) <= modules, set(STALE_AFTER_EDIT) - modules
    unlisted = sorted(modules - set(STALE_AFTER_EDIT))
    assert not unlisted, f"add each new module to STALE_AFTER_EDIT: {unlisted}"


@pytest.mark.slow
def test_editing_a_module_makes_exactly_its_stages_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = working_tree_copy(tmp_path / "repo")
    monkeypatch.chdir(copy)  # DVC names stages relative to the working directory
    wrong = {}
    with Repo(str(copy)) as repo:
        for module, expected in STALE_AFTER_EDIT.items():
            edited = f"src/audioclf/{module}"
            file = copy / edited
            original = file.read_bytes()
            file.write_bytes(original + b"\n# an edit\n")
            try:
                got = stale_stages(repo.status(), edited)
            finally:
                file.write_bytes(original)
            if got != set(expected):
                wrong[module] = {"expected": sorted(expected), "stale": sorted(got)}
    assert not wrong, f"edits that make other stages stale than the table says: {wrong}"
