"""The command line of ``python -m benchmarks.gpu`` (see :mod:`benchmarks.gpu`).

``--worker`` is one process of the ``accelerate launch`` figure (:mod:`.launch`), not for users.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import report_errors
from benchmarks.gpu.report import summary
from benchmarks.gpu.settings import mode_settings
from benchmarks.gpu.suite import run
from benchmarks.gpu.training import throughput
from benchmarks.gpu.wheels import missing_requirements, read_present

log = logging.getLogger("benchmarks.gpu")


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (this package imports no
    ``audioclf.cli``, which a GPU machine's stock image cannot import)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description="wav2vec2-base-sized training samples/s and peak GPU memory (fp32, bf16; "
        "one GPU and all GPUs) and a one-epoch dvc repro of the flagship recipe's code path.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps, on the CPU")
    parser.add_argument("--out", default="reports/gpu.json", help="the JSON report")
    parser.add_argument(
        "--steps", type=_integer_at_least(1), default=None, help="timed steps per arm"
    )
    parser.add_argument(
        "--warmup", type=_integer_at_least(0), default=None, help="untimed steps first"
    )
    parser.add_argument(
        "--processes",
        type=_integer_at_least(1),
        default=None,
        help="processes of the accelerate launch figure (default: all GPUs)",
    )
    parser.add_argument("--no-repro", action="store_true", help="skip the dvc repro part")
    parser.add_argument(
        "--repro-skipped",
        default=None,
        metavar="REASON",
        help="record the dvc repro part as not run, for this reason (scripts/gpu_check.sh)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument(
        "--missing-requirements",
        default=None,
        metavar="PRESENT",
        help="print name==version of what the project needs that the package list PRESENT "
        "(a GPU machine's pip list) lacks, and exit (scripts/gpu_check.sh --fetch-wheels)",
    )
    parser.add_argument("--worker", default=None, metavar="RESULT", help=argparse.SUPPRESS)
    return parser


def worker(args: argparse.Namespace) -> int:
    """One process of ``accelerate launch``: both precisions; the main process writes them."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    arms = throughput(mode_settings(args.smoke, args.steps, args.warmup, cpu=cpu))
    if os.environ.get("RANK", "0") == "0":  # set by accelerate launch
        Path(args.worker).write_text(json.dumps(arms, indent=2), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.worker:
        return worker(args)
    if args.missing_requirements is not None:
        listed = args.missing_requirements
        present = read_present(Path(listed)) if listed else set()
        print("\n".join(missing_requirements(present)))
        return 0
    out = Path(args.out)
    result = run(
        out,
        smoke=args.smoke,
        steps=args.steps,
        warmup=args.warmup,
        repro=not args.no_repro,
        repro_skipped=args.repro_skipped,
        processes=args.processes,
        keep=args.keep,
    )
    for line in summary(result):
        print(line)
    print(f"wrote {out}")
    return report_errors("benchmarks.gpu", result["errors"])


if __name__ == "__main__":
    raise SystemExit(main())
