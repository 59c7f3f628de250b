"""Disk: outputs share their bytes with the DVC cache, safely (a real ``dvc repro``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from audioclf.testing import Project, dvc, make_dvc_repo


def cache_files(root: Path) -> list[Path]:
    return [p for p in (root / ".dvc" / "cache" / "files" / "md5").rglob("*") if p.is_file()]


def intact(path: Path) -> bool:
    """A DVC cache file's name is the MD5 of its bytes (directory listings end in .dir)."""
    name = path.parent.name + path.name.removesuffix(".dir")
    return hashlib.md5(path.read_bytes()).hexdigest() == name


def test_outputs_are_hard_links_into_the_cache_and_reruns_leave_it_intact(
    tmp_path: Path,
) -> None:
    """The repository's cache link type: no second copy of an output in .dvc/cache; a stage
    replaces its outputs instead of writing into them, so a rerun never edits cached bytes."""
    project: Project = make_dvc_repo(tmp_path / "repo")
    root = project.root
    assert "hardlink" in dvc(root, "config", "cache.type")
    dvc(root, "repro", "featurize")
    arrow = sorted((root / "data" / "resampled").rglob("*.arrow"))
    assert arrow and all(p.stat().st_nlink == 2 for p in arrow)
    before = {p: p.read_bytes() for p in cache_files(root)}
    assert before and all(intact(p) for p in before)

    project.write_params(*project.overrides, "audio.storage_dtype=float32")
    dvc(root, "repro", "featurize")
    for path, content in before.items():
        assert path.read_bytes() == content, path  # earlier results still checkout-able
    assert all(intact(p) for p in cache_files(root))
    assert "changed" not in dvc(root, "status", "featurize")
    dvc(root, "checkout", "--relink", "featurize")
    assert all(intact(p) for p in cache_files(root))
