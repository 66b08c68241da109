"""``reidbench viz FIGURE``: ranked lists, perturbations, Grad-CAM and t-SNE from a checkpoint; eps
curves and heat-maps from matrix records (needs the ``[viz]`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options
from .options import CLIError

FIGURES = {"ranks": "a query and its top-k gallery images, clean vs each attack (the seed's Figure 1)",
           "perturbation": "clean, adversarial, the amplified perturbation and what CS leaves of it (Figure 6)",
           "gradcam": "Grad-CAM maps on clean and adversarial queries, for one or more models (Figure 8)",
           "tsne": "t-SNE of clean, adversarial and grayscale features of a few identities (Figure 7)",
           "curves": "mAP and rank-1 against eps from matrix records (run the matrix with --eps lists)",
           "heatmap": "robust mAP (or R1) of every leaderboard row under every attack, from records"}
FROM_RECORDS = ("curves", "heatmap")


def add_parser(sub) -> None:
    vp = sub.add_parser("viz", help="figures: ranked lists, perturbations, eps curves, heat-maps, Grad-CAM, t-SNE "
                                    "(needs the [viz] extra)")
    vsub = vp.add_subparsers(dest="viz_command", metavar="FIGURE")
    for kind, text in FIGURES.items():
        v = vsub.add_parser(kind, help=text, description=text)
        v.add_argument("--out", required=True, help="FILE.png or FILE.svg")
        v.add_argument("--title", default=None)
        v.set_defaults(func=run)
        if kind in FROM_RECORDS:
            v.add_argument("--results", default="results", help="results folder of `reidbench matrix`")
            v.add_argument("--rerank", action="store_true", help="the metrics after re-ranking")
            if kind == "heatmap":
                v.add_argument("--metric", default="mAP", choices=["mAP", "R1"])
            continue
        options.add_checkpoint(v)
        v.add_argument("--attack", action="append", help="run this attack spec on the shown queries (repeatable)")
        v.add_argument("--adv", action="append", metavar="[LABEL=]FILE",
                       help="saved adversarial queries (`reidbench attack --save FILE.pt`); repeatable")
        v.add_argument("--queries", default=None, help="query indices, e.g. 0,17,42 (default: evenly spaced)")
        v.add_argument("--num-queries", type=int, default=3 if kind != "perturbation" else 2)
        options.add_budget(v)
        options.add_device(v)
        options.add_defense(v, "the preset's; perturbation: cs")
        if kind == "ranks":
            v.add_argument("--topk", type=int, default=10)
            v.add_argument("--adaptive", action="store_true", help="attack through the test-time defense")
        if kind == "gradcam":
            v.add_argument("--compare", action="append", metavar="CHECKPOINT",
                           help="another model to show beside it, e.g. the PD model (repeatable)")
        if kind == "tsne":
            v.add_argument("--ids", type=int, default=6, help="identities to show (default 6)")

    def usage(_args) -> int:
        vp.print_help()
        return 2

    vp.set_defaults(func=usage)


def _queries(args: argparse.Namespace, n: int) -> list[int]:
    if args.queries:
        return [int(q) for q in args.queries.split(",")]
    k = min(args.num_queries, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def _adversarial(args, model, device, queries, defense, evalset) -> dict:
    """label -> adversarial images of the selected queries: from --adv files, and by running each --attack."""
    from ..attacks import load_adversarial
    from ..protocol import attack_kwargs, prepare_attack, threat_of
    from ..viz import attack_selected_queries

    out = {}
    for item in args.adv or []:
        label, eq, path = item.partition("=")
        if not eq:
            label, path = Path(item).stem, item
        imgs, _ = load_adversarial(path)
        out[label] = imgs
    for name in args.attack or []:
        spec = options.attack_spec(args, name)
        adaptive = bool(getattr(args, "adaptive", False)) and defense is not None
        threat = threat_of(defense is not None, adaptive)
        kw = attack_kwargs(spec, threat, defense, **options.budget(args))
        prepared = prepare_attack(model, spec, defense, threat, evalset, kwargs=kw)
        label = prepared.attack.name + (" adaptive" if adaptive else "")
        out[label] = attack_selected_queries(prepared.attack, evalset, queries, model, device,
                                             context=prepared.context)
    return out


def run(args: argparse.Namespace) -> int:
    from .. import viz

    kind = args.viz_command
    if kind in FROM_RECORDS:
        if kind == "curves":
            out = viz.plot_eps_curves(args.results, args.out, rerank=args.rerank, title=args.title)
        else:
            out = viz.plot_heatmap(args.results, args.out, metric=args.metric, rerank=args.rerank, title=args.title)
        print(f"wrote {out}")
        return 0
    out = {"ranks": _ranks, "perturbation": _perturbation, "gradcam": _gradcam, "tsne": _tsne}[kind](args)
    print(f"wrote {out}")
    return 0


def _setup(args, defense_default: str | None = None, defended_evalset: bool = False):
    from ..attacks.evaluate import prepare_evalset
    from ..registry import parse_defense

    device, model, card, ds = options.checkpoint_and_data(args)
    defense = options.defense_spec(args, card).build()
    if defense is None and defense_default is not None:
        defense = parse_defense(defense_default).build()
    evalset = prepare_evalset(model, ds, device, 128, not args.quiet, defense=defense if defended_evalset else None)
    return device, model, card, ds, defense, evalset, _queries(args, len(evalset.q_pids))


def _clean(evalset, rows, model, device):
    from ..data.transforms import select_rows, to_model_input

    return to_model_input(select_rows(evalset.query_images, rows), tuple(model.input_size), device)


def _ranks(args):
    from .. import viz

    device, model, card, ds, defense, evalset, queries = _setup(args, defended_evalset=True)
    advs = _adversarial(args, model, device, queries, defense, evalset)
    lists = viz.ranked_lists(model, ds, queries, adversarial=advs, defense=defense, topk=args.topk, device=device,
                             evalset=evalset)
    return viz.plot_ranked_lists(lists, args.out, title=args.title or f"{options.model_title(card)} on {ds.name}"
                                 + (f", test-time {defense.name}" if defense is not None else ""))


def _perturbation(args):
    from .. import viz

    # the seed's Figure 6 shows the perturbation after CS
    device, model, card, ds, defense, evalset, queries = _setup(args, defense_default="cs")
    advs = _adversarial(args, model, device, queries, None, evalset)
    if len(advs) != 1:
        raise CLIError("viz perturbation shows one adversarial set: give one --attack or one --adv")
    (label, adv), = advs.items()
    idx = list(range(len(queries))) if len(adv) == len(queries) else queries
    clean = _clean(evalset, queries, model, device)
    return viz.plot_perturbation(clean, adv[idx].to(clean), args.out, defense=defense,
                                 title=args.title or f"{label} on {options.model_title(card)}")


def _gradcam(args):
    """Each model's maps explain the similarity of a query to another image of its identity (its own
    features: a reference from that model's gallery), clean and under each attack on that model."""
    from .. import viz
    from ..attacks.evaluate import prepare_evalset
    from ..models import load_checkpoint

    device, model, card, ds, _, evalset, queries = _setup(args)
    models = {options.model_title(card): (model, evalset)}
    for extra in args.compare or []:
        m2, c2 = load_checkpoint(extra, device=device)
        models[options.model_title(c2)] = (m2, prepare_evalset(m2, ds, device, 128, False))
    clean = _clean(evalset, queries, model, device)
    advs = {name: _adversarial(args, m, device, queries, None, ev) for name, (m, ev) in models.items()}
    refs = {name: viz.identity_references(ev, queries) for name, (_, ev) in models.items()}
    return viz.plot_grad_cam({name: m for name, (m, _) in models.items()}, clean, advs, args.out, title=args.title,
                             references=refs)


def _tsne(args):
    import torch

    from .. import viz
    from ..attacks.evaluate import _eval_features
    from ..data.imageops import grayscale

    device, model, card, ds, _, evalset, _ = _setup(args)
    pids = evalset.q_pids.unique()[: args.ids]
    sel = torch.isin(evalset.q_pids, pids).nonzero().flatten().tolist()
    clean = _clean(evalset, sel, model, device)
    feats = {"clean": _eval_features(model, clean)}
    for label, adv in _adversarial(args, model, device, sel, None, evalset).items():
        feats[label] = _eval_features(model, adv.to(clean))
    feats["grayscale"] = _eval_features(model, torch.stack([grayscale(x) for x in clean]))
    return viz.plot_tsne(feats, evalset.q_pids[sel], args.out, seed=args.seed, title=args.title)
