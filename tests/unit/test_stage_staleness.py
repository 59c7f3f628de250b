"""The table of which stages an edit makes stale (tests/stale_after_edit.py) names every module
of the package: a new module gets its row when it is added."""

from __future__ import annotations

from audioclf.testing import REPO_ROOT
from tests.stale_after_edit import STALE_AFTER_EDIT

PACKAGE = REPO_ROOT / "src" / "audioclf"


def test_the_table_names_every_module_of_the_package() -> None:
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert set(STALE_AFTER_EDIT) <= modules, set(STALE_AFTER_EDIT) - modules
    unlisted = sorted(modules - set(STALE_AFTER_EDIT))
    assert not unlisted, f"add each new module to tests/stale_after_edit.py: {unlisted}"
