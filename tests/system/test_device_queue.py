"""GPUs shared out among queued experiments under a real `dvc queue start`, on a stand-in list
of two devices (``AUDIOCLF_DEVICES=0,1``): two experiments side by side get a device each, and
four on two devices all finish, never two holding one device at the same moment.

The experiments run a one-stage pipeline whose stage leases devices as train and evaluate do
(:func:`audioclf.devices.lease_devices`), holds them a moment and records when it held which.
DVC starts queued experiments seconds apart: the stage waits until all of them run before it
leases, so that each counts them all (one that started alone would take every device).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import yaml

from audioclf.devices import STAND_IN_ENV
from audioclf.testing import REPO_ROOT, dvc, git, queue_start, wait_for_queue

STAGE = """
import json, os, sys, time
from pathlib import Path
from audioclf.devices import lease_devices

together, hold_s = int(sys.argv[1]), float(sys.argv[2])
root = Path(os.environ["DVC_ROOT"])
(root / "arrived").mkdir(exist_ok=True)
(root / "arrived" / str(os.getpid())).touch()
deadline = time.monotonic() + 300
while len(list((root / "arrived").iterdir())) < together and time.monotonic() < deadline:
    time.sleep(0.2)
with lease_devices(poll_s=0.2) as lease:
    start = time.time()
    time.sleep(hold_s)
    end = time.time()
record = {"devices": lease.devices, "rule": lease.rule, "waited_s": lease.waited_s,
          "start": start, "end": end}
with open(root / "leases.jsonl", "a") as out:
    out.write(json.dumps(record) + "\\n")
Path("held.json").write_text(json.dumps(record))
"""


def leasing_repo(root: Path, together: int) -> Path:
    """A committed git + DVC repository whose one stage leases devices (``together``: the
    experiments it waits for), with this checkout's package."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    dvc(root, "init", "-q")
    shutil.copytree(
        REPO_ROOT / "src" / "audioclf",
        root / "src" / "audioclf",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (root / "stage.py").write_text(STAGE)
    (root / "params.yaml").write_text(yaml.safe_dump({"n": 0, "together": together, "hold_s": 2}))
    stage = {
        "cmd": "python stage.py ${together} ${hold_s}",
        "deps": ["stage.py"],
        "params": ["n", "together", "hold_s"],
        "outs": [{"held.json": {"cache": False}}],
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"hold": stage}}))
    (root / ".gitignore").write_text("/arrived\n/leases.jsonl\n__pycache__/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a stage that leases devices")
    return root


def run_queue(root: Path, experiments: int, jobs: int) -> list[dict]:
    """Queue ``experiments`` (``n=1..``), run them ``jobs`` at a time on the stand-in devices;
    every experiment succeeded: their leases, in the order they began."""
    values = ",".join(str(n) for n in range(1, experiments + 1))
    queued = dvc(root, "exp", "run", "--queue", "-S", f"n={values}")
    assert queued.count("Queued experiment") == experiments, queued
    queue_start(root, jobs, **{STAND_IN_ENV: "0,1"})
    tasks = wait_for_queue(root, timeout=600)
    dvc(root, "queue", "stop")  # the idle workers
    assert [task[-1] for task in tasks] == ["Success"] * experiments, tasks
    leases = [json.loads(line) for line in (root / "leases.jsonl").read_text().splitlines()]
    assert len(leases) == experiments, leases
    return sorted(leases, key=lambda lease: lease["start"])


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_two_queued_experiments_get_different_devices(tmp_path: Path) -> None:
    first, second = run_queue(leasing_repo(tmp_path / "repo", together=2), 2, jobs=2)
    for lease in (first, second):
        assert lease["rule"] == "queued experiment: 2 devices / 2 running experiments"
        assert len(lease["devices"]) == 1
    assert {*first["devices"], *second["devices"]} == {"0", "1"}
    assert overlap(first, second)  # side by side, not one after the other


def test_four_experiments_on_two_devices_never_share_one(tmp_path: Path) -> None:
    leases = run_queue(leasing_repo(tmp_path / "repo", together=4), 4, jobs=4)
    assert leases[0]["rule"] == "queued experiment: 2 devices / 4 running experiments"
    assert {device for lease in leases for device in lease["devices"]} == {"0", "1"}
    for a, b in itertools.combinations(leases, 2):
        if overlap(a, b):
            assert not set(a["devices"]) & set(b["devices"]), (a, b)
    waited = [lease for lease in leases if lease["waited_s"] > 1]
    assert len(waited) >= 2, leases  # two of them waited for a device instead of sharing one
