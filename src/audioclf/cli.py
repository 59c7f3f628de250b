"""The ``audioclf`` command: helpers around the pipeline (the stages themselves run under DVC)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _params(args: argparse.Namespace) -> int:
    from audioclf.config import write_params

    path = write_params(args.overrides)
    print(
        f"wrote {path} from conf/" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audioclf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    params = commands.add_parser(
        "params", help="regenerate params.yaml from conf/ (Hydra overrides allowed)"
    )
    params.add_argument("overrides", nargs="*", help="e.g. data=minds14 train.epochs=3")
    params.set_defaults(func=_params)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
