"""What a GPU machine lacks of the project's dependencies (``scripts/gpu_check.sh --fetch-wheels``).

Read from this environment's installed metadata, where the project is installed and PyPI is
reachable; the GPU machine then installs the wheels with no index.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Never shipped as wheels to a GPU machine: its own CUDA build of torch is what is measured.
GPU_STACK_PREFIXES = ("torch", "triton", "nvidia-")


def missing_requirements(present: set[str], distribution: str = "audioclf") -> list[str]:
    """``name==version`` of every distribution ``distribution`` needs, as installed here,
    that ``present`` lacks (names as a GPU machine's ``pip list`` gives them), and never the
    GPU stack. Transitively, from the installed metadata."""
    have = {canonicalize_name(n) for n in present}
    found: dict[str, str] = {}
    todo = [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as err:
            raise RuntimeError(f"{name} is needed but not installed in {sys.prefix}") from err
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(
        f"{name}=={version}"
        for name, version in found.items()
        if name != canonicalize_name(distribution)
        and name not in have
        and not name.startswith(GPU_STACK_PREFIXES)
    )


def read_present(path: Path) -> set[str]:
    """Package names from ``pip list``/``pip freeze`` output or a comma/line separated list."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RuntimeError(f"cannot read the package list {path}: {err}") from err
    names = set()
    for item in re.split(r"[,\n]", text):
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", item)
        if match and match.group(1).lower() not in ("package", "name"):
            names.add(match.group(1))
    return names
