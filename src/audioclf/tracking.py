"""MLflow: where runs go, what params they carry, and the lineage tags that make them auditable.

One MLflow run per pipeline run: ``train`` creates it (through Accelerate's MLflow tracker) and
writes its id to ``paths.run``; ``evaluate`` reads that file and logs into the same run.

A run is a result only once its model was scored on test, so its status follows the pipeline,
not the process that happens to hold it (:func:`records_outcome` on both stages):

- ``RUNNING`` while ``train`` runs, and after it until ``evaluate`` ends: ``dvc repro train``
  alone leaves its run ``RUNNING`` with ``pipeline.stage_status = done``; the next ``dvc repro``
  runs only ``evaluate``, which ends it.
- ``FINISHED`` when ``evaluate`` succeeded (its ``test/*`` metrics are logged).
- ``FAILED`` when a stage raised; ``KILLED`` when it got SIGINT (``dvc queue kill``, Ctrl-C) or
  SIGTERM. Either way the tag ``pipeline.error`` says which stage and why.

The tags ``pipeline.stage`` (the stage that ran last in the run) and ``pipeline.stage_status``
(``running``, ``done``, ``failed``, ``killed``) tell the rest. ``dvc queue kill --force``
SIGKILLs DVC's executor and deletes the experiment's copy under the stage, which then fails:
``FAILED``. A stage process killed with SIGKILL itself (the OOM killer) records nothing: its
run stays ``RUNNING``, stage status ``running``. MLflow itself would end a run ``FINISHED`` in
any of these cases (its exit hook, Accelerate's ``end_training``, ``with mlflow.start_run()``):
the stages set the status after them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import yaml
from dvc.utils.serialize import dumps_yaml, loads_yaml
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from audioclf.config import load_params, user_repo_root
from audioclf.dvc_stages import data_stages

log = logging.getLogger(__name__)

SWEEP_TAG = "sweep"
STAGE_TAG = "pipeline.stage"
STAGE_STATUS_TAG = "pipeline.stage_status"
ERROR_TAG = "pipeline.error"
RUNNING, FINISHED, FAILED, KILLED = (
    RunStatus.to_string(s)
    for s in (RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)
)
MODEL_DIGEST_TAG = "model.sha256"
LOCK_ARTIFACT = "lineage/dvc.lock"
CONFIG_ARTIFACT = "config/params.yaml"
ENVIRONMENT_ARTIFACT = "environment/environment.json"
PACKAGES_ARTIFACT = "environment/packages.txt"
CODE_PATHS = (
    "src/",
    "conf/",
    "scripts/",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "Makefile",
    ".dvc/config",
)


def default_tracking_uri(root: Path | None = None) -> str:
    """The repository's sqlite store (absolute, so experiment copies share it)."""
    return f"sqlite:///{(root or user_repo_root()).resolve() / 'mlflow.db'}"


def tracking_uri(tracking: DictConfig | None = None, root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else ``tracking.tracking_uri``, else the repo's sqlite store.

    The one place that decides where runs go. The default is absolute and built from
    ``DVC_ROOT`` (or ``root``), so queued DVC experiments (which run in temporary copies of the
    repository) log into the user's store, not into the copy.
    """
    configured = tracking.get("tracking_uri") if tracking is not None else None
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or default_tracking_uri(root)


def project_tracking_uri(root: Path | None = None) -> str:
    """:func:`tracking_uri` for a project directory, from its ``params.yaml`` when readable
    (for commands run outside a stage: predict, lineage)."""
    cfg = None
    try:
        cfg = load_params(root=root).get("tracking")
    except Exception:  # no or an unreadable params.yaml: the environment and the default
        cfg = None
    return tracking_uri(cfg, root)


def artifact_location(tracking: DictConfig | None = None) -> str | None:
    """With the default store, new experiments keep artifacts in ``<user repo>/mlartifacts``.

    Another store (a server, say) decides for itself: None. (``mlflow.set_tracking_uri`` also
    sets ``MLFLOW_TRACKING_URI``, so the resolved URI is compared, not the variable.)
    """
    if tracking_uri(tracking) != default_tracking_uri():
        return None
    return (user_repo_root() / "mlartifacts").as_uri()


def configure(tracking: DictConfig | None = None) -> str:
    """Point MLflow at the store (touching nothing: a client would create a sqlite store)."""
    uri = tracking_uri(tracking)
    mlflow.set_tracking_uri(uri)
    return uri


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[str]:
    """Point this process's MLflow at ``uri`` for a while, then back where it was."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        restore_tracking_uri(before)


def restore_tracking_uri(variable: str | None) -> None:
    """Forget MLflow's process-wide URI and put ``MLFLOW_TRACKING_URI`` back as it was.

    ``mlflow.set_tracking_uri`` sets a global that outranks the variable; ``""`` would mean
    ``./mlruns``, so None is what forgets it (and unsets the variable, restored after).
    """
    mlflow.set_tracking_uri(None)
    if variable is not None:
        os.environ["MLFLOW_TRACKING_URI"] = variable


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``train.learning_rate``) and their leaf values."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def param_text(value: Any) -> str:
    """A config value as MLflow keeps it in a param (lists as JSON)."""
    return json.dumps(value) if isinstance(value, list) else str(value)


