"""Is what a run names intact: the workspace, the DVC cache, the run's commits, audio items.

The one place that uses ``dvc_data``'s hashing internals (pyproject bounds dvc-data below 4;
tests/system/test_lineage.py and tests/system/test_sweep.py check it).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from dvc.repo import Repo
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db.local import LocalHashFileDB
from dvc_data.hashfile.hash import hash_file
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.tree import Tree
from omegaconf import OmegaConf

from audioclf.data.sources import load_source
from audioclf.lineage.records import Check


class _DvcHasher:
    """Hash paths exactly as DVC does, without its hash cache (a fresh re-hash), wherever a
    run's version may be: the workspace, the DVC cache, or the git commits that hold the run's
    code (its DVC experiment's commit, the commit it ran from)."""

    def __init__(
        self, repo: Path, revs: list[tuple[str, str]] = (), scratch: set[str] = frozenset()
    ) -> None:
        self.root = repo
        self.repo = Repo(str(repo))
        self.revs = list(revs)
        self._at: dict[str, Any] = {}
        persistent = {o.def_path for o in self.repo.index.outs if o.persist and not o.use_cache}
        self.scratch = set(scratch) | persistent

    def close(self) -> None:
        self.repo.close()
        for repo in self._at.values():
            repo.close()

    def _odb(self, hash_name: str) -> Any:
        cache = self.repo.cache.local if hash_name == "md5" else self.repo.cache.legacy
        return LocalHashFileDB(cache.fs, cache.path, hash_name=hash_name)

    def _hash(self, odb: Any, repo: Any, rel: str, hash_name: str) -> Any | None:
        path = repo.fs.join(repo.root_dir, rel)
        if not repo.fs.exists(path):
            return None
        _, _, obj = build(odb, path, repo.fs, hash_name, dry_run=True, ignore=repo.dvcignore)
        return obj

    def _at_rev(self, rev: str) -> Any:
        if rev not in self._at:
            self._at[rev] = Repo(str(self.root), rev=rev)
        return self._at[rev]

    def check(self, stage: str, kind: str, entry: dict[str, Any]) -> Check:
        """Where the locked version of ``entry`` is intact: workspace, DVC cache or git."""
        rel, expected = entry["path"], entry["md5"]
        hash_name = entry.get("hash") or "md5-dos2unix"
        odb = self._odb(hash_name)
        obj = self._hash(odb, self.repo, rel, hash_name)
        if obj is not None and obj.hash_info.value == expected:
            return Check(stage, kind, rel, "ok", "intact in the workspace")
        workspace = "not in the workspace" if obj is None else "the workspace holds another version"
        problem = self._cache_problem(odb, expected)
        if problem is None:
            return Check(stage, kind, rel, "in cache", f"intact in the DVC cache; {workspace}")
        for rev, label in self.revs:
            try:
                old = self._hash(odb, self._at_rev(rev), rel, hash_name)
            except Exception:
                old = None
            if old is not None and old.hash_info.value == expected:
                return Check(stage, kind, rel, "in git", f"intact in {label}; {workspace}")
        if rel in self.scratch:
            detail = "kept for resuming (persist, cache: false): not part of the result"
            return Check(stage, kind, rel, "skipped", f"{detail}; {workspace}")
        places = ", ".join(["the DVC cache", *(label for _, label in self.revs)])
        bad = problem.partition(": ")[2]
        files = [f"{rel}/{bad}"] if bad else []
        if obj is None:
            detail = f"not in the workspace; not intact in {places}: {problem}"
            return Check(stage, kind, rel, "missing", detail, files)
        if expected.endswith(".dir"):
            changed = [f"{rel}/{f}" for f in self._changed_files(odb, expected, obj)]
            files = changed + [f for f in files if f not in changed]
        detail = f"dvc.lock md5 {expected}, workspace {obj.hash_info.value}; "
        detail += f"not intact in {places}: {problem}"
        return Check(stage, kind, rel, "changed", detail, files or [rel])

    def _changed_files(self, odb: Any, expected: str, tree: Any) -> list[str]:
        """Files of a directory whose hash differs from the locked tree's (from the cache)."""
        try:
            old = Tree.load(odb, HashInfo(odb.hash_name, expected))
        except Exception:
            return []
        before = {"/".join(k): hi.value for k, _, hi in old}
        now = {"/".join(k): hi.value for k, _, hi in tree}
        return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))

    @staticmethod
    def _cache_problem(odb: Any, oid: str) -> str | None:
        """None when the object (and, for a directory, every file in it) is in the cache and
        hashes to its name; else what is wrong. The cache is only read, never repaired."""

        def intact(value: str) -> bool:
            obj = odb.get(value)
            if not odb.fs.exists(obj.path):
                return False
            _, actual = hash_file(obj.path, odb.fs, odb.hash_name)
            return actual.value.split(".")[0] == value.split(".")[0]

        if not intact(oid):
            return "not in the DVC cache (or corrupted there)"
        if oid.endswith(".dir"):
            tree = Tree.load(odb, HashInfo(odb.hash_name, oid))
            bad = ["/".join(k) for k, _, hi in tree if not intact(hi.value)]
            if bad:
                return f"{len(bad)} file(s) missing or corrupted in the DVC cache: {bad[0]}"
        return None


def _pairs(items: list[dict[str, Any]], *keys: str) -> Counter:
    return Counter(tuple(item[k] for k in keys) for item in items)


