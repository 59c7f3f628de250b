"""``python -m benchmarks``: run the suite (or ``--smoke``) into reports/bench.json + bench.md.

Run from the repository root; the suite works in a throwaway copy of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from audioclf.cli import positive_int
from benchmarks.common import report_errors
from benchmarks.suite import FIGURES, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure training throughput, time to accuracy, dvc repro, featurize "
        "scaling, inference and memory in a throwaway copy of this repository.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny data, a few steps, n=1")
    parser.add_argument(
        "--out", default="reports/bench.json", help="JSON path; the table goes next to it (.md)"
    )
    parser.add_argument("--only", default=None, help="comma-separated subset, e.g. repro,scaling")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads for everything measured (default: torch's, one per core)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (debugging)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    only = tuple(args.only.split(",")) if args.only else FIGURES
    unknown = set(only) - set(FIGURES)
    if unknown:
        print(f"benchmarks: error: unknown figure(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    result = run(
        Path.cwd(),
        out,
        smoke=args.smoke,
        only=(*only, "stages"),
        keep=args.keep,
        threads=args.threads,
    )
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report_errors("benchmarks", result["errors"])


if __name__ == "__main__":
    raise SystemExit(main())