def flat_params(cfg: DictConfig) -> tuple[dict[str, str], dict[str, Any]]:
    """The composed config flattened to dotted keys; values too long for a param go apart.

    Returns ``(params, long_values)``: long values are logged as a JSON artifact instead.
    """
    params: dict[str, str] = {}
    long_values: dict[str, Any] = {}
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items():
        text = param_text(value)
        if len(text) > MAX_PARAM_VAL_LENGTH:
            long_values[key] = value
        else:
            params[key] = text
    return params, long_values


@contextlib.contextmanager
def no_artifact_progress_bar() -> Iterator[None]:
    """MLflow's download progress bar off (it reads the environment), then as it was."""
    key = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def code_changes() -> list[str]:
    """Code and config files (:data:`CODE_PATHS`) that differ from the commit, or are new.

    Pipeline outputs (``dvc.lock``, ``reports/``...) are not code; nor is ``params.yaml`` under
    ``dvc exp run``, which writes it from ``conf/`` with the experiment's overrides (those are
    the run's params, and the experiment's git ref keeps them).
    """
    changed = (_git("diff", "--name-only", "-z", "HEAD") or "").split("\0")
    new = (_git("ls-files", "--others", "--exclude-standard", "-z") or "").split("\0")
    code = sorted({p for p in changed + new if p and p.startswith(CODE_PATHS)})
    if os.environ.get("DVC_EXP_NAME"):
        code = [p for p in code if p != "params.yaml"]
    return code


def git_tags() -> dict[str, str]:
    """Commit and whether the code or config differ from it (:func:`code_changes`)."""
    commit = (_git("rev-parse", "HEAD") or "").strip()
    if not commit:
        return {"git.commit": "unknown"}
    changed = code_changes()
    tags = {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "git.dirty": str(bool(changed)).lower(),
    }
    if changed:
        tags["git.dirty_files"] = ", ".join(changed)[:500]
    return tags


def dvc_lock_tags(
    lock_file: Path = Path("dvc.lock"), stages: tuple[str, ...] | None = None
) -> dict[str, str]:
    """The md5 of each data stage output recorded in ``dvc.lock``: which data made the model.

    ``stages``: the data stages of the ``dvc.yaml`` beside the lock file, unless given.
    """
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text()) or {}
    tags = {}
    for stage in stages if stages is not None else data_stages(lock_file.parent):
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            tags[f"dvc.{stage}.{out['path']}"] = out.get("md5", "")
    return tags


def sweep_name(tracking: DictConfig | None = None) -> str | None:
    """The sweep a run belongs to: the MLflow tag ``sweep`` that groups a sweep's runs.

    ``tracking.sweep`` when set (``dvc exp run --queue -S tracking.sweep=NAME ...``), else,
    under ``dvc exp run``, ``baseline-<commit>``: every experiment queued from one commit.
    None for a plain ``dvc repro``.
    """
    if tracking is not None and tracking.get("sweep") is not None:
        return str(tracking.get("sweep"))
    if os.environ.get("DVC_EXP_NAME") and (baseline := os.environ.get("DVC_EXP_BASELINE_REV")):
        return f"baseline-{baseline[:7]}"
    return None


def dvc_tags(tracking: DictConfig | None = None) -> dict[str, str]:
    """The DVC experiment (and sweep) this run belongs to, under ``dvc exp run``."""
    tags = {}
    if name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = name
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = baseline
    if sweep := sweep_name(tracking):
        tags[SWEEP_TAG] = sweep
    return tags


