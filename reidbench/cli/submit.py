"""``reidbench submit``: check a record set before it joins a shared board."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("submit", help="check a results folder before it joins a shared board (errors keep it off)")
    p.add_argument("--results", required=True, metavar="DIR", help="the results folder to check")
    p.add_argument("--board", default=None, metavar="DIR",
                   help="the board's results folder: also check every conflict and protocol difference with it")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..leaderboard.merge import validate_submission

    problems = validate_submission(args.results, board=args.board)
    errors = [p for p in problems if p.level == "error"]
    if args.json:
        print(json.dumps({"ok": not errors, "errors": len(errors), "warnings": len(problems) - len(errors),
                          "problems": [{"level": p.level, "where": p.where, "message": p.message} for p in problems]}))
    else:
        for p in problems:
            print(p)
        verdict = "can join" if not errors else "cannot join"
        print(f"{args.results}: {len(errors)} errors, {len(problems) - len(errors)} warnings: {verdict} "
              + (f"the board {args.board}" if args.board else "a board"))
    return 1 if errors else 0
