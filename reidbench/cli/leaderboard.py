"""``reidbench leaderboard``: tables from matrix records, Markdown, CSV or HTML."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="tables from matrix records: Markdown, CSV or HTML")
    p.add_argument("--results", default="results", help="results folder of `reidbench matrix` (default: %(default)s)")
    p.add_argument("--format", default="md", choices=["md", "csv", "html"])
    p.add_argument("--rerank", action="store_true", help="the metrics after k-reciprocal re-ranking")
    p.add_argument("--title", default=None)
    p.add_argument("--out", default=None, help="write to FILE (atomically) instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..leaderboard import render
    from ..utils import atomic_write_text

    text = render(args.results, args.format, rerank=args.rerank, title=args.title)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
