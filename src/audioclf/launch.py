"""The train stage's command: ``params.launch`` (conf/launch/) turned into processes and machines.

dvc.yaml runs train as ``python -m audioclf.launch``, so ``dvc repro`` and ``dvc exp run`` train
on what the config names, and the launch configuration is a param DVC locks. One process runs
the stage here, in this process, as ``python -m audioclf.stages.train`` would; several go
through Accelerate's own launcher (the ``accelerate launch`` command line, parsed and run by
Accelerate), which starts them and waits for them all. CPU processes are Accelerate's
multi-process launch with ``ACCELERATE_USE_CPU`` (gloo): its ``--cpu`` flag alone would start
one process, whatever ``--num_processes`` says.

The machine rank differs per machine, so it is no param: machine rank 0 runs ``dvc repro``,
every other machine runs the same training from its own clone (same commit, ``dvc pull``)::

    python -m audioclf.launch --machine-rank 1      # or AUDIOCLF_MACHINE_RANK=1

Arguments other than ``--machine-rank`` are the stage's value overrides (``train.epochs=2``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.commands.launch import launch_command, launch_command_parser
from omegaconf import DictConfig

from audioclf.config import ConfigError, load_params, require
from audioclf.devices import lease_devices
from audioclf.stages import run_stage
from audioclf.stages.train import train
from audioclf.threads import thread_budget, usable_cores

log = logging.getLogger(__name__)

TRAIN_MODULE = "audioclf.stages.train"
MACHINE_RANK_ENV = "AUDIOCLF_MACHINE_RANK"
USE_CPU_ENV = "ACCELERATE_USE_CPU"  # Accelerate's switch: the processes run on the CPU (gloo)


@dataclass(frozen=True)
class Launch:
    """What to start: ``num_processes`` on all machines together, ``num_machines`` of them."""

    num_processes: int
    num_machines: int
    cpu: bool
    mixed_precision: str
    main_process_ip: str | None = None
    main_process_port: int | None = None

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines

    @property
    def in_process(self) -> bool:
        """One process on one machine: the stage runs here, without a launcher."""
        return self.num_processes == 1 and self.num_machines == 1

    def accelerate_args(self, machine_rank: int, stage_args: Sequence[str] = ()) -> list[str]:
        """The arguments of ``accelerate launch`` for machine ``machine_rank``."""
        args = [
            "--multi_gpu",
            "--num_processes",
            str(self.num_processes),
            "--num_machines",
            str(self.num_machines),
            "--mixed_precision",
            self.mixed_precision,
            "--dynamo_backend",
            "no",
        ]
        if self.num_machines > 1:
            args += ["--machine_rank", str(machine_rank), "--main_process_ip", self.main_process_ip]
        if self.main_process_port is not None:
            args += ["--main_process_port", str(self.main_process_port)]
        return [*args, "--module", TRAIN_MODULE, *stage_args]

    def environment(self, train_threads: int | None) -> dict[str, str]:
        """Variables the processes need: the CPU switch, and each process's share of the cores
        (the thread rule's count, :mod:`audioclf.threads`, divided among the processes of this
        machine) unless ``train.num_threads`` or ``OMP_NUM_THREADS`` already says it."""
        env = {USE_CPU_ENV: "true"} if self.cpu else {}
        if not self.in_process and not train_threads and not os.environ.get("OMP_NUM_THREADS"):
            share = thread_budget().threads or usable_cores()
            env["OMP_NUM_THREADS"] = str(max(1, share // self.processes_per_machine))
        return env


def plan(cfg: DictConfig, visible_gpus: int | None = None) -> Launch:
    """The launch ``cfg.launch`` asks for; ``num_processes: null`` counts the visible GPUs
    (``visible_gpus``, else torch's count, which follows ``CUDA_VISIBLE_DEVICES``)."""
    launch = cfg.launch
    machines = int(launch.num_machines)
    if machines < 1:
        raise ConfigError(f"launch.num_machines must be 1 or more, got {machines}")
    if launch.num_processes is None:
        gpus = torch.cuda.device_count() if visible_gpus is None else visible_gpus
        if launch.cpu or gpus == 0:
            raise ConfigError(
                "launch.num_processes is null, one process per visible GPU, but "
                + ("launch.cpu is true" if launch.cpu else "no GPU is visible")
                + ": set launch.num_processes (with launch.cpu=true for CPU processes)"
            )
        processes = gpus * machines
    else:
        processes = int(launch.num_processes)
    if processes < machines or processes % machines:
        raise ConfigError(
            f"launch.num_processes ({processes}, all machines together) must be a multiple of "
            f"launch.num_machines ({machines})"
        )
    port = launch.main_process_port
    return Launch(
        num_processes=processes,
        num_machines=machines,
        cpu=bool(launch.cpu),
        mixed_precision=str(cfg.train.mixed_precision),
        main_process_ip=str(require(cfg, "launch.main_process_ip")) if machines > 1 else None,
        main_process_port=None if port is None else int(port),
    )


def machine_rank(given: int | None, launch: Launch) -> int:
    """``--machine-rank``, else ``AUDIOCLF_MACHINE_RANK``, else 0 (the main machine)."""
    rank = given if given is not None else int(os.environ.get(MACHINE_RANK_ENV) or 0)
    if not 0 <= rank < launch.num_machines:
        raise ConfigError(
            f"machine rank {rank} is outside 0..{launch.num_machines - 1} "
            f"(launch.num_machines: {launch.num_machines})"
        )
    return rank


def parse_args(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m audioclf.launch",
        description="Run the train stage on the processes and machines of params.launch.",
    )
    parser.add_argument(
        "--machine-rank",
        type=int,
        default=None,
        help=f"this machine's rank (default: ${MACHINE_RANK_ENV}, else 0, the main machine)",
    )
    known, overrides = parser.parse_known_args(argv)
    return known.machine_rank, overrides


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    given_rank, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = load_params(overrides)
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(1) from err
    # The launcher holds the experiment's GPUs (audioclf.devices) while its processes run:
    # they keep them, and the count of processes is that of the GPUs leased.
    with lease_devices(cfg.launch.devices):
        try:
            launch = plan(cfg)
            rank = machine_rank(given_rank, launch)
        except ConfigError as err:
            log.error("%s", err)
            raise SystemExit(1) from err
        os.environ.update(launch.environment(cfg.train.get("num_threads")))
        if launch.in_process:
            run_stage(train, overrides)
            return
        args = launch.accelerate_args(rank, overrides)
        log.info(
            "machine %d of %d: accelerate launch %s", rank, launch.num_machines, shlex.join(args)
        )
        launch_command(launch_command_parser().parse_args(args))


if __name__ == "__main__":
    main()
