"""``reidbench data synth`` (generate synthreid) and ``reidbench data check`` (validate a folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import SYNTH_SIZES


def add_parser(sub) -> None:
    dp = sub.add_parser("data", help="generate synthreid or check a dataset folder")
    dsub = dp.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="generate the synthreid dataset (Market-1501 layout)")
    s.add_argument("--out", help="output folder (default: $REIDBENCH_HOME/data/synthreid-<size>-seed<seed>-v<N>)")
    s.add_argument("--size", default="default", choices=list(SYNTH_SIZES))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=None, help="rendering processes (default: up to 4)")
    s.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    s.set_defaults(func=synth)
    c = dsub.add_parser("check", help="validate a dataset folder and print its split statistics")
    c.add_argument("--dataset", default="synthreid", help="dataset name (see `reidbench list datasets`)")
    c.add_argument("--root", "--data-root", dest="root", default=None, help="folder holding the dataset")
    c.add_argument("--size", default="default", choices=list(SYNTH_SIZES), help="synthreid size")
    c.add_argument("--decode", action="store_true", help="also decode every image (fills the image cache)")
    c.add_argument("--skip-corrupt", action="store_true", help="with --decode: skip unreadable images, with a count")
    c.add_argument("--no-cache", action="store_true", help="with --decode: do not read or write the image cache")
    c.set_defaults(func=check)
    dp.set_defaults(func=lambda a: _help(dp))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _summary(ds) -> None:
    print(ds.summary())
    print(f"fingerprint: {ds.fingerprint()}")


def synth(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..data.synthreid import default_synthreid_dir, generate_synthreid

    out = Path(args.out) if args.out else default_synthreid_dir(args.size, args.seed)
    path = generate_synthreid(out, size=args.size, seed=args.seed, workers=args.workers,
                              progress=not args.quiet, overwrite=args.force)
    _summary(load_dataset("synthreid", path))
    return 0


def check(args: argparse.Namespace) -> int:
    from ..data import load_images, open_dataset

    ds = open_dataset(args.dataset, args.root, size=args.size, progress=not args.quiet)
    _summary(ds)
    if args.decode:
        for split in ("train", "query", "gallery"):
            dec = load_images(ds.split(split), skip_corrupt=args.skip_corrupt, progress=not args.quiet,
                              desc=f"decoding {split}", use_cache=not args.no_cache)
            msg = f"{split}: decoded {len(dec)} images"
            if dec.skipped:
                msg += f", skipped {len(dec.skipped)} unreadable (first: {dec.skipped[0]})"
            print(msg)
    return 0
