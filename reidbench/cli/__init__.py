"""The ``reidbench`` command line: one module per command.

Each command module (``list``, ``data``, ``train``, ``eval``, ``attack``, ``matrix``,
``leaderboard``, ``card``, ``submit``, ``reproduce``, ``viz``) has ``add_parser(subparsers)`` and the function(s) its
parser runs. Options several commands share are declared once in :mod:`.options` (with the readers
that turn them into objects); evaluation reports are printed by :mod:`.report`. Every command
defaults to the embedded dataset ``synthreid`` so that it runs on a fresh machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Callable, Sequence

from .. import __version__
from ..registry import UnknownNameError, load_builtins
from .options import SYNTH_SIZES, CLIError

__all__ = ["main", "build_parser", "CLIError", "SYNTH_SIZES", "COMMANDS"]

#: the command modules, in the order `reidbench --help` lists them
COMMANDS = ("list", "train", "eval", "attack", "matrix", "leaderboard", "card", "submit", "reproduce", "viz", "data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reidbench",
        description="Benchmark the adversarial robustness of person re-identification models.",
        epilog="Every command defaults to the embedded synthetic dataset 'synthreid'; real datasets "
               "(market1501, dukemtmcreid, msmt17, cuhk03np) need --data-root pointing at your copy.",
    )
    p.add_argument("--version", action="version", version=f"reidbench {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        load_builtins()
    except ImportError as e:
        print(f"reidbench: error: {e}", file=sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        if _launched():
            return _run_distributed(func, args)
        return func(args)
    except (CLIError, UnknownNameError, FileNotFoundError, FileExistsError, ValueError, OSError,
            RuntimeError) as e:
        print(f"reidbench: error: {e}", file=sys.stderr)
        return 2


def _launched() -> bool:
    from .. import distributed

    return distributed.launched()


def _run_distributed(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """One of ``torchrun``'s processes: join the job (NCCL on GPUs, gloo on CPUs); rank 0 alone
    prints, shows progress and writes files."""
    from .. import distributed
    from .options import device

    if not getattr(args, "torchrun", False):
        raise CLIError(f"`reidbench {args.command}` runs in one process; under torchrun run `train`, `eval` or "
                       f"`attack` (a whole board on several machines: `reidbench matrix --executor ray`)")
    with distributed.session(device(getattr(args, "device", None))) as world:
        if world.is_main:
            return func(args)
        args.quiet = True
        logging.getLogger().setLevel(logging.ERROR)
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            return func(args)
