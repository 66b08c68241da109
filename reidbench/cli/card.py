"""``reidbench card``: write a board row's model card from a checkpoint's sidecar plus what only the
user knows (paper, venue, link, who ran it, an external source)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..leaderboard.cards import SOURCES

    p = sub.add_parser("card", help="write a board row's model card (beside the records) from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="model.pt written by `reidbench train` (its sidecar is read)")
    p.add_argument("--results", required=True, metavar="DIR", help="the board's results folder (cards/ is written there)")
    p.add_argument("--model", default=None, help="the row's model name (default: the checkpoint's preset)")
    p.add_argument("--defense", default=None,
                   help="the row's test-time defense spec (default: the preset's, e.g. cs for jad; else none)")
    p.add_argument("--source", default=None, choices=list(SOURCES),
                   help="where the model comes from (default: preset for a preset's checkpoint, else checkpoint)")
    p.add_argument("--source-name", default="", help="the torchreid / fast-reid model name, or the file's origin")
    p.add_argument("--paper", default="", help="authors, title (default for presets: the training defense's paper)")
    p.add_argument("--venue", default="", help="venue and year, e.g. 'CVPR 2022'")
    p.add_argument("--url", default="", help="a link to the paper or the weights")
    p.add_argument("--description", default="")
    p.add_argument("--initialisation", default=None, help="e.g. 'imagenet (efficientnet-lite0)' (default: from the sidecar)")
    p.add_argument("--by", default="", help="who ran the model (a name, a lab)")
    p.add_argument("--no-verify", action="store_true", help="skip checking the weights' SHA-256 against the sidecar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..leaderboard.cards import card_from_checkpoint, write_card

    card = card_from_checkpoint(args.checkpoint, model=args.model, defense=args.defense, source=args.source,
                                source_name=args.source_name, paper=args.paper, venue=args.venue, url=args.url,
                                description=args.description, initialisation=args.initialisation,
                                submitted_by=args.by, verify=not args.no_verify)
    path = write_card(args.results, card)
    print(f"wrote {path} ({card.model} / {card.defense}, checkpoint {card.checkpoint_sha256[:12]})")
    return 0
