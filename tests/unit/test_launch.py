"""conf/launch/ -> the train stage's launch: one process in-process, several through Accelerate's
own launcher with the arguments its parser accepts, machines ranked from the command line."""

from __future__ import annotations

import pytest
from accelerate.commands.launch import launch_command_parser

from audioclf import launch
from audioclf.config import ConfigError, compose_conf
from audioclf.testing import REPO_ROOT


def planned(*overrides: str, visible_gpus: int | None = None) -> launch.Launch:
    return launch.plan(compose_conf(overrides, root=REPO_ROOT), visible_gpus=visible_gpus)


def parsed(plan: launch.Launch, rank: int = 0, *stage_args: str):
    return launch_command_parser().parse_args(plan.accelerate_args(rank, stage_args))


@pytest.fixture(autouse=True)
def _two_cores_no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv(launch.MACHINE_RANK_ENV, raising=False)
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)


def test_the_default_is_one_process_run_in_the_stage_s_own_process() -> None:
    plan = planned()
    assert plan.in_process and plan.num_processes == plan.num_machines == 1
    assert plan.environment(train_threads=None) == {}
    assert planned("launch.cpu=true").environment(train_threads=None) == {
        launch.USE_CPU_ENV: "true"
    }


def test_cpu_processes_are_accelerate_multi_process_on_the_cpu_with_the_cores_shared() -> None:
    plan = planned("launch=cpu_processes")
    args = parsed(plan, 0, "train.epochs=2")
    # --multi_gpu with ACCELERATE_USE_CPU: `--cpu --num_processes 2` would start one process
    assert args.multi_gpu and not args.cpu and args.num_processes == 2 and args.num_machines == 1
    assert args.module and args.training_script == launch.TRAIN_MODULE
    assert args.training_script_args == ["train.epochs=2"]
    assert args.mixed_precision == "no"
    assert plan.environment(train_threads=None) == {
        launch.USE_CPU_ENV: "true",
        "OMP_NUM_THREADS": "1",
    }
    assert "OMP_NUM_THREADS" not in plan.environment(train_threads=2)  # train pins its own
    four = planned("launch=cpu_processes", "launch.num_processes=4")
    assert four.environment(train_threads=None)["OMP_NUM_THREADS"] == "1"  # never below one


def test_gpus_start_one_process_per_visible_gpu() -> None:
    plan = planned("launch=gpus", "train.mixed_precision=bf16", visible_gpus=4)
    args = parsed(plan)
    assert (args.num_processes, args.mixed_precision) == (4, "bf16")
    assert launch.USE_CPU_ENV not in plan.environment(train_threads=None)
    assert planned("launch=gpus", visible_gpus=1).in_process
    with pytest.raises(ConfigError, match="no GPU is visible"):
        planned("launch=gpus", visible_gpus=0)
    with pytest.raises(ConfigError, match=r"launch\.cpu is true"):
        planned("launch=gpus", "launch.cpu=true", visible_gpus=2)


def test_machines_need_the_main_address_and_take_their_rank_from_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"launch\.main_process_ip"):
        planned("launch=machines", visible_gpus=2)
    plan = planned("launch=machines", "launch.main_process_ip=10.0.0.1", visible_gpus=2)
    assert (plan.num_processes, plan.num_machines, plan.processes_per_machine) == (4, 2, 2)
    rank, overrides = launch.parse_args(["--machine-rank", "1", "train.epochs=2"])
    assert (rank, overrides) == (1, ["train.epochs=2"])
    args = parsed(plan, launch.machine_rank(rank, plan))
    assert (args.machine_rank, args.main_process_ip, args.main_process_port) == (
        1,
        "10.0.0.1",
        29500,
    )
    assert launch.machine_rank(None, plan) == 0  # the main machine: `dvc repro`
    monkeypatch.setenv(launch.MACHINE_RANK_ENV, "1")
    assert launch.machine_rank(None, plan) == 1
    with pytest.raises(ConfigError, match=r"outside 0\.\.1"):
        launch.machine_rank(2, plan)


def test_processes_must_divide_evenly_among_machines() -> None:
    with pytest.raises(ConfigError, match=r"multiple of launch\.num_machines"):
        planned(
            "launch=machines",
            "launch.main_process_ip=10.0.0.1",
            "launch.cpu=true",
            "launch.num_processes=3",
        )
    cpu = planned(
        "launch=machines",
        "launch.main_process_ip=127.0.0.1",
        "launch.cpu=true",
        "launch.num_processes=2",
    )
    assert (cpu.processes_per_machine, cpu.environment(None)["OMP_NUM_THREADS"]) == (1, "2")