def lineage_tags(
    manifest: dict[str, Any] | None = None, tracking: DictConfig | None = None
) -> dict[str, str]:
    """Everything needed to find the code and the data that produced a run."""
    tags = {**git_tags(), **dvc_tags(tracking), **dvc_lock_tags()}
    if manifest:
        tags["data.digest"] = manifest["digest"]
        tags["data.source"] = f"{manifest['source']}:{manifest['path']}"
        tags["data.revision"] = str(manifest.get("revision"))
    return tags


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """While held, no other process of this machine creates the same sqlite store.

    MLflow creates (and migrates) a fresh sqlite store's tables when a process first opens it,
    unlocked: two queued experiments opening a new ``mlflow.db`` at once leave one of them
    failed ("Online migration expected to match one row") and without a run. Other stores
    are created by their server: no lock.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    database = Path(uri[len(prefix) :]).resolve()
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    lock_file = Path(tempfile.gettempdir()) / f"audioclf-mlflow-store-{digest}.lock"
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(tracking: DictConfig) -> str:
    """The experiment's id, creating it without tags when it is new.

    Accelerate's tracker would create it with the first run's tags (commit, data hashes),
    which describe that run only; run tags go on runs.
    """
    with store_creation_lock(mlflow.get_tracking_uri()):
        client = MlflowClient()
        name = tracking.experiment_name
        found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking))
    except MlflowException:  # created meanwhile by a parallel run
        return client.get_experiment_by_name(name).experiment_id


def log_environment(run_id: str, described: dict[str, Any], packages: list[str]) -> None:
    """The environment as ``env.*`` tags and ``environment/`` artifacts (with every package)."""
    client = MlflowClient()
    client.log_batch(
        run_id, tags=[RunTag(f"env.{k}", str(v)) for k, v in described.items() if v is not None]
    )
    client.log_dict(run_id, described, ENVIRONMENT_ARTIFACT)
    client.log_text(run_id, "\n".join(packages) + "\n", PACKAGES_ARTIFACT)


def tracker_kwargs(cfg: DictConfig, run_id: str | None, tags: dict[str, str]) -> dict[str, Any]:
    """``init_kwargs`` for Accelerate's MLflow tracker: new run, or resume ``run_id``."""
    return {
        "mlflow": {
            "logging_dir": artifact_location(cfg.tracking),
            "run_id": run_id,
            "run_name": None if run_id else os.environ.get("DVC_EXP_NAME"),
            "tags": tags,
        }
    }


def log_dataset(manifest: dict[str, Any], context: str = "train") -> None:
    """Log the dataset as a run input: source, revision and the manifest digest."""
    source = HuggingFaceDatasetSource(
        path=manifest["path"],
        config_name=manifest.get("config_name"),
        split=manifest.get("split_name"),
        revision=manifest.get("revision"),
    )
    name = "-".join(str(p) for p in (manifest["path"], manifest.get("config_name")) if p)
    mlflow.log_input(
        MetaDataset(source, name=name, digest=manifest["digest"][:32]), context=context
    )


def write_run_file(
    path: Path, run_id: str, experiment_id: str, tracking: DictConfig | None = None
) -> None:
    """The declared output that hands the run to ``evaluate`` (and to lineage audits).

    Under ``dvc exp run`` it is committed with the experiment, so the experiment names its
    MLflow run (and the run names the experiment in its tag ``dvc.experiment``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "tracking_uri": tracking_uri(tracking),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
        "sweep": sweep_name(tracking),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def read_run_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the train stage first")
    return json.loads(path.read_text())


def model_digest(model_dir: Path) -> str:
    """sha256 over a model directory's weight files (``*.safetensors``): the model's identity.

    Logged as the run's tag ``model.sha256``, it maps any copy of the directory to its run.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    h = hashlib.sha256()
    for file in files:
        h.update(f"{file.name}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def log_lineage(
    run_id: str,
    stages: tuple[str, ...],
    *,
    tag_stages: tuple[str, ...] = (),
    lock_file: Path = Path("dvc.lock"),
) -> None:
    """Log ``dvc.lock`` with the run (artifact ``lineage/dvc.lock``): the locked ``stages``'
    deps, outs and params, with their DVC hashes.

    ``dvc repro`` locks each stage as soon as it ends, so while a stage runs the lock holds the
    stages before it, fresh, and stale entries for it and the stages after it: only ``stages``
    are kept. ``train`` logs the data stages; ``evaluate`` logs them again with ``train`` (its
    model and code hashes), tagging ``tag_stages``' outputs.
    """
    if not lock_file.is_file():
        return

    # DVC's own YAML 1.2 round trip: PyYAML would read `mixed_precision: no` as false.
    lock = loads_yaml(lock_file.read_text()) or {}
    lock["stages"] = {k: v for k, v in (lock.get("stages") or {}).items() if k in stages}
    client = MlflowClient()
    client.log_text(run_id, dumps_yaml(lock), LOCK_ARTIFACT)
    for key, value in dvc_lock_tags(lock_file, tag_stages).items():
        client.set_tag(run_id, key, value)


