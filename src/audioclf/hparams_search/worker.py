"""A sweep worker: trials of one Optuna study, each a DVC experiment, until the study is full.

Any number of workers, on one machine or many, join a study by its name in one storage (the
repository's ``optuna.db`` by default; PostgreSQL for several machines). Optuna hands each
worker its own trials and records a heartbeat for each running one: a trial whose worker died
is failed by the next worker to look (``fail_stale_trials``), its MLflow run with it, and no
longer counts, so the others run the study to its ``n_trials``. A worker stops once the study
holds ``n_trials`` trials that are complete, pruned or running and none is running.

Each trial is ``dvc exp run --temp`` (DVC's temporary copy under ``.dvc/tmp/exps/``, where
:mod:`audioclf.threads` shares the cores and :mod:`audioclf.devices` the GPUs among the
experiments that run at once) named ``<study>-<trial number>``; with ``git_remote`` set it is
then pushed with ``dvc exp push`` (the git ref, and its outputs to the DVC remote).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from audioclf.config import compose_conf
from audioclf.hparams_search import runs
from audioclf.hparams_search.spec import SearchSpec
from audioclf.tracking import store
from audioclf.training import pruning

log = logging.getLogger(__name__)
# Optuna marks heartbeats experimental (since 2.9); they are what detects a dead worker here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

STORAGE_ENV = "AUDIOCLF_OPTUNA_STORAGE"
LOG_DIR = Path(".dvc") / "tmp" / "sweeps"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
PARENT_WAIT_S = 120


class StorageError(RuntimeError):
    """The study's storage URL is malformed or its database cannot be reached."""


class TrialError(RuntimeError):
    """A trial whose experiment failed or left no objective: Optuna records it FAIL."""


def default_storage(root: Path) -> str:
    return f"sqlite:///{(root / 'optuna.db').resolve()}"


def storage_url(spec: SearchSpec, root: Path, given: str | None = None) -> str:
    """``--storage``, else ``$AUDIOCLF_OPTUNA_STORAGE``, else the search's ``storage``, else
    the repository's ``optuna.db``."""
    return given or os.environ.get(STORAGE_ENV) or spec.storage or default_storage(root)


def shown_storage(url: str) -> str:
    """The storage URL with any password hidden: what runs and logs may show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<a storage URL that does not parse>"


@dataclass
class Sweep:
    """One worker's view of the study: where trials run, report and are pushed."""

    spec: SearchSpec
    root: Path
    storage: str
    study: optuna.Study
    client: MlflowClient
    experiment_id: str
    parent_id: str
    composed: DictConfig
    git_remote: str | None = None
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    push_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def experiment_name(self, trial: optuna.Trial) -> str:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", self.spec.study_name).strip("-") or "sweep"
        return f"{stem}-{trial.number:03d}"