def _item_checks(
    stage: str, kind: str, where: str, expected: Counter, actual: Counter
) -> list[Check]:
    """One check per audio item whose sha256 is not the manifest's, or one ``ok`` check."""
    lost = expected - actual
    if not lost:
        return [Check(stage, kind, where, "ok", f"{sum(expected.values())} items match")]
    now = {key[:-1]: key[-1] for key in actual}
    checks = []
    for key in sorted(lost):
        name, sha = "/".join(str(k) for k in key[:-1]), key[-1]
        found = now.get(key[:-1])
        detail = (
            f"sha256 {found or '(no bytes)'}, manifest {sha}" if key[:-1] in now else "not found"
        )
        checks.append(Check(stage, kind, f"{where}: {name}", "changed", detail))
    return checks


def _raw_item_checks(report: dict, repo: Path) -> list[Check]:
    manifest = report["data"]
    raw = report["run"]["params"].get("paths.raw", "data/raw")
    if not (repo / raw / "dataset_dict.json").is_file():
        return [Check("download", "raw item", raw, "skipped", "not in the workspace")]
    try:
        splits = datasets.load_from_disk(str(repo / raw))
        actual: Counter = Counter()
        for split, ds in splits.items():
            audio = ds.select_columns(["path", "audio"]).cast_column(
                "audio", datasets.Audio(decode=False)
            )
            for row in audio:
                data = row["audio"]["bytes"] or b""
                actual[(split, row["path"], hashlib.sha256(data).hexdigest())] += 1
    except Exception as err:
        return [Check("download", "raw item", raw, "unreadable", f"{type(err).__name__}: {err}")]
    expected = _pairs(manifest["items"], "split", "path", "sha256")
    return _item_checks("download", "raw item", raw, expected, actual)


def _source_item_checks(report: dict, repo: Path) -> list[Check]:
    manifest = report["data"]
    data_cfg = (report.get("config") or {}).get("data")
    if data_cfg is None:
        return [Check("download", "source item", manifest["path"], "skipped", "no logged config")]
    local = repo / str(data_cfg["path"])
    if not local.exists():
        detail = f"remote source, pinned at revision {manifest.get('revision')}; not downloaded"
        return [Check("download", "source item", data_cfg["path"], "skipped", detail)]
    data = OmegaConf.create({**data_cfg, "path": str(local)})
    try:
        ds = load_source(data).cast_column("audio", datasets.Audio(decode=False))
        actual = Counter(
            (row["path"], hashlib.sha256(row["audio"]["bytes"] or b"").hexdigest())
            for row in ds.select_columns(["path", "audio"])
        )
    except Exception as err:
        detail = f"cannot load it: {type(err).__name__}: {str(err)[:300]}"
        return [Check("download", "source item", data_cfg["path"], "unreadable", detail)]
    expected = _pairs(manifest["items"], "path", "sha256")
    return _item_checks("download", "source item", str(data_cfg["path"]), expected, actual)


def _revs(report: dict) -> list[tuple[str, str]]:
    """The commits that hold the run's code: its DVC experiment's, then the one it ran from."""
    revs = []
    exp = report.get("dvc_experiment") or {}
    if exp.get("commit"):
        revs.append((exp["commit"], f"DVC experiment {exp['name']} ({exp['commit'][:7]})"))
    commit = report["code"].get("git_commit")
    if commit and commit != "unknown":
        revs.append((commit, f"git commit {commit[:7]}"))
    return revs


def verify(report: dict, repo: Path) -> list[Check]:
    """Check every locked dep and out (pipeline order), then every audio item.

    A path is verified where the run's version is intact: the workspace, else the DVC cache,
    else the run's commits (without checking anything out). Audio items are re-hashed in the
    workspace when the data there is the run's, or nowhere else is.
    """
    stages = report["dvc_lock"]["stages"]
    # Resume state: an output of runs locked before it left dvc.yaml's outs, never kept.
    scratch = {report["run"]["params"].get("paths.checkpoints", "models/checkpoints")}
    hasher = _DvcHasher(repo, _revs(report), scratch)
    checks: list[Check] = []
    seen: set[tuple[str, str]] = set()
    try:
        for stage, entry in stages.items():
            for kind in ("deps", "outs"):
                for item in entry.get(kind) or []:
                    key = (item.get("path"), item.get("md5"))
                    if not all(key) or key in seen:
                        continue
                    seen.add(key)
                    checks.append(hasher.check(stage, kind[:-1], item))
    finally:
        hasher.close()
    if report.get("data"):
        datasets.disable_progress_bars()
        elsewhere = {c.path: c.detail for c in checks if c.status in ("in cache", "in git")}
        raw = report["run"]["params"].get("paths.raw", "data/raw")
        source = str(((report.get("config") or {}).get("data") or {}).get("tracked_path"))
        items = []
        for path, kind, item_checks in (
            (source, "source item", _source_item_checks),
            (raw, "raw item", _raw_item_checks),
        ):
            if path in elsewhere:
                items.append(Check("download", kind, path, "skipped", elsewhere[path]))
            else:
                items += item_checks(report, repo)
        # Item checks go right after the download stage's paths: they name the audio file.
        after = max((i + 1 for i, c in enumerate(checks) if c.stage == "download"), default=0)
        checks[after:after] = items
    return checks


def first_failure(checks: list[Check]) -> str | None:
    """A one-line reason naming the first mismatching stage and file, and the audio items."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return None
    first = bad[0]
    where = first.files[0] if first.files else first.path
    line = f"stage '{first.stage}' {first.kind} {where}: {first.status} ({first.detail})"
    items = [c.path for c in bad if c.kind.endswith("item") and c is not first]
    if items:
        line += f"; audio items not matching the manifest: {', '.join(items[:10])}"
    return line