def log_training_outputs(
    run_id: str,
    cfg: DictConfig,
    *,
    manifest: Path,
    train_log: Path,
    checkpoints: Path,
    long_values: dict[str, Any],
    label_names: list[str],
) -> None:
    """Artifacts of a finished training: data manifest, label maps, curve, checkpoints.

    The model itself is logged (and registered) by :func:`audioclf.serving.log_pyfunc_model`.
    """
    client = MlflowClient()
    client.log_artifact(run_id, str(manifest), "data")
    client.log_artifact(run_id, str(train_log), "training")
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), CONFIG_ARTIFACT)
    client.set_tag(run_id, MODEL_DIGEST_TAG, model_digest(Path(cfg.paths.model)))
    log_lineage(run_id, data_stages(Path.cwd()))
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "label_maps.json"
        labels.write_text(json.dumps({"id2label": dict(enumerate(label_names))}, indent=2))
        client.log_artifact(run_id, str(labels), "config")
        if long_values:
            extra = Path(tmp) / "long_params.json"
            extra.write_text(json.dumps(long_values, indent=2))
            client.log_artifact(run_id, str(extra), "config")
    mode = cfg.tracking.log_checkpoints
    if mode not in ("best", "all", "none"):
        raise ValueError(f"tracking.log_checkpoints must be best|all|none, not {mode!r}")
    names = {"best": ["best"], "all": ["best", "last"], "none": []}[mode]
    for name in names:
        if (checkpoints / name).is_dir():
            client.log_artifacts(run_id, str(checkpoints / name), f"checkpoints/{name}")


def log_validation_summary(run_id: str, summary: dict[str, Any]) -> None:
    """The best validation figures as ``val_best/*`` metrics; how training ended as tags."""
    client = MlflowClient()
    numbers = {k[len("best_") :]: v for k, v in summary.items() if k.startswith("best_")}
    client.log_batch(
        run_id,
        metrics=[metric(f"val_best/{k}", v) for k, v in numbers.items() if k != "epoch"],
        tags=[
            RunTag(f"train.{key}", str(summary[key]).lower())
            for key in ("best_epoch", "epochs_trained", "stopped_early")
        ],
    )


def metric(key: str, value: float, step: int = 0) -> Any:
    """An MLflow metric entity stamped now (for ``log_batch``)."""
    return Metric(key, float(value), int(time.time() * 1000), step)


