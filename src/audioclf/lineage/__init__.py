"""Audit which code and data produced a model: ``audioclf lineage TARGET [--json] [--verify]``.

TARGET is an MLflow run id (or ``runs:/RUN_ID/...``), a registered model (``models:/NAME/VERSION``,
``models:/NAME@ALIAS``) or a model directory written by the pipeline (found by the sha256 of its
weights, the run tag ``model.sha256``). The chain, read from the MLflow run:

model -> run (params, metrics) -> git commit and DVC experiment -> ``dvc.lock`` (artifact
``lineage/dvc.lock``: each stage's deps and outs with their DVC hashes) -> data manifest
(artifact ``data/manifest.json``: source, revision, counts, the sha256 of every audio item).

``--verify`` hashes what is in the repository now the way DVC does (``dvc_data``), falling back
to the DVC cache for a path missing from the workspace, and re-hashes every audio item of the
raw data (and of a local source) against the manifest.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from audioclf import environment
from audioclf.lineage.collect import collect
from audioclf.lineage.records import Check, LineageError
from audioclf.lineage.render import format_text
from audioclf.lineage.verify import first_failure, verify

__all__ = ["Check", "LineageError", "collect", "first_failure", "format_text", "main", "verify"]


def main(
    target: str,
    *,
    as_json: bool = False,
    check: bool = False,
    repo: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """The ``audioclf lineage`` command. 0: found (and verified); 1: verification failed;
    2: the target cannot be resolved."""
    root = Path(repo).resolve() if repo else None
    try:
        report = collect(target, repo=root, tracking_uri=tracking_uri)
    except LineageError as err:
        print(f"audioclf lineage: error: {err}", file=sys.stderr)
        return 2
    checks = None
    if check:
        where = Path(report["repo"]) if report["repo"] else None
        if where is None:
            print(
                "audioclf lineage: error: --verify needs a DVC repository (--repo)", file=sys.stderr
            )
            return 2
        checks = verify(report, where)
        if report.get("environment"):
            current = environment.describe()
            for difference in environment.differences(report["environment"], current):
                report["warnings"].append(f"today's environment differs: {difference}")
    if as_json:
        if checks is not None:
            report["verify"] = {
                "ok": first_failure(checks) is None,
                "first_failure": first_failure(checks),
                "checks": [asdict(c) for c in checks],
            }
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_text(report, checks))
    if checks is not None and (failure := first_failure(checks)):
        print(f"audioclf lineage: verify failed at {failure}", file=sys.stderr)
        return 1
    return 0
