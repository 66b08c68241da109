"""``reidbench eval``: a checkpoint's clean metrics, behind its test-time defense, optionally re-ranked."""

from __future__ import annotations

import argparse
import logging

from . import options
from .report import Report, rounded

log = logging.getLogger("reidbench")


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: R1/R5/R10/mAP/mINP, optionally re-ranked")
    options.add_checkpoint(p)
    p.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking")
    p.add_argument("--ap", default="torchreid", choices=["torchreid", "market_official"])
    options.add_batch_size(p, 128)
    options.add_device(p)
    options.add_defense(p)
    options.add_json(p)
    p.set_defaults(func=run, torchrun=True)  # torchrun -m reidbench eval: data-parallel


def run(args: argparse.Namespace) -> int:
    from ..models.defended import DefendedModel
    from ..evaluation import evaluate_model

    device, model, card, ds = options.checkpoint_and_data(args)
    trained_on = card.get("dataset", {})
    if trained_on.get("name") == ds.name and trained_on.get("fingerprint") not in (None, ds.fingerprint()):
        log.warning("the %s files differ from the ones the model was trained with (fingerprint mismatch)", ds.name)
    defense = options.defense_spec(args, card).build()
    if defense is not None:
        model = DefendedModel(model, defense)
    m = evaluate_model(model, ds, rerank=args.rerank, batch_size=args.batch_size, device=device,
                       progress=not args.quiet, ap=args.ap)
    cross = f" (cross-domain: trained on {trained_on.get('name')})" if trained_on.get("name") not in (None, ds.name) else ""
    rep = Report(header=f"{args.checkpoint}{cross}, AP: {args.ap}, test-time defense: {defense!r}")
    rep.add(f"{options.model_title(card)} on {ds.name}", m)
    if args.rerank:
        rep.rows["+ re-ranking"] = m["rerank"]
    rep.data = {**rounded(m, args.rerank), "dataset": ds.name, "checkpoint": str(args.checkpoint),
                "trained_on": trained_on.get("name"), "ap": args.ap,
                "defense": defense.name if defense is not None else None}
    rep.print(args.json)
    return 0
