"""``reidbench attack``: attack every query of a dataset (or the gallery images of each query's
identity) and report clean against attacked metrics. White-box, oblivious and adaptive attacks and
transfer attacks (a generator fitted on a surrogate) all go through :mod:`reidbench.protocol`."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options
from .options import CLIError
from .report import attack_report


def add_parser(sub) -> None:
    p = sub.add_parser("attack", help="attack every query of a dataset and report clean vs attacked metrics")
    p.add_argument("--attack", default="lta", help="attack spec (`reidbench list attacks`), e.g. "
                                                   "mifgsm(gong_faithful=true), or ta:<torchattacks name>")
    options.add_checkpoint(p)
    options.add_budget(p)
    options.add_batch_size(p)
    options.add_device(p)
    p.add_argument("--rerank", action="store_true", help="also report re-ranked metrics")
    options.add_io(p)
    p.add_argument("--side", default="query", choices=["query", "gallery"],
                   help="perturb the queries (the seed's protocol) or the gallery images of each query "
                        "identity with the queries as guides (Bai et al.; M-IFGSM family)")
    p.add_argument("--save", default=None, help="save the adversarial queries: FILE.pt or a folder (re-score them "
                                                "with `reidbench eval --adversarial FILE`)")
    p.add_argument("--save-format", default=None, choices=["pt", "png", "jpeg75"])
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="keep every attacked query batch in DIR; run the same command again after a kill and "
                        "only the batches not there yet are attacked (same result as an uninterrupted run)")
    options.add_defense(p)
    options.add_threat(p)
    p.add_argument("--surrogate", default=None,
                   help="transfer attacks (dmr): the checkpoint the generator is fitted on (default: --checkpoint "
                        "itself); another model's checkpoint makes it a transfer / black-box attack")
    options.add_json(p)
    p.set_defaults(func=run, torchrun=True)  # torchrun -m reidbench attack: data-parallel


def resume_folder(args, card, ds, defense, prepared, io) -> Path | None:
    """``--resume DIR``'s subfolder for this evaluation: another model, dataset, defense, threat,
    attack, I/O or generator never meets this one's batches."""
    if not args.resume:
        return None
    from ..store import content_key

    what = {"checkpoint": card.get("sha256") or str(Path(args.checkpoint).resolve()), "dataset": ds.fingerprint(),
            "defense": repr(defense), "adaptive": bool(args.adaptive), "attack": repr(prepared.attack), "io": io,
            "generator": (prepared.generator or {}).get("generator")}
    return Path(args.resume) / content_key(what)[:16]


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..attacks import save_adversarial
    from ..attacks.evaluate import evaluate_attack, evaluate_gallery_attack, prepare_evalset
    from ..attacks.io import JPEG75
    from ..models.defended import DefendedModel
    from ..protocol import Surrogate, Threat, attack_kwargs, prepare_attack, threat_of

    spec = options.attack_spec(args).validate()
    kw = options.budget(args)  # a bad --eps fails before the model is loaded
    if spec.is_transfer and (args.adaptive or args.side != "query"):
        raise CLIError(f"{spec.text} is a transfer attack on queries: no --adaptive, no --side gallery")
    if args.surrogate and not spec.is_transfer:
        raise CLIError(f"--surrogate is for transfer attacks (dmr); {spec.text} is a white-box attack on --checkpoint")
    device, model, card, ds = options.checkpoint_and_data(args)
    io = args.io
    if args.save and io == "memory" and not spec.is_transfer:
        io = JPEG75 if args.save_format == JPEG75 else "png"
    defense_spec = options.defense_spec(args, card)
    if args.adaptive and defense_spec.is_none:
        raise CLIError("--adaptive attacks through a test-time defense: give --defense NAME (or a preset that has one)")
    defense = defense_spec.build()
    evalset = prepare_evalset(model, ds, device, args.batch_size, not args.quiet, defense=defense,
                              adaptive=args.adaptive)
    surrogate = None
    if spec.is_transfer:
        threat = Threat.TRANSFER
        surrogate = args.surrogate or args.checkpoint
        kw = {"seed": kw["seed"], "eps": kw.get("eps")}
        prepared = prepare_attack(model, spec, defense, threat, evalset, kwargs=kw,
                                  surrogate=Surrogate(surrogate, ds, device, progress=not args.quiet))
    else:
        threat = threat_of(defense is not None, args.adaptive)
        kw = attack_kwargs(spec, threat, defense_spec, io=io, eot=args.eot, **kw)
        prepared = prepare_attack(model, spec, defense, threat, evalset, kwargs=kw)
    attack = prepared.attack
    eval_model = DefendedModel(model, defense) if defense is not None else model
    if args.side == "gallery":
        if args.save or io != "memory" or args.resume:
            raise CLIError("--side gallery evaluates in memory only (no --save / --io / --resume)")
        res = evaluate_gallery_attack(attack, ds, eval_model, evalset, batch_size=args.batch_size, device=device,
                                      rerank=args.rerank, progress=not args.quiet)
    else:
        res = evaluate_attack(attack, evalset, eval_model, batch_size=args.batch_size, device=device, io=io,
                              rerank=args.rerank, progress=not args.quiet, keep_images=bool(args.save),
                              context=prepared.context, resume=resume_folder(args, card, ds, defense, prepared, io))
    meta = {"attack": repr(attack), "checkpoint": str(args.checkpoint), "checkpoint_sha256": card.get("sha256"),
            "dataset": ds.name, "io": io, "eps": getattr(attack, "eps", None), "input_size": list(model.input_size)}
    if surrogate is not None:
        meta["surrogate"] = str(surrogate)
    if args.save and distributed.current().is_main:  # torchrun: rank 0 writes
        fmt = args.save_format or ("pt" if args.save.endswith(".pt") else "png")
        save_adversarial(res["images"], args.save, fmt=fmt, names=evalset.query_names,
                         meta={**meta, "fingerprint": ds.fingerprint()})
    fields = {"dataset": ds.name, "io": io, "defense": defense.name if defense is not None else None,
              "threat": threat.value, "queries": len(evalset.q_pids)}
    where = f"on {options.model_title(card)}"
    if surrogate is not None:
        transfer = Path(surrogate).resolve() != Path(args.checkpoint).resolve()
        fields.update(surrogate=str(surrogate), generator=prepared.generator["generator"], transfer=transfer)
        where = (f"fitted on {surrogate} ({'transfer to' if transfer else 'evaluated on'} "
                 f"{options.model_title(card)}); generator {prepared.generator['generator']}")
    else:
        fields.update(side=args.side, adaptive=bool(args.adaptive))
    how = {Threat.ADAPTIVE: "adaptive (through the defense)", Threat.OBLIVIOUS: "oblivious of the defense"}
    header = (f"{attack!r} {where} / {ds.name} ({args.side} side, {len(evalset.q_pids)} queries, io: {io}); "
              f"test-time defense: {defense!r}; attack: {how.get(threat, threat.value)}")
    rep = attack_report(res, attack, args.rerank, header, **fields)
    if args.save:
        rep.notes.append(f"adversarial queries saved to {args.save}")
    rep.print(args.json)
    return 0
