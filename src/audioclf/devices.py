"""The GPUs a stage computes on: shared out among the queued experiments that run at once.

Each process takes ``cuda:0`` unless told otherwise: ``dvc queue start -j 4`` on a machine with
four GPUs would put all four experiments on the first one and leave three idle. Cores are shared
by :mod:`audioclf.threads`; GPUs by this rule, applied by train (before ``accelerate launch``
starts its processes, :mod:`audioclf.launch`) and evaluate, before torch initialises CUDA:

1. A process started under a lease (``accelerate launch``'s workers) keeps its parent's devices.
2. ``launch.devices: [i, ...]`` pins the devices (``CUDA_VISIBLE_DEVICES=i,...``).
3. Else, with no GPU visible, nothing is leased. The visible GPUs are ``AUDIOCLF_DEVICES``
   (a list of device ids standing in for them: tests, CPU machines), else
   ``CUDA_VISIBLE_DEVICES`` when set, else every GPU NVIDIA's management library lists
   (``nvidia-ml-py``, the ``gpu`` extra; without it they are unknown and nothing is leased).
4. Else, inside a queued experiment (:func:`audioclf.threads.experiment_copies_dir`),
   ``max(1, G // R)`` of the ``G`` visible GPUs, ``R`` the experiments running now
   (:func:`audioclf.threads.running_experiments`), none that another stage holds: a stage that
   finds too few free waits until other stages release enough (recounting ``R`` meanwhile),
   instead of two sharing one.
5. Else (``dvc repro``, ``dvc exp run`` in the workspace) every visible GPU, left as it is.

Inside a queued experiment the devices are held (pinned ones too) as an exclusive ``flock`` on
``$DVC_ROOT/.dvc/tmp/devices/<device>.lock``, one file per device. The kernel drops a lock when
its process ends, however it ends (SIGKILL and the OOM killer included), so a dead stage never
keeps a device. The count is taken when the stage starts: an experiment that started alone keeps
all the devices it got until its stage ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from audioclf.threads import experiment_copies_dir, running_experiments

try:
    import pynvml
except ImportError:  # nvidia-ml-py is the optional `gpu` extra
    pynvml = None

log = logging.getLogger(__name__)

STAND_IN_ENV = "AUDIOCLF_DEVICES"
CUDA_ENV = "CUDA_VISIBLE_DEVICES"
# set while a lease is held, for the processes started under it: the rule that chose the devices
HELD_ENV = "AUDIOCLF_DEVICES_HELD"
POLL_S = 0.5


@dataclass(frozen=True)
class Lease:
    """The devices a stage may use (empty: no GPU; None: not listed, ``CUDA_VISIBLE_DEVICES``
    left as it was), the rule that chose them, and how long the stage waited for them."""

    devices: tuple[str, ...] | None
    rule: str
    waited_s: float = 0.0

    def tags(self, stage: str) -> dict[str, str]:
        """The MLflow tags that record the lease: ``<stage>.devices`` (``none`` without a GPU,
        ``unknown`` unlisted), ``<stage>.devices_rule`` and ``<stage>.devices_wait_s``."""
        listed = "unknown" if self.devices is None else ",".join(self.devices) or "none"
        return {
            f"{stage}.devices": listed,
            f"{stage}.devices_rule": self.rule,
            f"{stage}.devices_wait_s": f"{self.waited_s:.1f}",
        }


def device_list(text: str) -> tuple[str, ...]:
    """``"0, 1"`` -> ``("0", "1")``; an empty text lists no device."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def nvml_devices() -> tuple[str, ...] | None:
    """Every GPU's index as NVIDIA's management library counts them; None without it."""
    if pynvml is None:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver, no GPU
        return ()
    try:
        return tuple(str(index) for index in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def visible_devices() -> tuple[str, ...] | None:
    """The GPUs this process may use, by rule 3 of this module, without initialising CUDA;
    None when nothing lists them (no variable set, no ``nvidia-ml-py``)."""
    for name in (STAND_IN_ENV, CUDA_ENV):
        if name in os.environ:
            return device_list(os.environ[name])
    return nvml_devices()


def lock_dir(copies: Path) -> Path:
    """Where the device locks of the repository whose experiment copies are ``copies`` lie:
    ``$DVC_ROOT/.dvc/tmp/devices`` (git ignores ``.dvc/tmp``)."""
    return copies.parent / "devices"


def try_lock(locks: Path, device: str) -> int | None:
    """An open descriptor holding ``device``'s lock, or None when another process holds it."""
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{device.replace(os.sep, '_')}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a curious reader
    return fd


def lock_some(locks: Path, candidates: Sequence[str], count: int) -> dict[str, int] | None:
    """Locks on ``count`` of ``candidates``, all or none: holding some while waiting for more
    could leave two stages each waiting for what the other holds."""
    held: dict[str, int] = {}
    for device in candidates:
        fd = try_lock(locks, device)
        if fd is not None:
            held[device] = fd
            if len(held) == count:
                return held
    for fd in held.values():
        os.close(fd)
    return None


@contextlib.contextmanager
def env_vars(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set for a while, then as it was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_for_lease(
    locks: Path, copies: Path, visible: Sequence[str], poll_s: float
) -> tuple[dict[str, int], str]:
    """Locks on this experiment's share of ``visible`` (rule 4), waiting until they are free."""
    started = time.monotonic()
    waiting_for = 0
    while True:
        running = max(1, running_experiments(copies))
        count = max(1, len(visible) // running)
        rule = f"queued experiment: {len(visible)} devices / {running} running experiments"
        held = lock_some(locks, visible, count)
        if held is not None:
            if waiting_for:
                log.info("got devices %s after %.1f s", ",".join(held), time.monotonic() - started)
            return held, rule
        if count != waiting_for:
            log.info("waiting for %d free device(s) of %s (%s)", count, ",".join(visible), rule)
            waiting_for = count
        time.sleep(poll_s)


def wait_for_pinned(locks: Path, pinned: Sequence[str], poll_s: float) -> dict[str, int]:
    """Locks on every pinned device, waiting while another stage holds one."""
    logged = False
    while (held := lock_some(locks, pinned, len(pinned))) is None:
        if not logged:
            log.info("waiting for the pinned devices %s (launch.devices)", ",".join(pinned))
            logged = True
        time.sleep(poll_s)
    return held


@contextlib.contextmanager
def lease_devices(
    pinned: Sequence[int | str] | None = None, *, poll_s: float = POLL_S
) -> Iterator[Lease]:
    """The GPUs for this stage by the rule of this module, held until the block ends.

    ``pinned``: the config's ``launch.devices``. Inside the block ``CUDA_VISIBLE_DEVICES``
    names the leased devices (when the rule chose some) and processes started there lease
    nothing again; afterwards the environment is as it was. Enter it before anything
    initialises CUDA (``torch.cuda.is_available()``, an ``Accelerator``): CUDA reads
    ``CUDA_VISIBLE_DEVICES`` once.
    """
    if HELD_ENV in os.environ:
        yield Lease(device_list(os.environ.get(CUDA_ENV, "")), os.environ[HELD_ENV])
        return
    copies = experiment_copies_dir()
    started = time.monotonic()
    with contextlib.ExitStack() as held:
        if pinned:
            devices = tuple(str(device) for device in pinned)
            rule = "launch.devices"
            if copies is not None:
                locks = wait_for_pinned(lock_dir(copies), devices, poll_s)
                for fd in locks.values():
                    held.callback(os.close, fd)
        else:
            visible = visible_devices()
            if visible is None:
                yield Lease(None, f"GPUs not listed: no {CUDA_ENV}, no nvidia-ml-py")
                return
            if not visible:
                yield Lease((), "no GPU visible")
                return
            if copies is None:
                yield Lease(visible, "not a queued experiment: every visible device")
                return
            locks, rule = wait_for_lease(lock_dir(copies), copies, visible, poll_s)
            for fd in locks.values():
                held.callback(os.close, fd)
            devices = tuple(locks)
        lease = Lease(devices, rule, time.monotonic() - started)
        log.info("devices %s (%s)", ",".join(devices), rule)
        with env_vars({CUDA_ENV: ",".join(devices), HELD_ENV: rule}):
            yield lease
