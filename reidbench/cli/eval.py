"""``reidbench eval``: a checkpoint's clean metrics, behind its test-time defense, optionally re-ranked;
with ``--adversarial``, the metrics of saved adversarial queries (``reidbench attack --save``) re-scored
on it -- a submission's queries verified without running its attack again."""

from __future__ import annotations

import argparse
import logging

from . import options
from .options import CLIError
from .report import Report, attack_report, rounded

log = logging.getLogger("reidbench")


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: R1/R5/R10/mAP/mINP, optionally re-ranked")
    options.add_checkpoint(p)
    p.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking")
    p.add_argument("--ap", default="torchreid", choices=["torchreid", "market_official"])
    options.add_batch_size(p, 128)
    options.add_device(p)
    options.add_defense(p)
    p.add_argument("--adversarial", "--adv-file", default=None, metavar="FILE",
                   help="re-score saved adversarial queries (FILE.pt or a folder from `reidbench attack --save`) "
                        "on this checkpoint, the gallery clean: every query of the dataset, at the model's input "
                        "size; their realised L-inf is checked against --eps")
    p.add_argument("--eps", default=None,
                   help="with --adversarial: the budget the queries claim, e.g. 5/255 (default: the one their file "
                        "records); a query farther from its clean image is an error")
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
    if args.adversarial:
        return replay(args, device, model, card, ds, defense)
    if args.eps is not None:
        raise CLIError("--eps is the budget saved queries claim: it goes with --adversarial FILE")
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


def replay(args: argparse.Namespace, device, model, card: dict, ds, defense) -> int:
    """``--adversarial FILE``: the saved queries re-scored through the attack's own evaluation
    (:class:`~reidbench.attacks.evaluate.ReplayQueries`), clean gallery, the realised budget checked."""
    from ..attacks import load_adversarial
    from ..attacks.evaluate import ReplayQueries, evaluate_attack, prepare_evalset
    from ..models.defended import DefendedModel
    from ..utils import parse_fraction

    if args.ap != "torchreid":
        raise CLIError("--adversarial scores with the attack's evaluation (AP: torchreid); drop --ap")
    try:
        images, meta = load_adversarial(args.adversarial)
    except FileNotFoundError:
        raise CLIError(f"--adversarial {args.adversarial}: no such file or folder; give the FILE.pt or folder that "
                       "`reidbench attack --save` wrote") from None
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise CLIError(f"--adversarial {args.adversarial}: not saved adversarial queries ({e}); give the FILE.pt or "
                       "folder that `reidbench attack --save` wrote") from None
    made_on = meta.get("fingerprint")
    if made_on is not None and made_on != ds.fingerprint():
        raise CLIError(f"--adversarial {args.adversarial} was made on other {meta.get('dataset', 'dataset')} files "
                       f"(fingerprint {str(made_on)[:12]}, these are {ds.fingerprint()[:12]}): re-score it on the "
                       "files it was attacked on")
    eps = parse_fraction(args.eps, option="--eps") if args.eps is not None else meta.get("eps")
    # images not on the 8-bit grid before saving (an in-memory evaluation) were rounded by half a grey level
    tolerance = 0.5 / 255 + 1e-6 if meta.get("io") == "memory" else 1e-6
    evalset = prepare_evalset(model, ds, device, args.batch_size, not args.quiet, defense=defense, adaptive=True)
    try:
        queries = ReplayQueries(images, evalset, model.input_size, names=meta.get("names"))
    except ValueError as e:
        raise CLIError(f"--adversarial {args.adversarial}: {e}") from None
    eval_model = DefendedModel(model, defense) if defense is not None else model
    res = evaluate_attack(queries, evalset, eval_model, batch_size=args.batch_size, device=device,
                          rerank=args.rerank, progress=not args.quiet)
    if eps is not None:  # the budget, checked on the perturbation the evaluation measured
        over = (res["linf"] > eps + tolerance).nonzero().flatten().tolist()
        if over:
            i = over[0]
            raise CLIError(f"--adversarial {args.adversarial}: saved query {i} is {float(res['linf'][i]) * 255:.2f}/255 "
                           f"(L-inf) from its clean image, over the claimed budget {eps * 255:.2f}/255 ({len(over)} "
                           f"of {len(res['linf'])} queries are over)")
    made_with = meta.get("checkpoint_sha256")
    transfer = made_with is not None and made_with != card.get("sha256")
    header = (f"{args.adversarial} ({meta.get('attack', 'attack unknown')}) re-scored on {options.model_title(card)} "
              f"/ {ds.name}{' (made on another checkpoint: transfer)' if transfer else ''}; test-time defense: "
              f"{defense!r}")
    rep = attack_report(res, queries, args.rerank, header, dataset=ds.name, checkpoint=str(args.checkpoint),
                        adversarial=str(args.adversarial), made_with=meta.get("attack"), eps=eps, transfer=transfer,
                        defense=defense.name if defense is not None else None, queries=len(evalset.q_pids))
    rep.notes.append("budget: " + ("no claim recorded or given (--eps): the realised L-inf is reported, not checked"
                                   if eps is None else f"every query within the claimed {eps * 255:.2f}/255"))
    rep.print(args.json)
    return 0
