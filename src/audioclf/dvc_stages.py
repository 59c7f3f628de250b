"""The pipeline's stages as ``dvc.yaml`` declares them: the one list that code reads.

``dvc.yaml`` is the table of contents; nothing else lists the stages, so adding or renaming one
is a change in one place.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from audioclf.config import user_repo_root

DVC_FILE = "dvc.yaml"
MODEL_STAGE = "train"


def stage_names(root: Path | None = None) -> tuple[str, ...]:
    """The stages of ``root/dvc.yaml`` in pipeline order (``root``: the user's repository);
    none where there is no ``dvc.yaml`` (stages run by hand in a plain directory)."""
    path = (root or user_repo_root()) / DVC_FILE
    if not path.is_file():
        return ()
    return tuple((yaml.safe_load(path.read_text()) or {}).get("stages") or {})


def data_stages(root: Path | None = None) -> tuple[str, ...]:
    """The stages before the one that trains the model: those that make the data."""
    names = stage_names(root)
    return names[: names.index(MODEL_STAGE)] if MODEL_STAGE in names else names