def join(
    spec: SearchSpec,
    root: Path,
    *,
    storage: str | None = None,
    git_remote: str | None = None,
    worker_index: int = 0,
) -> Sweep:
    """Create the study (and its parent run) or join it when another worker did."""
    url = storage_url(spec, root, storage)

    def fail_run(study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna failed a trial whose worker stopped beating: its run FAILED too."""
        log.warning("trial %d's worker stopped beating: trial FAILED", trial.number)
        runs.fail_stale_run(client, experiment_id, trial, spec)

    try:
        rdb = optuna.storages.RDBStorage(
            url,
            heartbeat_interval=spec.heartbeat_s,
            grace_period=2 * spec.heartbeat_s,
            heartbeat_stale_trial_callback=fail_run,
        )
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise StorageError(f"cannot open the study's storage {shown_storage(url)}: {err}") from err
    composed = compose_conf(spec.overrides, root=root)
    tracking_uri = store.tracking_uri(composed.tracking, root)
    store.configure(composed.tracking)
    experiment_id = store.ensure_experiment(composed.tracking)
    client = MlflowClient(tracking_uri)


    sampler = spec.make_sampler(worker_index)
    try:
        study = optuna.create_study(
            storage=rdb,
            study_name=spec.study_name,
            direction=spec.direction,
            sampler=sampler,
            pruner=spec.make_pruner(),
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(
            study_name=spec.study_name, storage=rdb, sampler=sampler, pruner=spec.make_pruner()
        )
        parent_id = wait_for_parent(study, spec)
    else:
        parent_id = runs.open_parent(client, experiment_id, spec, shown_storage(url))
        study.set_user_attr(runs.PARENT_ATTR, parent_id)
        for key, value in spec.describe().items():
            study.set_user_attr(key, value)
    if study.direction.name.lower() != spec.direction:
        raise ValueError(
            f"study {spec.study_name!r} in {shown_storage(url)} is to "
            f"{study.direction.name.lower()}, {spec.source} says {spec.direction}"
        )
    return Sweep(spec, root, url, study, client, experiment_id, parent_id, composed, git_remote)


def wait_for_parent(study: optuna.Study, spec: SearchSpec) -> str:
    """The parent run id the study's creator records right after creating it."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while (parent := study.user_attrs.get(runs.PARENT_ATTR)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {spec.study_name!r} has no MLflow parent run")
        time.sleep(1)
    return parent


def override(key: str, value: Any) -> str:
    """``key=value`` as ``dvc exp run -S`` (Hydra) reads it."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"{key}={text}"


def run_trial(sweep: Sweep, trial: optuna.Trial) -> float:
    """The objective: sample, run the trial's DVC experiment, read its validation figure."""
    spec = sweep.spec
    name = sweep.experiment_name(trial)
    values = {param.key: param.suggest(trial) for param in spec.space}
    trial.set_user_attr("dvc_experiment", name)
    trial.set_user_attr("worker", f"{sweep.worker}:{threading.get_ident()}")
    if task := os.environ.get("SLURM_ARRAY_TASK_ID"):
        trial.set_user_attr("slurm_task", f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}")
    sets = [*spec.overrides, *(override(k, v) for k, v in values.items())]
    sets.append(f"tracking.sweep={spec.study_name}")
    env = {
        **os.environ,
        runs.PARENT_RUN_ENV: sweep.parent_id,
        runs.TRIAL_ENV: str(trial.number),
    }
    if spec.pruner:
        env.update(
            {
                pruning.STORAGE_ENV: sweep.storage,
                pruning.STUDY_ENV: spec.study_name,
                pruning.CURVE_ENV: spec.curve_metric,
                pruning.PRUNER_ENV: json.dumps(dict(spec.pruner)),
            }
        )
    logfile = sweep.root / LOG_DIR / spec.study_name / f"{name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    print(f"trial {trial.number} ({name}): {' '.join(sets[len(spec.overrides) :])}", flush=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name]
    command += [arg for s in sets for arg in ("-S", s)]
    with logfile.open("w") as out:
        code = subprocess.run(command, cwd=sweep.root, env=env, stdout=out, stderr=out).returncode
    if code != 0:
        found = runs.trial_run(sweep.client, sweep.experiment_id, name)
        if found is not None:
            runs.tag_trial(sweep.client, found.info.run_id, sweep.parent_id, trial, spec, "FAIL")
        tail = logfile.read_text(errors="replace")[-1500:]
        raise TrialError(f"dvc exp run of {name} failed ({code}); log {logfile}:\n{tail}")
    validation_path = str(sweep.composed.paths.validation)
    try:
        rev = experiment_rev(sweep.root, name)
        validation = json.loads(git_show(sweep.root, rev, validation_path))
    except (subprocess.CalledProcessError, json.JSONDecodeError) as err:
        raise TrialError(f"experiment {name} has no readable {validation_path}: {err}") from err
    found = runs.trial_run(sweep.client, sweep.experiment_id, name)
    if found is None:  # restored from DVC's run cache: nothing trained, no run opened
        original = json.loads(git_show(sweep.root, rev, str(sweep.composed.paths.run)))["run_id"]
        run_id = runs.restored_child(
            sweep.client, sweep.experiment_id, sweep.parent_id, name, original
        )
    else:
        run_id = found.info.run_id
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("git_rev", rev)
    pruned = bool(validation.get("pruned"))
    state = "PRUNED" if pruned else "COMPLETE"
    if spec.objective not in validation:
        state = "FAIL"
    runs.tag_trial(sweep.client, run_id, sweep.parent_id, trial, spec, state)
    if sweep.git_remote:
        push(sweep, name)
    seconds = time.monotonic() - started
    if state == "FAIL":
        raise TrialError(f"{validation_path} of {name} has no {spec.objective!r}")
    value = float(validation[spec.objective])
    print(f"trial {trial.number} ({name}): {spec.objective} {value:.4f} {state} in {seconds:.0f} s")
    if pruned:
        raise optuna.TrialPruned(f"pruned after epoch {validation.get('epochs_trained')}")
    return value


def push(sweep: Sweep, name: str) -> None:
    """``dvc exp push``: the experiment's git ref to ``git_remote``, its outputs to the DVC
    remote. A failed push leaves the trial's result here, and says so."""
    command = [sys.executable, "-m", "dvc", "exp", "push", sweep.git_remote, name]
    with sweep.push_lock:
        result = subprocess.run(command, cwd=sweep.root, capture_output=True, text=True)
    if result.returncode != 0:
        print(
            f"dvc exp push {sweep.git_remote} {name} failed; the experiment is kept here:\n"
            f"{result.stdout}{result.stderr}",
            file=sys.stderr,
        )


def experiment_rev(root: Path, name: str) -> str:
    """The commit of experiment ``name`` on the current baseline (DVC keeps experiments as
    git refs ``refs/exps/<baseline>/<name>``)."""
    baseline = git(root, "rev-parse", "HEAD").strip()
    ref = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"
    return git(root, "rev-parse", ref).strip()


def git_show(root: Path, rev: str, path: str) -> str:
    return git(root, "show", f"{rev}:{path}")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def counts(study: optuna.Study) -> tuple[int, int]:
    """Trials that count towards ``n_trials`` (complete, pruned, running) and those running."""
    trials = study.get_trials(deepcopy=False, states=COUNTED)
    return len(trials), sum(t.state == TrialState.RUNNING for t in trials)


def work(sweep: Sweep, poll_s: float = 2.0) -> None:
    """Run trials until the study holds ``n_trials`` of them and none is running (or the
    sweep is stopping)."""
    study = sweep.study
    while not sweep.stopping.is_set():
        optuna.storages.fail_stale_trials(study)
        counted, running = counts(study)
        if counted < sweep.spec.n_trials:
            study.optimize(lambda trial: run_trial(sweep, trial), n_trials=1, catch=(TrialError,))
            runs.record_best(sweep.client, sweep.parent_id, study)
            runs.record_counts(sweep.client, sweep.parent_id, study)
        elif running:
            time.sleep(poll_s)
        else:
            return


def study_done(sweep: Sweep) -> bool:
    counted, running = counts(sweep.study)
    return counted >= sweep.spec.n_trials and not running


def run_workers(sweep: Sweep, jobs: int = 1) -> optuna.Study:
    """``jobs`` workers in threads of this process (each trial is a process of its own). The
    worker that sees the study done closes the parent run with the best trial; an error that
    stops a worker is raised once the others have stopped."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            work(sweep)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:  # Ctrl-C reached the trials too: start no more, then stop
        sweep.stopping.set()
        for thread in threads:
            thread.join()
        raise
    if study_done(sweep):
        runs.finish_parent(sweep.client, sweep.parent_id, sweep.study)
    if errors:
        raise errors[0]
    return sweep.study
