"""A one-node SLURM cluster on 127.0.0.1 for the tests: a private munged (own key and socket),
slurmctld and slurmd with their state, spool and logs in a temporary folder, as root.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them). Where they are missing, or
not root, the test is skipped (failed where CI requires the servers: :func:`unavailable`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, unavailable

DAEMONS = ("munged", "slurmctld", "slurmd")
BOOT_TIMEOUT_S = 60


@dataclass
class Slurm:
    base: Path

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What ``sbatch``/``squeue`` need to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *command: str) -> str:
        result = subprocess.run(
            command,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stdout}{result.stderr}{self.logs()}")
        return result.stdout

    def logs(self) -> str:
        return "".join(
            f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.base.glob("*.log"))
        )

    def wait_for_jobs(self, job_id: str, timeout_s: float) -> None:
        """Until ``squeue`` lists no task of ``job_id``."""
        deadline = time.monotonic() + timeout_s
        while self.run("squeue", "-h", "-j", job_id).strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM job {job_id} still queued or running{self.logs()}")
            time.sleep(3)


def program(name: str) -> str | None:
    """A daemon on PATH, else in /usr/sbin (where Debian puts them, off a user's PATH)."""
    found = shutil.which(name) or Path("/usr/sbin", name)
    return str(found) if Path(found).is_file() else None


def start_slurm(cpus: int = 2) -> Slurm:
    missing = [d for d in DAEMONS if program(d) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        unavailable("the test cluster's slurmd runs as root")
    base = Path(tempfile.mkdtemp(prefix="audioclf-slurm-"))
    for folder in ("state", "spool"):
        (base / folder).mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    munge_socket = base / "munge.socket"
    host = socket.gethostname()
    settings = {
        "ClusterName": "audioclf",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": str(free_port()),
        "SlurmdPort": str(free_port()),
        "SlurmUser": "root",
        "AuthType": "auth/munge",
        "AuthInfo": f"socket={munge_socket}",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "ReturnToService": "2",
        "StateSaveLocation": str(base / "state"),
        "SlurmdSpoolDir": str(base / "spool"),
        "SlurmctldPidFile": str(base / "slurmctld.pid"),
        "SlurmdPidFile": str(base / "slurmd.pid"),
        "SlurmctldLogFile": str(base / "slurmctld.log"),
        "SlurmdLogFile": str(base / "slurmd.log"),
    }
    lines = [f"{k}={v}" for k, v in settings.items()]
    lines.append(f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN")
    lines.append("PartitionName=audioclf Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    cluster = Slurm(base)
    cluster.conf.write_text("\n".join(lines) + "\n")
    try:
        cluster.run(
            program("munged"),
            "--force",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={base / 'munged.pid'}",
            f"--seed-file={base / 'munged.seed'}",
            f"--log-file={base / 'munged.log'}",
        )
        cluster.run(program("slurmctld"), "-f", str(cluster.conf))
        cluster.run(program("slurmd"), "-f", str(cluster.conf))
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while "idle" not in cluster.run("sinfo", "-h", "-o", "%t"):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the SLURM node is not idle in {BOOT_TIMEOUT_S} s{cluster.logs()}"
                )
            time.sleep(1)
    except BaseException:
        stop_slurm(cluster)
        raise
    return cluster


def stop_slurm(cluster: Slurm) -> None:
    """The daemons by their pid files (slurmd first), then the folder."""
    for name in ("slurmd", "slurmctld", "munged"):
        pid_file = cluster.base / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text().split()[0])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
    shutil.rmtree(cluster.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running, not a zombie (a daemon's parent is init, which may not reap it here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
