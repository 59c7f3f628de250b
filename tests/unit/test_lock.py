"""The committed dvc.lock describes the committed code: no stage's code, params or command
changed since the last ``make repro``.

A commit that edits a module a stage runs, without rerunning the pipeline, leaves every clone
with a lock that claims outputs the code no longer makes: ``dvc status`` lists the stage as
changed and ``dvc repro`` reruns it. This test fails such a commit in CI, without training: it
asks DVC itself (its own hashing, its own reading of dvc.yaml and params.yaml) which stages'
deps differ, and counts only the code deps and params, not the data outputs a fresh clone
lacks.
"""

from __future__ import annotations

from dvc.repo import Repo

from audioclf.testing import REPO_ROOT

CODE = "src/"


def drift(status: dict[str, list]) -> dict[str, list[str]]:
    """Per stage, what differs from dvc.lock in code deps, params or command."""
    found: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                found.setdefault(stage, []).append(entry)
                continue
            for path, change in entry.get("changed deps", {}).items():
                if path.startswith(CODE):
                    found.setdefault(stage, []).append(f"{change}: {path}")
            for name, change in entry.get("changed params", {}).items():
                found.setdefault(stage, []).append(f"param {change}: {name}")
    return found


def test_dvc_lock_matches_the_code_and_params() -> None:
    with Repo(str(REPO_ROOT)) as repo:
        status = repo.status()
    stale = drift(status)
    assert not stale, (
        f"dvc.lock does not describe the code: {stale}. "
        "Run `make repro` and commit dvc.lock with the code."
    )


def test_drift_counts_code_params_and_commands_but_not_missing_data() -> None:
    status = {
        "resample": [
            {"changed deps": {"data/raw": "deleted", "src/audioclf/data/audio.py": "modified"}},
            {"changed outs": {"data/resampled": "not in cache"}},
        ],
        "train": [{"changed params": {"train.epochs": "modified"}}, "changed command"],
        "download": [{"changed outs": {"data/raw": "not in cache"}}],
    }
    assert drift(status) == {
        "resample": ["modified: src/audioclf/data/audio.py"],
        "train": ["param modified: train.epochs", "changed command"],
    }