class StageTerminated(BaseException):
    """SIGTERM reached a stage: it unwinds like Ctrl-C's ``KeyboardInterrupt``, so the run's
    status can still be written (Python's default for SIGTERM is to die on the spot)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`StageTerminated` for a while, in the main thread (signal handlers
    live there; elsewhere nothing changes), then the handler is back as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise StageTerminated(signum)

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def error_text(stage: str, err: BaseException) -> str:
    """One line for the tag ``pipeline.error``: the stage and the error, credentials in URLs
    (``//user:password@host``) blanked."""
    if isinstance(err, KeyboardInterrupt):
        detail = "interrupted by SIGINT"
    elif isinstance(err, StageTerminated):
        detail = str(err)
    else:
        detail = f"{type(err).__name__}: {err}"
    text = re.sub(r"//[^/@\s]+@", "//***@", f"{stage}: {detail}")
    return text[:MAX_TAG_VAL_LENGTH]


def set_run_state(
    run_file: Path, stage: str, status: str, stage_status: str, error: str | None = None
) -> str | None:
    """Give the run ``run_file`` names ``status`` and the ``pipeline.*`` tags (``error`` or none:
    an earlier attempt's is dropped); its id, or None when there is no run (the stage failed
    before it had one).

    Without the file (``dvc queue kill --force`` deletes the experiment's copy under a running
    stage) the run is the one this process holds open in MLflow's fluent API (train's, during
    training), if any. That run is ended there, so that MLflow's exit hook does not end it
    ``FINISHED`` afterwards.
    """
    active = mlflow.active_run()
    if run_file.is_file():
        run = read_run_file(run_file)
    elif active is not None:
        run = {"run_id": active.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
    else:
        return None
    run_id = run["run_id"]
    tags = {STAGE_TAG: stage, STAGE_STATUS_TAG: stage_status}
    if error is not None:
        tags[ERROR_TAG] = error
    client = MlflowClient(run.get("tracking_uri") or None)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    if error is None and ERROR_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, ERROR_TAG)  # an earlier attempt's, stale now
    if status == RUNNING:
        client.update_run(run_id, status=status)
    elif active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        client.set_terminated(run_id, status)
    return run_id


def release_frames(err: BaseException) -> None:
    """Free what the frames an error unwound still hold, before the run is marked.

    A signal that lands in the middle of an MLflow write leaves that write's sqlite cursor alive
    in the traceback's frames, its connection closed but not yet finalized: the store stays
    locked against this very process's next write. The frames' locals are cleared (the
    traceback still prints) and collected.
    """
    seen: set[int] = set()
    error: BaseException | None = err
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
    gc.collect()


def _record(
    run_file: Path, stage: str, status: str, stage_status: str, err: BaseException | None = None
) -> None:
    """:func:`set_run_state`; a store that fails then only logs a warning (on an error path the
    stage's own error is the one to report)."""
    error = error_text(stage, err) if err is not None else None
    try:
        run_id = set_run_state(run_file, stage, status, stage_status, error)
    except Exception as failure:  # the store is unreachable, the run file unreadable...
        log.warning("could not mark the MLflow run of %s %s: %s", run_file, status, failure)
        return
    if run_id is not None and err is not None:
        log.warning("MLflow run %s ended %s (%s)", run_id, status, error)


@contextlib.contextmanager
def stage_outcome(stage: str, run_file: Path, *, opens_run: bool) -> Iterator[None]:
    """Run a stage body and write how it ended into the run ``run_file`` names (see the module
    docstring): ``KILLED`` on SIGINT or SIGTERM, ``FAILED`` on an error (both re-raised;
    SIGTERM then exits 128 + 15); else ``RUNNING`` for the stage that opens the run (train:
    the run is no result yet) and ``FINISHED`` for the one that closes it (evaluate).

    The stage that opens the run writes ``run_file`` once its run exists: a file left by an
    earlier run names another run and is removed first, so a failure before the new run exists
    marks nothing. The stage that closes the run finds it there, and marks it ``RUNNING`` while
    it works (a run evaluated again is no result meanwhile). Under ``accelerate launch`` only
    the main process (``RANK`` 0) records: the others end before it has logged everything.
    """
    if os.environ.get("RANK", "0") != "0":  # another process of `accelerate launch`
        with sigterm_raises():
            yield
        return
    run_file = run_file.absolute()  # whatever the body does with the working directory
    if opens_run:
        run_file.unlink(missing_ok=True)
    else:
        _record(run_file, stage, RUNNING, "running")
    try:
        with sigterm_raises():
            yield
    except (KeyboardInterrupt, StageTerminated) as err:
        release_frames(err)
        _record(run_file, stage, KILLED, "killed", err)
        if isinstance(err, StageTerminated):
            raise SystemExit(128 + err.signum) from None
        raise
    except BaseException as err:
        release_frames(err)
        _record(run_file, stage, FAILED, "failed", err)
        raise
    _record(run_file, stage, RUNNING if opens_run else FINISHED, "done")


StageBody = Callable[[DictConfig], None]


def records_outcome(stage: str, *, opens_run: bool) -> Callable[[StageBody], StageBody]:
    """A stage body decorated to run under :func:`stage_outcome`, on its ``paths.run``."""

    def decorate(body: StageBody) -> StageBody:
        @functools.wraps(body)
        def recorded(cfg: DictConfig) -> None:
            with stage_outcome(stage, Path(cfg.paths.run), opens_run=opens_run):
                body(cfg)

        return recorded

    return decorate
