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

import hashlib
import json
import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audioclf import environment, tracking

PIPELINE = ("download", "resample", "featurize", "train", "evaluate")
RUN_TAGS = ("git.", "dvc.", "data.", "accelerate.", tracking.SWEEP_TAG, tracking.MODEL_DIGEST_TAG)


class LineageError(RuntimeError):
    """The target cannot be resolved to an MLflow run, or the run lacks what an audit needs."""


@dataclass
class Check:
    """One verified path or audio item. ``status`` says where the run's version is intact:
    ``ok`` (the workspace), ``in cache`` (the DVC cache), ``in git`` (the run's experiment or
    commit); or a failure: ``changed``, ``missing``, ``unreadable``."""

    stage: str
    kind: str  # dep, out, source item, raw item
    path: str
    status: str
    detail: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "in cache", "in git", "skipped")


# --------------------------------------------------------------------------- resolving


def find_repo(start: Path) -> Path | None:
    """The DVC repository containing ``start`` (a directory with ``.dvc/``), if any."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    # Explicit URIs: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI to the process.
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _all_experiment_ids(client: Any) -> list[str]:
    from mlflow.entities import ViewType

    return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]


def _run_file(repo: Path | None) -> dict[str, Any]:
    if repo is None:
        return {}
    try:
        from audioclf.config import load_params

        path = repo / load_params(root=repo).paths.run
        return json.loads(path.read_text()) if path.is_file() else {}
    except Exception:
        return {}


def resolve(target: str, client: Any, repo: Path | None) -> tuple[str, dict[str, Any]]:
    """The run id behind ``target`` and what the target is."""
    from mlflow.exceptions import MlflowException

    try:
        if target.startswith("models:/"):
            return _resolve_model_uri(target, client)
        if target.startswith("runs:/"):
            run_id = target[len("runs:/") :].split("/", 1)[0]
            return run_id, {"kind": "run", "uri": target}
        if Path(target).is_dir():
            return _resolve_model_dir(Path(target), client, repo)
        client.get_run(target)
        return target, {"kind": "run"}
    except MlflowException as err:
        raise LineageError(f"{target}: {err.message}") from err


def _resolve_model_uri(uri: str, client: Any) -> tuple[str, dict[str, Any]]:
    ref = uri[len("models:/") :].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in ref:
        name, number = ref.split("/", 1)
        version = client.get_model_version(name, number)
    else:  # an MLflow 3 logged model id, models:/m-...
        logged = client.get_logged_model(ref)
        if not logged.source_run_id:
            raise LineageError(f"{uri}: the logged model has no source run")
        return logged.source_run_id, {"kind": "logged model", "uri": uri, "model_id": ref}
    run_id = version.run_id
    if not run_id and getattr(version, "model_id", None):
        run_id = client.get_logged_model(version.model_id).source_run_id
    if not run_id:
        raise LineageError(f"{uri}: version {version.version} has no source run")
    info = {
        "kind": "registered model",
        "uri": uri,
        "name": version.name,
        "version": str(version.version),
        "aliases": list(getattr(version, "aliases", []) or []),
        "source": version.source,
        "model_id": getattr(version, "model_id", None),
    }
    return run_id, info


def _resolve_model_dir(path: Path, client: Any, repo: Path | None) -> tuple[str, dict[str, Any]]:
    """A model directory is found by its weights: the run tag ``model.sha256`` names them."""
    try:
        digest = tracking.model_digest(path)
    except FileNotFoundError as err:
        raise LineageError(f"{path} is not a model directory: {err}") from err
    info: dict[str, Any] = {"kind": "model directory", "path": str(path), "sha256": digest}
    runs = client.search_runs(
        _all_experiment_ids(client),
        filter_string=f"tags.`{tracking.MODEL_DIGEST_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
    )
    ids = [r.info.run_id for r in runs]
    if not ids:
        raise LineageError(
            f"no MLflow run in this store logged a model with the weights of {path} "
            f"(sha256 {digest[:16]}...): is it the right store (--tracking-uri)?"
        )
    preferred = _run_file(find_repo(path) or repo).get("run_id")
    run_id = preferred if preferred in ids else ids[0]
    if len(ids) > 1:  # identical training runs give identical weights
        info["also_matching_runs"] = [i for i in ids if i != run_id]
    return run_id, info


# --------------------------------------------------------------------------- collecting


def _download_text(client: Any, run_id: str, artifact: str) -> str | None:
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    was = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"  # no bars on stderr
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, artifact, tmp)
            return Path(local).read_text(encoding="utf-8")
    except Exception:
        return None
    finally:
        if was is None:
            del os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name]
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = was


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys with string values, as :func:`tracking.flat_params` logs them."""
    if isinstance(node, dict):
        flat: dict[str, str] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else str(node)}


