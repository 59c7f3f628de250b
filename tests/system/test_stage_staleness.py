"""Editing one file of each module makes exactly the stages of tests/stale_after_edit.py stale,
by ``dvc status`` on a throwaway copy of the working tree, one edit at a time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dvc.repo import Repo

from audioclf.testing import REPO_ROOT
from tests.stale_after_edit import STALE_AFTER_EDIT


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
