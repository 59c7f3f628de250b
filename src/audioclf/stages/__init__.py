"""One thin entry point per DVC stage: parse config, call library functions, write outputs.

Each stage reads ``params.yaml`` and takes Hydra overrides on its command line, e.g.
``python -m audioclf.stages.resample audio.sampling_rate=16000``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

import datasets
from omegaconf import DictConfig

from audioclf.config import load_params

log = logging.getLogger("audioclf")

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    RuntimeError,
)


def run_stage(body: Callable[[DictConfig], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage body on the composed config; expected failures exit 1 with one clear line."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(body.__doc__ or "")
        return
    datasets.disable_caching()
    try:
        body(load_params(args))
    except EXPECTED_ERRORS as err:
        log.error("%s", err)
        raise SystemExit(1) from err
