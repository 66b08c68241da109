"""``reidbench leaderboard``: tables from matrix records (Markdown, CSV, HTML) or a static board site;
several results folders merge into one board."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="tables from matrix records: Markdown, CSV, HTML, or a static site")
    p.add_argument("--results", nargs="+", default=["results"], metavar="DIR",
                   help="results folder(s) of `reidbench matrix`; several merge into one board, the first being the "
                        "board and the others submissions (conflicting cells or another protocol are refused)")
    p.add_argument("--format", default="md", choices=["md", "csv", "html", "compact", "site"],
                   help="compact: a narrow Markdown table for a README (adaptive twins on a second line); site: a self-contained "
                        "folder (sortable board, rules, a page per row, board.json) in --out")
    p.add_argument("--rerank", action="store_true", help="the metrics after k-reciprocal re-ranking (tables)")
    p.add_argument("--title", default=None)
    p.add_argument("--out", default=None, help="write to FILE (atomically) instead of stdout; the folder for --format site")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_text
    from .options import CLIError

    if args.format == "site":
        from ..leaderboard.site import write_site

        if not args.out:
            raise CLIError("--format site writes a folder: give it as --out DIR")
        if args.rerank:
            raise CLIError("--rerank is for the tables; the site shows both (each row page and board.json)")
        out = write_site(args.results, args.out, title=args.title)
        print(f"wrote {out}/index.html (open it in a browser; no network needed)")
        return 0
    from ..leaderboard import render

    text = render(args.results, args.format, rerank=args.rerank, title=args.title)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
