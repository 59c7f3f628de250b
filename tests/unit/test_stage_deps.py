"""dvc.yaml's stage deps cover all project code each stage executes.

DVC reruns a stage only when a dep changes: a module a stage imports but does not list would
let ``dvc repro`` serve stale outputs after that module changed. The import closure of each
stage module within the package is derived from the source (every ``import``, also those inside
functions, and the packages' ``__init__`` modules that importing runs) and compared with the
stage's deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from audioclf.testing import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = "audioclf"


def module_file(name: str) -> Path | None:
    """The source file of a module of the package, or None when it is not one."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(file: Path, name: str) -> set[str]:
    """Package modules ``file`` (module ``name``) imports, anywhere in it."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] == PACKAGE and module_file(m)}


def with_parents(name: str) -> set[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def import_closure(name: str) -> set[Path]:
    seen: set[str] = set()
    todo = with_parents(name)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for found in imported_modules(module_file(module), module):
            todo |= with_parents(found) - seen
    return {module_file(m).relative_to(REPO_ROOT) for m in seen}


def stage_deps() -> dict[str, list[str]]:
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return {name: stage.get("deps", []) for name, stage in spec["stages"].items()}


def stage_module(stage: str) -> str:
    """The module a stage's ``cmd`` runs (``python -m audioclf.launch``: train's launcher)."""
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return spec["stages"][stage]["cmd"].split(" -m ", 1)[1].split()[0]


def covered(file: Path, deps: list[str]) -> bool:
    return any(file == Path(dep) or Path(dep) in file.parents for dep in deps)


@pytest.mark.parametrize("stage", list(stage_deps()))
def test_stage_deps_cover_every_module_the_stage_imports(stage: str) -> None:
    deps = stage_deps()[stage]
    closure = import_closure(stage_module(stage))
    missing = sorted(str(f) for f in closure if not covered(f, deps))
    assert not missing, f"dvc.yaml stage '{stage}' runs {missing} but does not list them in deps"


# Loaded by path at run time (evaluate.load of the local metric modules), not imported.
LOADED_BY_PATH = ("src/audioclf/metrics",)


@pytest.mark.parametrize("stage", list(stage_deps()))
def test_stage_deps_list_only_code_the_stage_runs(stage: str) -> None:
    """A dep the stage never runs would rerun it after edits that cannot change its outputs."""
    closure = import_closure(stage_module(stage))
    extra = []
    for dep in stage_deps()[stage]:
        if not dep.startswith("src/") or dep in LOADED_BY_PATH:
            continue
        path = REPO_ROOT / dep
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        extra += [
            str(f.relative_to(REPO_ROOT)) for f in files if f.relative_to(REPO_ROOT) not in closure
        ]
    assert not extra, f"dvc.yaml stage '{stage}' lists {extra}, which it does not run"


def test_the_closure_follows_imports_inside_functions_and_package_inits() -> None:
    closure = {str(p) for p in import_closure(f"{PACKAGE}.stages.evaluate")}
    assert "src/audioclf/__init__.py" in closure
    assert "src/audioclf/evaluation.py" in closure
    assert "src/audioclf/classifier.py" in closure


def test_code_deps_name_existing_files() -> None:
    for stage, deps in stage_deps().items():
        for dep in deps:
            if dep.startswith("src/"):
                assert (REPO_ROOT / dep).exists(), f"dvc.yaml stage '{stage}': {dep} not found"


def test_the_package_has_no_import_circle() -> None:
    """Layers import downwards only: no module reaches itself through its imports (imports
    inside functions count too)."""
    modules = {
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in (SRC / PACKAGE).rglob("*.py")
    }
    graph = {m: imported_modules(module_file(m), m) - {m} for m in modules}
    circles = []
    for start in sorted(graph):
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module == start:
                circles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())
    assert not circles, f"modules that import themselves through others: {circles}"


def test_the_stage_list_is_read_from_dvc_yaml(tmp_path: Path) -> None:
    from audioclf.dvc_stages import data_stages, stage_names

    assert stage_names(REPO_ROOT) == tuple(stage_deps())
    assert data_stages(REPO_ROOT) == ("download", "resample", "featurize")
    assert stage_names(tmp_path) == () == data_stages(tmp_path)  # no dvc.yaml: stages by hand
