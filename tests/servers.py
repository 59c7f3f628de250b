"""Real servers on 127.0.0.1 for the system tests: a throwaway PostgreSQL cluster, and an MLflow
tracking server storing runs and registered models in it, proxying artifacts
(``--serve-artifacts``) to a local folder; any ``mlflow server`` over a store, and the waiting
for a server to answer and the stopping of its process group that every served test needs.

PostgreSQL refuses to run as root, so as root its server programs run as the ``postgres``
account (Debian's package creates it) through ``runuser``; clients (psycopg2, MLflow) run as
the caller. The cluster lives in a short ``/tmp`` folder the server account can enter (a Unix
socket path has a ~100-character limit; pytest's ``tmp_path`` may be longer and private to
root). ``.ci/run`` installs Debian's ``postgresql`` where ``initdb``/``pg_ctl`` are missing.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_ACCOUNT = "postgres"
SUPERUSER = "postgres"
DATABASE = "mlflow"
ROLE = "mlflow"
# Set by .ci/run: there a missing PostgreSQL fails the team tests instead of skipping them.
REQUIRE_ENV = "AUDIOCLF_REQUIRE_SERVERS"
BOOT_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else the newest Debian
    ``/usr/lib/postgresql/VERSION/bin`` (Debian keeps them off PATH)."""
    on_path = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(on_path) and Path(on_path[0]).parent == Path(on_path[1]).parent:
        return Path(on_path[0]).parent
    versions = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (p.parent / "pg_ctl").is_file() and re.fullmatch(r"\d+", p.parent.parent.name)
    ]
    return max(versions, key=lambda d: int(d.parent.name), default=None)


def unavailable(reason: str) -> None:
    """Skip (a developer machine without PostgreSQL), or fail where CI requires the servers."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
    pytest.skip(reason)


@dataclass
class Postgres:
    """A running cluster: the ``mlflow`` role owns the ``mlflow`` database, password auth on
    127.0.0.1 (the superuser only through the Unix socket in ``base``)."""

    bin_dir: Path
    base: Path
    port: int
    password: str
    run_as: list[str]

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def sqlalchemy_uri(self) -> str:
        """The backend store URI without the password (psycopg2 takes it from PGPASSWORD)."""
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def connect(self):
        """A psycopg2 connection as the ``mlflow`` role over TCP, as the MLflow server's."""
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=ROLE, password=self.password, dbname=DATABASE
        )

    def pg_ctl(self, *args: str) -> None:
        command = [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        run_checked(command, cwd=self.base, log=self.log)


def run_checked(command: list[str], *, cwd: Path, log: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log and log.is_file() else ""
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            f"\n{server_log}"
        )


def server_account() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a non-root account ([] if not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        unavailable(f"running as root and there is no '{SERVER_ACCOUNT}' account to run PostgreSQL")
    if not shutil.which("runuser"):
        unavailable("running as root and runuser (util-linux) is missing to run PostgreSQL")
    return ["runuser", "-u", SERVER_ACCOUNT, "--"]


def start_postgres() -> Postgres:
    """initdb + pg_ctl start on a free port of 127.0.0.1, then the role and the database."""
    import psycopg2

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql")
    run_as = server_account()
    base = Path(tempfile.mkdtemp(prefix="audioclf-pg-"))
    if run_as:
        account = pwd.getpwnam(SERVER_ACCOUNT)
        os.chown(base, account.pw_uid, account.pw_gid)
    server = Postgres(bin_dir, base, free_port(), secrets.token_hex(16), run_as)
    try:
        run_checked(
            [
                *run_as,
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=base,
        )
        # -F: no fsync (a throwaway cluster); -k: the socket in base, not /var/run/postgresql.
        options = f"-h 127.0.0.1 -p {server.port} -k {base} -F"
        server.pg_ctl("start", "-w", "-t", "60", "-l", str(server.log), "-o", options)
        admin = psycopg2.connect(
            host=str(base), port=server.port, user=SUPERUSER, dbname="postgres"
        )
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (server.password,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        admin.close()
    except BaseException:
        stop_postgres(server)
        raise
    return server


def create_database(server: Postgres, name: str) -> str:
    """Another database of the cluster owned by the ``mlflow`` role (an Optuna study's, say);
    its SQLAlchemy URL with the role's password."""
    import psycopg2

    admin = psycopg2.connect(
        host=str(server.base), port=server.port, user=SUPERUSER, dbname="postgres"
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
    admin.close()
    return f"postgresql+psycopg2://{ROLE}:{server.password}@127.0.0.1:{server.port}/{name}"


def stop_postgres(server: Postgres) -> None:
    if (server.data_dir / "postmaster.pid").exists():
        server.pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
    shutil.rmtree(server.base, ignore_errors=True)


@dataclass
class MlflowServer:
    url: str
    artifacts: Path
    log: Path
    process: subprocess.Popen


def start_mlflow_server(postgres: Postgres, root: Path) -> MlflowServer:
    """``mlflow server`` on the cluster, artifacts proxied to ``root/artifacts``; returns once
    ``/health`` answers (the first start creates MLflow's tables: seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    artifacts, log = root / "artifacts", root / "mlflow-server.log"
    url, process = serve_mlflow(
        postgres.sqlalchemy_uri(),
        root,
        log,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        PGPASSWORD=postgres.password,
    )
    return MlflowServer(url, artifacts, log, process)


def serve_mlflow(
    backend_store_uri: str, cwd: Path, log: Path, *options: str, **env: str
) -> tuple[str, subprocess.Popen]:
    """``mlflow server`` over ``backend_store_uri`` on a free 127.0.0.1 port, started in
    ``cwd`` in its own process group, logging to ``log``: its URL and process once ``/health``
    answers (the tracking URI of the caller's environment is not passed on)."""
    port = free_port()
    server_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # MLflow's job runner (GenAI scorers: six huey consumers) is of no use here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **env,
    }
    server_env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        *options,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", process, log, "mlflow server")
    except RuntimeError:
        stop_group(process)
        raise
    return url, process


def wait_until_answers(
    url: str, process: subprocess.Popen, log: Path, what: str, timeout_s: float = BOOT_TIMEOUT_S
) -> None:
    """Return once ``url`` answers 200; a RuntimeError with the end of ``log`` when the
    server ``what`` exits first or is not up in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not up in {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_mlflow_server(server: MlflowServer) -> None:
    """The server and what it started (uvicorn), as one process group."""
    stop_group(server.process)


def stop_group(process: subprocess.Popen) -> None:
    """A server started in its own process group, and what it started, however it ends."""
    group = process.pid
    signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while signal_group(group, 0) and time.monotonic() < deadline:
        process.poll()  # reaps the server itself; its children go to init
        time.sleep(0.2)
    if signal_group(group, signal.SIGKILL):
        time.sleep(0.5)
    process.wait(timeout=10)


def signal_group(group: int, sig: int) -> bool:
    """Signal a process group; False once none of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    return True
