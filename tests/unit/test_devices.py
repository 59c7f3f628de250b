"""The GPU rule (audioclf.devices) on a stand-in device list: shares by running experiments,
pinned devices first, waiting for a held device, leases that die with their process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from audioclf import devices

ENV = (devices.STAND_IN_ENV, devices.CUDA_ENV, devices.HELD_ENV, "DVC_ROOT")
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
HOLDER = textwrap.dedent(
    """
    import time
    from audioclf.devices import lease_devices
    with lease_devices() as lease:
        print(",".join(lease.devices), flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository's experiment copies (``ours``, the current directory, and ``other``),
    no GPU setting in the environment; the stage runs in ``ours``."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    repo = tmp_path / "repo"
    folder = repo / ".dvc" / "tmp" / "exps"
    for name in ("ours", "other"):
        (folder / name / ".dvc").mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    monkeypatch.chdir(folder / "ours")
    return folder


def holder(copy: Path) -> tuple[subprocess.Popen, tuple[str, ...]]:
    """A stage process in the experiment copy ``copy`` holding a lease; the devices it got."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER], cwd=copy, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, devices.device_list(process.stdout.readline())


def stop(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    process.send_signal(signum)
    process.wait()


def test_no_gpu_and_no_list_leases_nothing(copies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "pynvml", None)
    with devices.lease_devices() as unlisted:
        assert devices.CUDA_ENV not in os.environ
    assert unlisted.tags("train") == {
        "train.devices": "unknown",
        "train.devices_rule": "GPUs not listed: no CUDA_VISIBLE_DEVICES, no nvidia-ml-py",
        "train.devices_wait_s": "0.0",
    }
    monkeypatch.setattr(devices, "pynvml", FakeNvml(0))
    with devices.lease_devices() as lease:
        assert lease == devices.Lease((), "no GPU visible")
        assert devices.CUDA_ENV not in os.environ
    assert lease.tags("evaluate")["evaluate.devices"] == "none"


def test_outside_a_queued_experiment_every_visible_device_is_left_alone(
    copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(copies.parents[2])  # the workspace: `dvc repro`
    monkeypatch.setenv(devices.CUDA_ENV, "2,3")
    with devices.lease_devices() as lease:
        assert lease.devices == ("2", "3")
        assert lease.rule == "not a queued experiment: every visible device"
        assert os.environ[devices.CUDA_ENV] == "2,3"
    with devices.lease_devices([1]) as pinned:  # pinned devices win, also here
        assert pinned.devices == ("1",) and os.environ[devices.CUDA_ENV] == "1"
    assert os.environ[devices.CUDA_ENV] == "2,3"


def test_an_experiment_running_alone_gets_every_device(
    copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(devices.STAND_IN_ENV, "0,1")
    with devices.lease_devices() as lease:
        assert lease.devices == ("0", "1")
        assert lease.rule == "queued experiment: 2 devices / 1 running experiments"
        assert os.environ[devices.CUDA_ENV] == "0,1"
        assert os.environ[devices.HELD_ENV] == lease.rule
    assert devices.CUDA_ENV not in os.environ and devices.HELD_ENV not in os.environ


def test_two_running_experiments_get_a_device_each_and_a_killed_one_keeps_none(
    copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(devices.STAND_IN_ENV, "0,1")
    other, theirs = holder(copies / "other")  # it counts 2 experiments: itself and this one
    try:
        with devices.lease_devices() as ours:
            assert ours.rule == "queued experiment: 2 devices / 2 running experiments"
            assert len(ours.devices) == len(theirs) == 1
            assert {*ours.devices, *theirs} == {"0", "1"}
        locks = devices.lock_dir(copies)
        assert devices.try_lock(locks, theirs[0]) is None  # held while the other one lives
    finally:
        stop(other, signal.SIGKILL)
    freed = devices.try_lock(locks, theirs[0])
    assert freed is not None  # the kernel released it with the killed process
    os.close(freed)


def test_pinned_devices_win_and_processes_under_a_lease_lease_nothing_again(
    copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(devices.STAND_IN_ENV, "0,1,2,3")
    with devices.lease_devices(["2", 3]) as lease:
        assert lease.devices == ("2", "3") and lease.rule == "launch.devices"
        assert os.environ[devices.CUDA_ENV] == "2,3"
        with devices.lease_devices() as inner:  # as accelerate launch's workers see it
            assert inner == devices.Lease(("2", "3"), "launch.devices")
        child = subprocess.run(
            [sys.executable, "-c", HOLDER.replace("time.sleep(60)", "pass")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == "2,3"  # inherited, not waited for
        assert devices.try_lock(devices.lock_dir(copies), "2") is None  # held


def test_a_stage_waits_for_a_held_device_and_gets_it_once_released(
    copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One device, two experiments: the second waits for the first's lease to end."""
    monkeypatch.setenv(devices.STAND_IN_ENV, "0")
    first, leased = holder(copies / "other")
    assert leased == ("0",)
    got: list[devices.Lease] = []

    def second() -> None:
        with devices.lease_devices(poll_s=0.05) as lease:
            got.append(lease)

    waiting = threading.Thread(target=second)
    waiting.start()
    time.sleep(1.0)
    assert not got and waiting.is_alive()  # waits: no two stages on one device
    stop(first, signal.SIGTERM)
    waiting.join(timeout=10)
    assert got and got[0].devices == ("0",) and got[0].waited_s >= 1.0


def test_visible_devices_come_from_the_stand_in_then_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(devices, "pynvml", None)
    assert devices.visible_devices() is None  # unknown: nothing lists them
    monkeypatch.setenv(devices.CUDA_ENV, "GPU-3f2a, 1")
    assert devices.visible_devices() == ("GPU-3f2a", "1")
    monkeypatch.setenv(devices.CUDA_ENV, "")
    assert devices.visible_devices() == ()  # CUDA_VISIBLE_DEVICES="" hides every GPU
    monkeypatch.setenv(devices.STAND_IN_ENV, "0,1")
    assert devices.visible_devices() == ("0", "1")


class FakeNvml:
    """nvidia-ml-py's calls the rule makes, on a machine with ``count`` GPUs (None: no driver)."""

    class NVMLError(Exception):
        pass

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.open = False

    def nvmlInit(self) -> None:
        if self.count is None:
            raise self.NVMLError("NVML Shared Library Not Found")
        self.open = True

    def nvmlDeviceGetCount(self) -> int:
        assert self.open and self.count is not None
        return self.count

    def nvmlShutdown(self) -> None:
        self.open = False


def test_without_a_list_the_visible_devices_are_the_gpus_nvml_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    nvml = FakeNvml(4)
    monkeypatch.setattr(devices, "pynvml", nvml)
    assert devices.visible_devices() == ("0", "1", "2", "3") and not nvml.open
    monkeypatch.setattr(devices, "pynvml", FakeNvml(None))  # nvidia-ml-py without a driver
    assert devices.visible_devices() == ()