def _lock_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    """Older runs: the ``dvc.<stage>.<path>`` tags hold each locked output's md5."""
    stages: dict[str, Any] = {}
    for key, value in tags.items():
        stage, _, path = key[len("dvc.") :].partition(".")
        if key.startswith("dvc.") and stage in PIPELINE and path:
            stages.setdefault(stage, {"outs": []})["outs"].append({"path": path, "md5": value})
    return stages


def _experiment_commit(repo: Path | None, name: str, baseline: str | None) -> str | None:
    """The commit of DVC experiment ``name`` (``refs/exps/<baseline>/<name>``) in ``repo``."""
    if repo is None:
        return None
    try:
        out = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        parts = ref.split("/")
        if parts[-1] == name and (not baseline or "".join(parts[2:-1]) == baseline):
            return sha
    return None


def _git_show(repo: Path, rev: str, path: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def collect(target: str, *, repo: Path | None = None, tracking_uri: str | None = None) -> dict:
    """The whole chain behind ``target``, as a JSON-serialisable dict."""
    repo = repo or find_repo(Path(target) if Path(target).is_dir() else Path.cwd())
    uri = tracking_uri or _default_uri(repo)
    client = _client(uri)
    run_id, model = resolve(target, client, repo)
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise LineageError(f"run {run_id}: {err.message}") from err
    tags = run.data.tags
    experiment = client.get_experiment(run.info.experiment_id)
    warnings: list[str] = []

    if model["kind"] == "run":
        model["logged_models"] = [
            m.model_id for m in _search_logged_models(client, run.info.experiment_id, run_id)
        ]

    lock_text = _download_text(client, run_id, tracking.LOCK_ARTIFACT)
    if lock_text is not None:
        lock = {"source": f"artifact {tracking.LOCK_ARTIFACT}", **_lock_summary(lock_text)}
    else:
        lock = {"source": "run tags dvc.<stage>.<path>", "stages": _lock_from_tags(tags)}
        warnings.append("the run has no dvc.lock artifact: only output hashes from its tags")
    manifest_text = _download_text(client, run_id, "data/manifest.json")
    manifest = json.loads(manifest_text) if manifest_text else None
    if manifest is None:
        warnings.append("the run has no data/manifest.json artifact")
    config_text = _download_text(client, run_id, tracking.CONFIG_ARTIFACT)
    environment_text = _download_text(client, run_id, tracking.ENVIRONMENT_ARTIFACT)
    if environment_text is None:
        warnings.append("the run records no environment (environment/environment.json)")

    warnings += _consistency(lock, run.data.params, manifest_text)
    if model.get("sha256") and tags.get(tracking.MODEL_DIGEST_TAG) != model["sha256"]:
        warnings.append("the model directory's weights differ from the run's model.sha256")

    exp_name = tags.get("dvc.experiment")
    dvc_exp = None
    if exp_name:
        commit = _experiment_commit(repo, exp_name, tags.get("dvc.baseline_rev"))
        dvc_exp = {
            "name": exp_name,
            "baseline_rev": tags.get("dvc.baseline_rev"),
            "commit": commit,
            "run_file_names_this_run": None,
        }
        run_path = run.data.params.get("paths.run")
        if commit and repo and run_path:
            text = _git_show(repo, commit, run_path)
            dvc_exp["run_file_names_this_run"] = bool(text) and (
                json.loads(text).get("run_id") == run_id
            )

    return {
        "target": target,
        "model": model,
        "run": {
            "id": run_id,
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "experiment_name": experiment.name,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "tracking_uri": uri,
            "params": dict(sorted(run.data.params.items())),
            "metrics": dict(sorted(run.data.metrics.items())),
            "tags": {k: v for k, v in sorted(tags.items()) if k.startswith(RUN_TAGS)},
        },
        "code": {
            "git_commit": tags.get("git.commit"),
            "git_dirty": tags.get("git.dirty"),
            "dirty_files": tags.get("git.dirty_files"),
        },
        "sweep": tags.get(tracking.SWEEP_TAG),
        "dvc_experiment": dvc_exp,
        "dvc_lock": lock,
        "data": manifest,
        "config": yaml.safe_load(config_text) if config_text else None,
        "environment": json.loads(environment_text) if environment_text else None,
        "repo": str(repo) if repo else None,
        "warnings": warnings,
    }


def _default_uri(repo: Path | None) -> str:
    """``MLFLOW_TRACKING_URI``, else the repo's ``tracking.tracking_uri``, else its mlflow.db."""
    configured = None
    if repo is not None and (repo / "params.yaml").is_file():
        try:
            from audioclf.config import load_params

            configured = load_params(root=repo).tracking.get("tracking_uri")
        except Exception:
            configured = None
    root = (repo or Path.cwd()).resolve()
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{root / 'mlflow.db'}"


def _search_logged_models(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    try:
        return list(
            client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
        )
    except Exception:
        return []


def _lock_summary(text: str) -> dict[str, Any]:
    from dvc.utils.serialize import loads_yaml

    lock = loads_yaml(text) or {}  # YAML 1.2, as DVC writes it (`no` is a string)
    stages = {}
    for name, stage in (lock.get("stages") or {}).items():
        stages[name] = {
            "cmd": stage.get("cmd"),
            "deps": stage.get("deps", []),
            "outs": stage.get("outs", []),
            "params": stage.get("params", {}),
        }
    return {"stages": dict(sorted(stages.items(), key=lambda kv: _stage_order(kv[0])))}


def _stage_order(stage: str) -> tuple[int, str]:
    return (PIPELINE.index(stage) if stage in PIPELINE else len(PIPELINE), stage)


def _consistency(lock: dict, params: dict[str, str], manifest_text: str | None) -> list[str]:
    """Does the logged dvc.lock describe this run? (Stages run by hand leave it stale.)"""
    warnings = []
    for stage, entry in lock.get("stages", {}).items():
        locked: dict[str, str] = {}
        for values in (entry.get("params") or {}).values():
            locked.update(_flatten(values))
        differ = sorted(k for k, v in locked.items() if k in params and params[k] != v)
        if differ:
            warnings.append(
                f"dvc.lock's {stage} stage was locked with other params than this run's "
                f"({', '.join(differ[:5])}): it may not describe this run"
            )
    if manifest_text is not None:
        md5 = hashlib.md5(manifest_text.encode("utf-8")).hexdigest()
        manifest_path = params.get("paths.manifest", "data/manifest.json")
        for out in lock.get("stages", {}).get("download", {}).get("outs", []):
            if out.get("path") == manifest_path and out.get("md5") not in (None, md5):
                warnings.append(
                    "dvc.lock's data manifest is not the one logged with the run: the data "
                    "stages' hashes may not describe this run"
                )
    return warnings


# --------------------------------------------------------------------------- verifying


class _DvcHasher:
    """Hash paths exactly as DVC does, without its hash cache (a fresh re-hash), wherever a
    run's version may be: the workspace, the DVC cache, or the git commits that hold the run's
    code (its DVC experiment's commit, the commit it ran from)."""

    def __init__(self, repo: Path, revs: list[tuple[str, str]] = ()) -> None:
        from dvc.repo import Repo

        self.root = repo
        self.repo = Repo(str(repo))
        self.revs = list(revs)
        self._at: dict[str, Any] = {}
        self.scratch = {
            out.def_path for out in self.repo.index.outs if out.persist and not out.use_cache
        }

    def close(self) -> None:
        self.repo.close()
        for repo in self._at.values():
            repo.close()

    def _odb(self, hash_name: str) -> Any:
        from dvc_data.hashfile.db.local import LocalHashFileDB

        cache = self.repo.cache.local if hash_name == "md5" else self.repo.cache.legacy
        return LocalHashFileDB(cache.fs, cache.path, hash_name=hash_name)

    def _hash(self, odb: Any, repo: Any, rel: str, hash_name: str) -> Any | None:
        from dvc_data.hashfile.build import build

        path = repo.fs.join(repo.root_dir, rel)
        if not repo.fs.exists(path):
            return None
        _, _, obj = build(odb, path, repo.fs, hash_name, dry_run=True, ignore=repo.dvcignore)
        return obj

    def _at_rev(self, rev: str) -> Any:
        from dvc.repo import Repo

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
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

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
        from dvc_data.hashfile.hash import hash_file
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

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
    import datasets

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
    import datasets
    from omegaconf import OmegaConf

    from audioclf.data.sources import load_source

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
    hasher = _DvcHasher(repo, _revs(report))
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
        import datasets

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


# --------------------------------------------------------------------------- output


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_text(report: dict, checks: list[Check] | None = None) -> str:
    out: list[str] = []
    add = out.append
    model, run, code = report["model"], report["run"], report["code"]
    add(f"target      {report['target']}  ({model['kind']})")
    if model["kind"] == "registered model":
        aliases = f", aliases {', '.join(model['aliases'])}" if model["aliases"] else ""
        add(f"model       {model['name']} version {model['version']}{aliases} <- {model['source']}")
    if model.get("logged_models"):
        add(f"model       logged model(s) {', '.join(model['logged_models'])}")
    if model.get("sha256"):
        add(f"weights     sha256 {model['sha256']}")
    if model.get("also_matching_runs"):
        add(f"            same weights also in runs {', '.join(model['also_matching_runs'])}")
    add(
        f"run         {run['id']} '{run['name']}' in experiment '{run['experiment_name']}' "
        f"({run['status']}, {_when(run['start_time'])} - {_when(run['end_time'])})"
    )
    add(f"store       {run['tracking_uri']}")
    dirty = code["git_dirty"]
    dirty_text = f", dirty: {code['dirty_files']}" if dirty == "true" else ", clean"
    add(f"git commit  {code['git_commit']}{dirty_text if dirty else ''}")
    exp = report["dvc_experiment"]
    if exp:
        commit = exp["commit"] or "(no ref in this repository)"
        points = {True: ", its run file names this run", False: ", its run file names another run"}
        add(
            f"dvc exp     {exp['name']} (baseline {str(exp['baseline_rev'])[:7]}) commit {commit}"
            + points.get(exp["run_file_names_this_run"], "")
        )
    else:
        add("dvc exp     - (not run by `dvc exp run`)")
    add(f"sweep       {report['sweep'] or '-'}")
    if report.get("environment"):
        add("environment")
        for key, value in report["environment"].items():
            add(f"  {key} = {value}")
    add("metrics")
    for key, value in run["metrics"].items():
        add(f"  {key} = {value:.6g}")
    add("params")
    for key, value in run["params"].items():
        add(f"  {key} = {value}")
    lock = report["dvc_lock"]
    add(f"dvc.lock    ({lock['source']})")
    for stage, entry in lock["stages"].items():
        add(f"  {stage}")
        for kind in ("deps", "outs"):
            for item in entry.get(kind) or []:
                size = f"  {item['nfiles']} files" if item.get("nfiles") else ""
                add(f"    {kind[:-1]:<4} {item.get('md5', '-'):<38} {item['path']}{size}")
    data = report["data"]
    if data:
        rev = data.get("revision") or "-"
        add(
            f"data        {data['source']} {data['path']} (config {data.get('config_name')}, "
            f"split {data.get('split_name')}, revision {rev})"
        )
        add(f"  digest    {data['digest']}")
        add("  rows      " + ", ".join(f"{s}={n}" for s, n in data["num_rows"].items()))
        for split, counts in data["class_counts"].items():
            add(f"  {split:<9} " + ", ".join(f"{c}={n}" for c, n in counts.items()))
        skipped = data.get("skipped") or []
        add(f"  skipped   {len(skipped)}")
        for item in skipped:
            add(f"    {item['path']}: {item['reason']}")
        add(f"  items     {len(data['items'])} (split, label, sha256, path)")
        for item in data["items"]:
            add(f"    {item['split']:<5} {item['label']:<12} {item['sha256']}  {item['path']}")
    for warning in report["warnings"]:
        add(f"warning     {warning}")
    if checks is not None:
        add("verify")
        for c in checks:
            add(f"  {c.status:<10} {c.stage:<9} {c.kind:<11} {c.path}  {c.detail}".rstrip())
            for name in c.files[:20]:
                add(f"               changed: {name}")
        failure = first_failure(checks)
        add(f"verify: FAILED at {failure}" if failure else "verify: OK")
    return "\n".join(out)


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
    import sys

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
