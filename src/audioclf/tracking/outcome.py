"""A run's status follows the pipeline, not the process that happens to hold it.

One MLflow run per pipeline run: ``train`` creates it (through Accelerate's MLflow tracker) and
writes its id to ``paths.run``; ``evaluate`` reads that file and logs into the same run.

A run is a result only once its model was scored on test, so its status follows the pipeline
(:func:`records_outcome` on both stages):

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
import functools
import gc
import logging
import os
import re
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from omegaconf import DictConfig

from audioclf.tracking.artifacts import read_run_file
from audioclf.tracking.tags import ERROR_TAG, STAGE_STATUS_TAG, STAGE_TAG

log = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED, KILLED = (
    RunStatus.to_string(s)
    for s in (RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)
)


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
