"""``reidbench reproduce RECIPE``: a paper's protocol, reidbench's numbers next to the paper's."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options
from .options import CLIError


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="run a paper's protocol and print reidbench's numbers next to the paper's")
    p.add_argument("recipe", help="the reproduction (`reidbench list reproductions`): seed-cvpr22 (Gong et al., "
                                  "CVPRW 2022, Tables 1, 4, 5, 6, 7)")
    p.add_argument("--dataset", default="market1501", help="market1501 (default) or dukemtmcreid (Table 4 only)")
    p.add_argument("--data-root", default=None, help="folder holding your copy of the dataset")
    p.add_argument("--smoke", action="store_true",
                   help="the same pipeline on a tiny synthreid with 1-epoch models (from scratch) and 2-step attacks "
                        "(compared with the paper's Market-1501 numbers; checks the plumbing, not the figures)")
    p.add_argument("--faithful", action="store_true",
                   help="the seed code's I/O and evaluation: JPEG-75 adversarial queries, Market-official "
                        "trapezoid AP, single-guide M-IFGSM, the seed's LTA details")
    p.add_argument("--adaptive", action="store_true", help="also run CS-aware (adaptive) twins (not in the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override every model's training epochs")
    options.add_init(p)
    options.add_device(p)
    options.add_batch_size(p)
    options.add_run_store(p, "results/<recipe>-<dataset>[-smoke]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.presets import is_synthetic
    from ..registry import REPRODUCTIONS
    from ..reproduce import render_comparison

    entry = REPRODUCTIONS.entry(args.recipe)  # an unknown name: the registry's error, with a suggestion
    runner = entry.obj
    dataset = "synthreid" if args.smoke else args.dataset
    if not args.smoke and not is_synthetic(dataset) and not args.data_root:
        raise CLIError(f"{entry.name} on {dataset} needs --data-root pointing at your copy of the dataset "
                       "(or --smoke for the same pipeline on a tiny synthreid)")
    suffix = "-smoke" if args.smoke else ""
    results = args.results or f"results/{entry.name}-{dataset}{suffix}{'-faithful' if args.faithful else ''}"
    table = runner(results, dataset=dataset, data_root=args.data_root, smoke=args.smoke, seed=args.seed,
                   faithful=args.faithful, adaptive=args.adaptive, device=options.device(args.device),
                   batch_size=args.batch_size, epochs=args.epochs, force=args.force, progress=not args.quiet,
                   store=args.checkpoints, echo=options.echo(args), init=args.init)
    print(render_comparison(table, "md", f"{entry.name} on {dataset}{' (smoke)' if args.smoke else ''}"))
    missing = int(table["reidbench"].isna().sum())
    print(f"{len(table)} paper numbers compared; {missing} without a reidbench value; "
          f"{Path(results) / 'reproduction.md'} and .csv written")
    return 0 if missing == 0 else 1
