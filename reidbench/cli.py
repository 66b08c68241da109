"""The ``reidbench`` command line.

``reidbench list``, ``reidbench data synth``, ``reidbench data check``; the commands of the other
stages (train, eval, attack, matrix, leaderboard) plug in as sub-commands of the same parser.
Every command defaults to the embedded dataset ``synthreid`` so that it runs on a fresh machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from tabulate import tabulate

from . import __version__
from .registry import ATTACKS, DATASETS, DEFENSES, MODELS, Registry, UnknownNameError

log = logging.getLogger("reidbench")

REGISTRIES: dict[str, Registry] = {"attacks": ATTACKS, "defenses": DEFENSES, "models": MODELS, "datasets": DATASETS}


class CLIError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


def _import_plugins() -> None:
    """Import the modules whose import registers entries (datasets, and later attacks, ...)."""
    import importlib

    for mod in ("reidbench.data", "reidbench.models", "reidbench.attacks", "reidbench.defenses"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a missing dependency inside an existing module is a real error
                raise


def _format_defaults(defaults: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        reg = REGISTRIES[kind]
        print(f"{kind} ({len(reg)})")
        if not len(reg):
            print("  (none registered yet)\n")
            continue
        rows = [[e.name, ", ".join(e.aliases), e.paper or e.summary, _format_defaults(e.defaults)]
                for e in reg.entries()]
        print(tabulate(rows, headers=["name", "aliases", "paper / reference", "defaults"], tablefmt="github",
                       maxcolwidths=[None, 24, 60, 60]))
        print()
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synthreid import default_synthreid_dir, generate_synthreid

    out = Path(args.out) if args.out else default_synthreid_dir(args.size, args.seed)
    path = generate_synthreid(out, size=args.size, seed=args.seed, workers=args.workers,
                              progress=not args.quiet, overwrite=args.force)
    from .data import load_dataset

    ds = load_dataset("synthreid", path)
    print(ds.summary())
    print(f"fingerprint: {ds.fingerprint()}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import load_dataset, load_images

    kwargs = {}
    if args.dataset.lower().startswith("synth"):
        kwargs["size"] = args.size
    ds = load_dataset(args.dataset, args.root, **kwargs)
    print(ds.summary())
    print(f"fingerprint: {ds.fingerprint()}")
    if args.decode:
        for split in ("train", "query", "gallery"):
            dec = load_images(ds.split(split), skip_corrupt=args.skip_corrupt, progress=not args.quiet,
                              desc=f"decoding {split}", use_cache=not args.no_cache)
            msg = f"{split}: decoded {len(dec)} images"
            if dec.skipped:
                msg += f", skipped {len(dec.skipped)} unreadable (first: {dec.skipped[0]})"
            print(msg)
    return 0


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

    sp = sub.add_parser("list", help="list registered attacks, defenses, models or datasets")
    sp.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="what to list (default: everything)")
    sp.set_defaults(func=cmd_list)

    dp = sub.add_parser("data", help="generate synthreid or check a dataset folder")
    dsub = dp.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="generate the synthreid dataset (Market-1501 layout)")
    s.add_argument("--out", help="output folder (default: $REIDBENCH_HOME/data/synthreid-<size>-seed<seed>-v<N>)")
    s.add_argument("--size", default="default", choices=["default", "tiny"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=None, help="rendering processes (default: up to 4)")
    s.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    s.set_defaults(func=cmd_data_synth)
    c = dsub.add_parser("check", help="validate a dataset folder and print its split statistics")
    c.add_argument("--dataset", default="synthreid", help="dataset name (see `reidbench list datasets`)")
    c.add_argument("--root", "--data-root", dest="root", default=None, help="folder holding the dataset")
    c.add_argument("--size", default="default", choices=["default", "tiny"], help="synthreid size")
    c.add_argument("--decode", action="store_true", help="also decode every image (fills the image cache)")
    c.add_argument("--skip-corrupt", action="store_true", help="with --decode: skip unreadable images, with a count")
    c.add_argument("--no-cache", action="store_true", help="with --decode: do not read or write the image cache")
    c.set_defaults(func=cmd_data_check)
    dp.set_defaults(func=lambda a: _missing_action(dp))
    return p


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


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
    _import_plugins()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CLIError, UnknownNameError, FileNotFoundError, FileExistsError, ValueError, OSError) as e:
        print(f"reidbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
