"""The ``reidbench`` command line.

``reidbench list``, ``reidbench data synth``, ``reidbench data check``; the commands of the other
stages (train, eval, attack, matrix, leaderboard) plug in as sub-commands of the same parser.
Every command defaults to the embedded dataset ``synthreid`` so that it runs on a fresh machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from tabulate import tabulate

from . import __version__
from .registry import (ATTACKS, DATASETS, DEFENSES, MODELS, Registry, UnknownNameError, format_eps, load_builtins,
                       parse_attack, parse_defense, parse_value)

# reidbench.data.synthreid.SIZES, spelled out so that `--help` does not import the data stack (a test
# keeps the two in step)
SYNTH_SIZES = ("default", "large", "tiny")

log = logging.getLogger("reidbench")

REGISTRIES: dict[str, Registry] = {"attacks": ATTACKS, "defenses": DEFENSES, "models": MODELS, "datasets": DATASETS}


class CLIError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


def _format_defaults(defaults: dict) -> str:
    def fmt(k, v):
        if k in ("eps", "alpha") and isinstance(v, float):
            return format_eps(v)
        return repr(v)

    return ", ".join(f"{k}={fmt(k, v)}" for k, v in defaults.items())


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        reg = REGISTRIES[kind]
        print(f"{kind} ({len(reg)})")
        if not len(reg):
            print("  (none registered yet)\n")
            continue
        rows = [[e.name, ", ".join(e.aliases), e.paper or e.summary, _format_defaults(e.defaults)]
                for e in reg.entries()]
        print(tabulate(rows, headers=["name", "aliases", "paper / reference", "defaults"], tablefmt="github",
                       maxcolwidths=[None, 24, 60, 60]))
        print()
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synthreid import default_synthreid_dir, generate_synthreid

    out = Path(args.out) if args.out else default_synthreid_dir(args.size, args.seed)
    path = generate_synthreid(out, size=args.size, seed=args.seed, workers=args.workers,
                              progress=not args.quiet, overwrite=args.force)
    from .data import load_dataset

    ds = load_dataset("synthreid", path)
    print(ds.summary())
    print(f"fingerprint: {ds.fingerprint()}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import load_images, open_dataset

    ds = open_dataset(args.dataset, args.root, size=args.size, progress=not args.quiet)
    print(ds.summary())
    print(f"fingerprint: {ds.fingerprint()}")
    if args.decode:
        for split in ("train", "query", "gallery"):
            dec = load_images(ds.split(split), skip_corrupt=args.skip_corrupt, progress=not args.quiet,
                              desc=f"decoding {split}", use_cache=not args.no_cache)
            msg = f"{split}: decoded {len(dec)} images"
            if dec.skipped:
                msg += f", skipped {len(dec.skipped)} unreadable (first: {dec.skipped[0]})"
            print(msg)
    return 0


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "synthreid") -> None:
    p.add_argument("--dataset", default=default, help="dataset name (default: %(default)s; see `reidbench list datasets`)")
    p.add_argument("--data-root", default=None, help="folder holding a real dataset (not needed for synthreid)")
    p.add_argument("--synth-size", default="default", choices=list(SYNTH_SIZES), help="synthreid size")


def _load_data(name: str, root: str | None, synth_size: str = "default", progress: bool = True):
    from .data import open_dataset

    return open_dataset(name, root, size=synth_size, progress=progress)


def _device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return name


def _checkpoint_and_data(args: argparse.Namespace):
    """(device, model, checkpoint card, dataset): the dataset defaults to the one the model was
    trained on (``--dataset`` evaluates across domains)."""
    from .models import load_checkpoint

    device = _device(args.device)
    model, card = load_checkpoint(args.checkpoint, device=device)
    name = args.dataset or card.get("dataset", {}).get("name", "synthreid")  # a card's name may carry its size
    return device, model, card, _load_data(name, args.data_root, args.synth_size, not args.quiet)


def _test_defense(args: argparse.Namespace, card: dict):
    """The test-time defense: --defense NAME (none to disable), else the one the preset carries."""
    return _test_defense_spec(args, card).build()


def _test_defense_spec(args: argparse.Namespace, card: dict):
    name = getattr(args, "defense", None)
    return parse_defense(card.get("test_defense") if name is None else name)


def _metrics_table(rows: dict[str, dict]) -> str:
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    return tabulate([[name] + [f"{m[k]:.2f}" for k in keys] for name, m in rows.items()],
                    headers=["", *keys], tablefmt="github")


def cmd_train(args: argparse.Namespace) -> int:
    import json
    import time

    from .evaluation import evaluate_model
    from .train import train_preset

    ds = _load_data(args.dataset, args.data_root, args.synth_size, not args.quiet)
    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{ds.name}-seed{args.seed}"
    device = _device(args.device)
    t0 = time.perf_counter()
    pretrained = None if args.pretrained is None else args.pretrained == "on"
    result, card = train_preset(args.model, ds, out, seed=args.seed, epochs=args.epochs, arch=args.arch,
                                device=device, resume=args.resume, pretrained=pretrained, amp=args.amp,
                                progress=not args.quiet)
    last = card["history"][-1] if card["history"] else {}  # every stage's epochs: AT's, goat-ft's fine-tuning too
    print(f"trained {card['preset']} ({card['arch']}) on {ds.name} for {len(card['history'])} epochs "
          f"in {time.perf_counter() - t0:.0f} s; last epoch loss {last.get('loss', float('nan')):.4f}, "
          f"train accuracy {100 * last.get('train_acc', float('nan')):.1f}%")
    print(f"checkpoint: {out / 'model.pt'} (sidecar {out / 'model.json'})")
    if not args.no_eval:
        eval_model = result.model
        if card.get("test_defense"):
            from .defenses import DefendedModel, build_defense

            eval_model = DefendedModel(result.model, build_defense(card["test_defense"]))
        m = evaluate_model(eval_model, ds, device=device, progress=not args.quiet)
        print(_metrics_table({f"{ds.name} (clean)": m}))
        (out / "eval.json").write_text(json.dumps({k: m[k] for k in ("R1", "R5", "R10", "mAP", "mINP")}, indent=2) + "\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluation import evaluate_model

    device, model, card, ds = _checkpoint_and_data(args)
    trained_on = card.get("dataset", {})
    if trained_on.get("name") == ds.name and trained_on.get("fingerprint") not in (None, ds.fingerprint()):
        log.warning("the %s files differ from the ones the model was trained with (fingerprint mismatch)", ds.name)
    defense = _test_defense(args, card)
    if defense is not None:
        from .defenses import DefendedModel

        model = DefendedModel(model, defense)
    m = evaluate_model(model, ds, rerank=args.rerank, batch_size=args.batch_size, device=device,
                       progress=not args.quiet, ap=args.ap)
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    if args.json:
        obj = {k: round(m[k], 4) for k in keys}
        if args.rerank:
            obj["rerank"] = {k: round(m["rerank"][k], 4) for k in keys}
        obj.update({"dataset": ds.name, "checkpoint": str(args.checkpoint), "trained_on": trained_on.get("name"),
                    "ap": args.ap, "defense": defense.name if defense is not None else None})
        print(json.dumps(obj))
        return 0
    rows = {f"{card.get('preset', card['arch'])} on {ds.name}": m}
    if args.rerank:
        rows["+ re-ranking"] = m["rerank"]
    cross = f" (cross-domain: trained on {trained_on.get('name')})" if trained_on.get("name") not in (None, ds.name) else ""
    print(f"{args.checkpoint}{cross}, AP: {args.ap}, test-time defense: {defense!r}")
    print(_metrics_table(rows))
    return 0


def _attack_kwargs(args: argparse.Namespace) -> dict:
    """--eps, --alpha, --steps and --seed as attack arguments (None: the attack's defaults)."""
    from .utils import parse_fraction

    kw: dict = {"seed": args.seed}
    for name in ("eps", "alpha"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = parse_fraction(v, option=f"--{name}")
    if args.steps is not None:
        kw["steps"] = args.steps
    return kw


def _attack_spec(args: argparse.Namespace, name: str | None = None):
    """--attack (a spec: ``mifgsm(gong_faithful=true)``) with the --attack-arg KEY=VALUE items added."""
    extra = {}
    for item in args.attack_arg or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CLIError(f"--attack-arg expects KEY=VALUE (e.g. gong_faithful=true), got {item!r}")
        extra[key.strip()] = parse_value(value)
    return parse_attack(name or args.attack, **extra)


def _transfer_attack(args: argparse.Namespace, device, model, card, ds, spec, kw: dict) -> int:
    """A transfer attack (DMR & co): fit on the surrogate (default: the attacked checkpoint itself)
    or load the cached generator, perturb every query in one pass, evaluate on the target checkpoint."""
    from .attacks.evaluate import evaluate_attack, prepare_evalset
    from .defenses import DefendedModel
    from .protocol import Surrogate, Threat, prepare_attack

    if args.adaptive or args.side != "query":
        raise CLIError(f"{spec.text} is a transfer attack on queries: no --adaptive, no --side gallery")
    surrogate = args.surrogate or args.checkpoint
    seed, eps = kw.pop("seed", 0), kw.pop("eps", None)
    defense = _test_defense(args, card)
    evalset = prepare_evalset(model, ds, device, args.batch_size, not args.quiet, defense=defense)
    prepared = prepare_attack(model, spec, defense, Threat.TRANSFER, evalset, kwargs={"seed": seed, "eps": eps},
                              surrogate=Surrogate(surrogate, ds, device, progress=not args.quiet))
    attack, gpath = prepared.attack, prepared.generator["generator"]
    eval_model = DefendedModel(model, defense) if defense is not None else model
    res = evaluate_attack(attack, evalset, eval_model, batch_size=args.batch_size, device=device, io=args.io,
                          rerank=args.rerank, progress=not args.quiet, keep_images=bool(args.save))
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    transfer = str(Path(surrogate).resolve()) != str(Path(args.checkpoint).resolve())
    if args.save:
        from .attacks import save_adversarial

        fmt = args.save_format or ("pt" if args.save.endswith(".pt") else "png")
        save_adversarial(res["images"], args.save, fmt=fmt, names=evalset.query_names,
                         meta={"attack": repr(attack), "checkpoint": str(args.checkpoint), "surrogate": str(surrogate),
                               "dataset": ds.name, "fingerprint": ds.fingerprint(), "io": args.io})
    if args.json:
        obj = {"clean": {k: round(res["clean"][k], 4) for k in keys},
               "attacked": {k: round(res["attacked"][k], 4) for k in keys},
               "linf_max": res["linf_max"], "linf_mean": res["linf_mean"], "l2_mean": res["l2_mean"],
               "seconds": round(res["seconds"], 3), "attack": repr(attack), "dataset": ds.name, "io": args.io,
               "surrogate": str(surrogate), "generator": str(gpath), "transfer": transfer,
               "defense": defense.name if defense is not None else None}
        print(json.dumps(obj))
        return 0
    rows = {"clean": res["clean"], attack.name: res["attacked"]}
    if args.rerank:
        rows["clean + re-ranking"] = res["clean"]["rerank"]
        rows[f"{attack.name} + re-ranking"] = res["attacked"]["rerank"]
    print(f"{repr(attack)} fitted on {surrogate} ({'transfer to' if transfer else 'evaluated on'} "
          f"{card.get('preset', card['arch'])}) / {ds.name}, {len(evalset.q_pids)} queries; generator {gpath}; "
          f"test-time defense: {defense!r}")
    print(_metrics_table(rows))
    print(f"perturbation: L-inf max {res['linf_max'] * 255:.2f}/255, mean {res['linf_mean'] * 255:.2f}/255; "
          f"L2 mean {res['l2_mean']:.4f}; attack time {res['seconds']:.2f} s "
          f"({len(evalset.q_pids) / max(res['seconds'], 1e-9):.0f} queries/s)")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from .leaderboard import render
    from .matrix import MatrixConfig, run_matrix
    from .registry import parse_attacks, parse_defenses, split_specs
    from .utils import parse_fraction

    attacks = parse_attacks(args.attacks)
    defenses = parse_defenses("none," + (args.defenses or ""))  # the model as its preset defines it comes first
    for spec in (*attacks, *(p for d in defenses for p in d.parts)):
        spec.validate()  # an argument the class does not take fails now, not after the trainings
    eps = tuple(parse_fraction(e, option="--eps") for e in split_specs(args.eps)) if args.eps else (None,)
    try:
        seeds = tuple(int(s) for s in split_specs(str(args.seeds)))
    except ValueError:
        raise CLIError(f"--seeds takes whole numbers, comma-separated (e.g. 0,1,2); got {args.seeds!r}") from None
    results = args.results or "results"
    config = MatrixConfig(models=tuple(split_specs(args.models)), attacks=attacks, defenses=defenses,
                          dataset=args.dataset, data_root=args.data_root, synth_size=args.synth_size, eps=eps,
                          steps=args.steps, seeds=seeds, rerank=args.rerank, adaptive=args.adaptive, eot=args.eot,
                          io=args.io, surrogate=args.surrogate, epochs=args.epochs, dmr_epochs=args.dmr_epochs,
                          device=_device(args.device), batch_size=args.batch_size,
                          attack_args=_matrix_attack_args(args.attack_arg))
    run = run_matrix(config, results, force=args.force, progress=not args.quiet,
                     store=args.checkpoints, echo=(lambda s: None) if args.quiet else print)
    print(render(results, "md", rerank=False, title=f"reidbench leaderboard ({config.dataset})"))
    if args.rerank:
        print(render(results, "md", rerank=True, title="with k-reciprocal re-ranking"))
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in run.stages.items())
    print(f"{len(run.computed)} cells computed, {len(run.skipped)} already recorded"
          + (f", {len(run.busy)} being computed by another run" if run.busy else "") + f"; {stages}")
    print(f"records in {Path(results) / 'records'}; tables: reidbench leaderboard --results {results} --format md|csv|html")
    return 0


def _matrix_attack_args(items) -> dict:
    """``--attack-arg mifgsm:gong_faithful=true`` (repeatable) -> ``{"mifgsm": {"gong_faithful": True}}``."""
    out: dict = {}
    for item in items or []:
        head, eq, value = item.partition("=")
        attack, colon, key = head.rpartition(":")
        if not colon or not eq or not key.strip() or not attack.strip():
            raise CLIError(f"--attack-arg expects ATTACK:KEY=VALUE (e.g. mifgsm:gong_faithful=true), got {item!r}")
        out.setdefault(parse_attack(attack).name, {})[key.strip()] = parse_value(value)
    return out


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import RECIPES, render_comparison

    if args.recipe not in RECIPES:
        raise CLIError(f"unknown recipe {args.recipe!r}; known: {', '.join(RECIPES)}")
    runner, _ = RECIPES[args.recipe]
    dataset = "synthreid" if args.smoke else args.dataset
    from .models.presets import is_synthetic

    if not args.smoke and not is_synthetic(dataset) and not args.data_root:
        raise CLIError(f"{args.recipe} on {dataset} needs --data-root pointing at your copy of the dataset "
                       "(or --smoke for the same pipeline on a tiny synthreid)")
    suffix = "-smoke" if args.smoke else ""
    results = args.results or f"results/{args.recipe}-{dataset}{suffix}{'-faithful' if args.faithful else ''}"
    table = runner(results, dataset=dataset, data_root=args.data_root, smoke=args.smoke, seed=args.seed,
                   faithful=args.faithful, adaptive=args.adaptive, device=_device(args.device),
                   batch_size=args.batch_size, epochs=args.epochs, force=args.force, progress=not args.quiet,
                   store=args.checkpoints, echo=(lambda s: None) if args.quiet else print)
    print(render_comparison(table, "md", f"{args.recipe} on {dataset}{' (smoke)' if args.smoke else ''}"))
    missing = int(table["reidbench"].isna().sum())
    print(f"{len(table)} paper numbers compared; {missing} without a reidbench value; "
          f"{Path(results) / 'reproduction.md'} and .csv written")
    return 0 if missing == 0 else 1


def _viz_queries(args: argparse.Namespace, n: int) -> list[int]:
    if args.queries:
        return [int(q) for q in args.queries.split(",")]
    k = min(args.num_queries, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def _viz_adversarial(args, model, device, queries, defense, evalset) -> dict:
    """label -> adversarial images of the selected queries: from --adv files, and by running each --attack."""
    from .attacks import load_adversarial
    from .protocol import attack_kwargs, prepare_attack, threat_of
    from .viz import attack_selected_queries

    out = {}
    for item in args.adv or []:
        label, eq, path = item.partition("=")
        if not eq:
            label, path = Path(item).stem, item
        imgs, _ = load_adversarial(path)
        out[label] = imgs
    for name in args.attack or []:
        spec = _attack_spec(args, name)
        adaptive = bool(getattr(args, "adaptive", False)) and defense is not None
        threat = threat_of(defense is not None, adaptive)
        kw = attack_kwargs(spec, threat, defense, **_attack_kwargs(args))
        prepared = prepare_attack(model, spec, defense, threat, evalset, kwargs=kw)
        label = prepared.attack.name + (" adaptive" if adaptive else "")
        out[label] = attack_selected_queries(prepared.attack, evalset, queries, model, device,
                                             context=prepared.context)
    return out


def cmd_viz(args: argparse.Namespace) -> int:
    from . import viz

    kind = args.viz_command
    if kind in ("curves", "heatmap"):
        if kind == "curves":
            out = viz.plot_eps_curves(args.results, args.out, rerank=args.rerank, title=args.title)
        else:
            out = viz.plot_heatmap(args.results, args.out, metric=args.metric, rerank=args.rerank, title=args.title)
        print(f"wrote {out}")
        return 0
    from .attacks.evaluate import prepare_evalset
    from .data.transforms import to_model_input
    from .viz.ranked import select_rows

    device, model, card, ds = _checkpoint_and_data(args)
    defense = _test_defense(args, card)
    if kind == "perturbation" and defense is None:
        from .defenses import build_defense

        defense = build_defense("cs")  # the seed's Figure 6 shows the perturbation after CS
    evalset = prepare_evalset(model, ds, device, 128, not args.quiet, defense=defense if kind == "ranks" else None)
    queries = _viz_queries(args, len(evalset.q_pids))
    if kind == "ranks":
        advs = _viz_adversarial(args, model, device, queries, defense, evalset)
        lists = viz.ranked_lists(model, ds, queries, adversarial=advs, defense=defense, topk=args.topk, device=device,
                                 evalset=evalset)
        out = viz.plot_ranked_lists(lists, args.out, title=args.title or
                                    f"{card.get('preset', card['arch'])} on {ds.name}"
                                    + (f", test-time {defense.name}" if defense is not None else ""))
    elif kind == "perturbation":
        advs = _viz_adversarial(args, model, device, queries, None, evalset)
        if len(advs) != 1:
            raise CLIError("viz perturbation shows one adversarial set: give one --attack or one --adv")
        (label, adv), = advs.items()
        idx = list(range(len(queries))) if len(adv) == len(queries) else queries
        clean = to_model_input(select_rows(evalset.query_images, queries), tuple(model.input_size), device)
        out = viz.plot_perturbation(clean, adv[idx].to(clean), args.out, defense=defense,
                                    title=args.title or f"{label} on {card.get('preset', card['arch'])}")
    elif kind == "gradcam":
        from .models import load_checkpoint

        models = {card.get("preset", card["arch"]): model}
        for extra in args.compare or []:
            m2, c2 = load_checkpoint(extra, device=device)
            models[c2.get("preset", c2["arch"])] = m2
        clean = to_model_input(select_rows(evalset.query_images, queries), tuple(model.input_size), device)
        advs = {}
        for name, m in models.items():
            ev = evalset if m is model else prepare_evalset(m, ds, device, 128, False)
            advs[name] = _viz_adversarial(args, m, device, queries, None, ev)
        out = viz.plot_grad_cam(models, clean, advs, args.out, title=args.title)
    else:  # tsne
        import torch

        from .attacks.evaluate import _eval_features
        from .defenses.pd import grayscale

        pids = evalset.q_pids.unique()[: args.ids]
        sel = torch.isin(evalset.q_pids, pids).nonzero().flatten().tolist()
        clean = to_model_input(select_rows(evalset.query_images, sel), tuple(model.input_size), device)
        feats = {"clean": _eval_features(model, clean)}
        for label, adv in _viz_adversarial(args, model, device, sel, None, evalset).items():
            feats[label] = _eval_features(model, adv.to(clean))
        feats["grayscale"] = _eval_features(model, torch.stack([grayscale(x) for x in clean]))
        out = viz.plot_tsne(feats, evalset.q_pids[sel], args.out, seed=args.seed, title=args.title)
    print(f"wrote {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import render
    from .utils import atomic_write_text

    text = render(args.results, args.format, rerank=args.rerank, title=args.title)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from .attacks import save_adversarial
    from .attacks.evaluate import evaluate_attack, prepare_evalset
    from .defenses import DefendedModel
    from .protocol import Threat, attack_kwargs, prepare_attack, threat_of

    spec = _attack_spec(args).validate()
    kw = _attack_kwargs(args)  # a bad --eps fails before the model is loaded
    device, model, card, ds = _checkpoint_and_data(args)
    if spec.is_transfer:
        return _transfer_attack(args, device, model, card, ds, spec, kw)
    if args.surrogate:
        raise CLIError(f"--surrogate is for transfer attacks (dmr); {spec.text} is a white-box attack on --checkpoint")
    io = args.io
    if args.save and io == "memory":
        from .attacks.io import JPEG75

        io = JPEG75 if args.save_format == JPEG75 else "png"
    defense_spec = _test_defense_spec(args, card)
    if args.adaptive and defense_spec.is_none:
        raise CLIError("--adaptive attacks through a test-time defense: give --defense NAME (or a preset that has one)")
    threat = threat_of(not defense_spec.is_none, args.adaptive)
    defense = defense_spec.build()
    kw = attack_kwargs(spec, threat, defense_spec, io=io, eot=args.eot, **kw)
    evalset = prepare_evalset(model, ds, device, args.batch_size, not args.quiet, defense=defense,
                              adaptive=args.adaptive)
    prepared = prepare_attack(model, spec, defense, threat, evalset, kwargs=kw)
    attack = prepared.attack
    eval_model = DefendedModel(model, defense) if defense is not None else model
    if args.side == "gallery":
        from .attacks.evaluate import evaluate_gallery_attack

        if args.save or io != "memory":
            raise CLIError("--side gallery evaluates in memory only (no --save / --io)")
        res = evaluate_gallery_attack(attack, ds, eval_model, evalset, batch_size=args.batch_size, device=device,
                                      rerank=args.rerank, progress=not args.quiet)
    else:
        res = evaluate_attack(attack, evalset, eval_model, batch_size=args.batch_size, device=device, io=io,
                              rerank=args.rerank, progress=not args.quiet, keep_images=bool(args.save),
                              context=prepared.context)
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    if args.save:
        fmt = args.save_format or ("pt" if args.save.endswith(".pt") else "png")
        save_adversarial(res["images"], args.save, fmt=fmt, names=evalset.query_names,
                         meta={"attack": repr(attack), "checkpoint": str(args.checkpoint), "dataset": ds.name,
                               "fingerprint": ds.fingerprint(), "io": io})
    if args.json:
        obj = {"clean": {k: round(res["clean"][k], 4) for k in keys},
               "attacked": {k: round(res["attacked"][k], 4) for k in keys},
               "linf_max": res["linf_max"], "linf_mean": res["linf_mean"], "l2_mean": res["l2_mean"],
               "seconds": round(res["seconds"], 3), "attack": repr(attack), "dataset": ds.name, "io": io,
               "side": args.side, "defense": defense.name if defense is not None else None,
               "adaptive": bool(args.adaptive)}
        if args.rerank:
            obj["clean"]["rerank"] = {k: round(res["clean"]["rerank"][k], 4) for k in keys}
            obj["attacked"]["rerank"] = {k: round(res["attacked"]["rerank"][k], 4) for k in keys}
        print(json.dumps(obj))
        return 0
    rows = {"clean": res["clean"], f"{attack.name}": res["attacked"]}
    if args.rerank:
        rows["clean + re-ranking"] = res["clean"]["rerank"]
        rows[f"{attack.name} + re-ranking"] = res["attacked"]["rerank"]
    threat = {Threat.ADAPTIVE: "adaptive (through the defense)", Threat.OBLIVIOUS: "oblivious of the defense",
              Threat.WHITE_BOX: "white-box"}[threat]
    print(f"{repr(attack)} on {card.get('preset', card['arch'])} / {ds.name} ({args.side} side, "
          f"{len(evalset.q_pids)} queries, io: {io}); test-time defense: {defense!r}; attack: {threat}")
    print(_metrics_table(rows))
    print(f"perturbation: L-inf max {res['linf_max'] * 255:.2f}/255, mean {res['linf_mean'] * 255:.2f}/255; "
          f"L2 mean {res['l2_mean']:.4f}; attack time {res['seconds']:.1f} s")
    if args.save:
        print(f"adversarial queries saved to {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reidbench",
        description="Benchmark the adversarial robustness of person re-identification models.",
        epilog="Every command defaults to the embedded synthetic dataset 'synthreid'; real datasets "
               "(market1501, dukemtmcreid, msmt17, cuhk03np) need --data-root pointing at your copy.",
    )
    p.add_argument("--version", action="version", version=f"reidbench {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = sub.add_parser("list", help="list registered attacks, defenses, models or datasets")
    sp.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="what to list (default: everything)")
    sp.set_defaults(func=cmd_list)

    tp = sub.add_parser("train", help="train a model preset (checkpoint each epoch, --resume)")
    tp.add_argument("--model", default="baseline", help="model preset (see `reidbench list models`)")
    _add_data_args(tp)
    tp.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    tp.add_argument("--arch", default=None, help="override the preset's architecture")
    tp.add_argument("--out", default=None, help="output folder (default: runs/<model>-<dataset>-seed<seed>)")
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default: cuda if available)")
    tp.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    tp.add_argument("--pretrained", choices=["on", "off"], default=None,
                    help="ImageNet weights via torchvision (default: on for real datasets, off for synthreid)")
    tp.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    tp.add_argument("--no-eval", action="store_true", help="skip the clean evaluation at the end")
    tp.set_defaults(func=cmd_train)

    ep = sub.add_parser("eval", help="evaluate a checkpoint: R1/R5/R10/mAP/mINP, optionally re-ranked")
    ep.add_argument("--checkpoint", required=True, help="model.pt written by `reidbench train`")
    _add_data_args(ep, default=None)
    ep.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking")
    ep.add_argument("--ap", default="torchreid", choices=["torchreid", "market_official"])
    ep.add_argument("--batch-size", type=int, default=128)
    ep.add_argument("--device", default="auto")
    ep.add_argument("--defense", default=None,
                    help="test-time defense (cs, cs-r, jpeg, bitdepth, rrp, none; default: the preset's)")
    ep.add_argument("--json", action="store_true", help="print one JSON object")
    ep.set_defaults(func=cmd_eval)

    ap = sub.add_parser("attack", help="attack every query of a dataset and report clean vs attacked metrics")
    ap.add_argument("--checkpoint", required=True, help="model.pt written by `reidbench train`")
    ap.add_argument("--attack", default="lta", help="attack name (`reidbench list attacks`) or ta:<torchattacks name>")
    _add_data_args(ap, default=None)
    ap.add_argument("--eps", default=None, help="L-inf budget, e.g. 5/255 (default: the attack's)")
    ap.add_argument("--alpha", default=None, help="step size, e.g. 1/255")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--attack-arg", action="append", metavar="KEY=VALUE",
                    help="extra attack argument (JSON value), e.g. gong_faithful=true; repeatable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rerank", action="store_true", help="also report re-ranked metrics")
    ap.add_argument("--io", default="memory", choices=["memory", "png", "jpeg75"],
                    help="evaluate in memory (default), after 8-bit quantisation (png) or after a JPEG-75 round "
                         "trip as the seed's code did (jpeg75)")
    ap.add_argument("--side", default="query", choices=["query", "gallery"],
                    help="perturb the queries (the seed's protocol) or the gallery images of each query "
                         "identity with the queries as guides (Bai et al.; M-IFGSM family)")
    ap.add_argument("--save", default=None, help="save the adversarial queries: FILE.pt or a folder")
    ap.add_argument("--save-format", default=None, choices=["pt", "png", "jpeg75"])
    ap.add_argument("--defense", default=None,
                    help="test-time defense on query and gallery (cs, cs-r, jpeg, bitdepth, rrp, none; "
                         "default: the preset's, e.g. cs for jad)")
    ap.add_argument("--adaptive", action="store_true",
                    help="attack through the test-time defense (differentiable version or BPDA; EOT if randomised)")
    ap.add_argument("--eot", type=int, default=10, help="EOT samples per step for randomised defenses (with --adaptive)")
    ap.add_argument("--surrogate", default=None,
                    help="dmr: the checkpoint the generator is fitted on (default: --checkpoint itself); "
                         "another model's checkpoint makes it a transfer / black-box attack")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.set_defaults(func=cmd_attack)

    mp = sub.add_parser("matrix", help="cross models x test-time defenses x attacks; resumable; writes records and "
                                       "prints the leaderboard")
    mp.add_argument("--models", default="baseline,jad", help="model presets, comma-separated (default: %(default)s)")
    mp.add_argument("--attacks", default="all",
                    help="attack names, comma-separated, or 'all' (sma, lta, mifgsm, fna, odfa, dmr)")
    mp.add_argument("--defenses", default="none",
                    help="extra test-time defenses crossed with every model (cs, jpeg, bitdepth, rrp, cs+jpeg, "
                         "cs(sizes=P1), jpeg(quality=50)...); "
                         "'none' (the model as its preset defines it) is always included")
    _add_data_args(mp)
    mp.add_argument("--eps", default=None, help="budget(s), comma-separated (5/255,8/255); default: each attack's "
                                                "(5/255; 16/255 for dmr)")
    mp.add_argument("--steps", type=int, default=None, help="iterations of the gradient attacks (default 15)")
    mp.add_argument("--seeds", default="0", help="seeds, comma-separated: each trains its own models (default 0)")
    mp.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=True,
                    help="also record metrics after k-reciprocal re-ranking (default: on)")
    mp.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                    help="adaptive twins of every attack for rows with a test-time defense (default: on)")
    mp.add_argument("--eot", type=int, default=10, help="EOT samples for randomised test-time defenses (adaptive)")
    mp.add_argument("--io", default="memory", choices=["memory", "png", "jpeg75"])
    mp.add_argument("--attack-arg", action="append", metavar="ATTACK:KEY=VALUE",
                    help="extra argument of one attack (JSON value), e.g. mifgsm:gong_faithful=true; repeatable")
    mp.add_argument("--surrogate", default="baseline", help="preset DMR is fitted on (default: %(default)s)")
    mp.add_argument("--epochs", type=int, default=None, help="override every preset's training epochs (smoke runs)")
    mp.add_argument("--dmr-epochs", type=int, default=None, help="override DMR's fitting epochs")
    mp.add_argument("--device", default="auto")
    mp.add_argument("--batch-size", type=int, default=64)
    mp.add_argument("--results", default=None, help="results folder (default: ./results)")
    mp.add_argument("--checkpoints", default=None,
                    help="checkpoint store (default: $REIDBENCH_HOME/checkpoints; keyed by preset, dataset, seed)")
    mp.add_argument("--force", action="store_true", help="recompute cells that already have a record")
    mp.set_defaults(func=cmd_matrix)

    lp = sub.add_parser("leaderboard", help="tables from matrix records: Markdown, CSV or HTML")
    lp.add_argument("--results", default="results", help="results folder of `reidbench matrix` (default: %(default)s)")
    lp.add_argument("--format", default="md", choices=["md", "csv", "html"])
    lp.add_argument("--rerank", action="store_true", help="the metrics after k-reciprocal re-ranking")
    lp.add_argument("--title", default=None)
    lp.add_argument("--out", default=None, help="write to FILE (atomically) instead of stdout")
    lp.set_defaults(func=cmd_leaderboard)

    rp = sub.add_parser("reproduce", help="run a paper's protocol and print reidbench's numbers next to the paper's")
    rp.add_argument("recipe", help="recipe name: seed-cvpr22 (Gong et al., CVPRW 2022, Tables 1, 4, 5, 6, 7)")
    rp.add_argument("--dataset", default="market1501", help="market1501 (default) or dukemtmcreid (Table 4 only)")
    rp.add_argument("--data-root", default=None, help="folder holding your copy of the dataset")
    rp.add_argument("--smoke", action="store_true",
                    help="the same pipeline on a tiny synthreid with 1-epoch models and 2-step attacks "
                         "(compared with the paper's Market-1501 numbers; checks the plumbing, not the figures)")
    rp.add_argument("--faithful", action="store_true",
                    help="the seed code's I/O and evaluation: JPEG-75 adversarial queries, Market-official "
                         "trapezoid AP, single-guide M-IFGSM, the seed's LTA details")
    rp.add_argument("--adaptive", action="store_true", help="also run CS-aware (adaptive) twins (not in the paper)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--epochs", type=int, default=None, help="override every model's training epochs")
    rp.add_argument("--device", default="auto")
    rp.add_argument("--batch-size", type=int, default=64)
    rp.add_argument("--results", default=None, help="results folder (default: results/<recipe>-<dataset>[-smoke])")
    rp.add_argument("--checkpoints", default=None, help="checkpoint store (default: $REIDBENCH_HOME/checkpoints)")
    rp.add_argument("--force", action="store_true", help="recompute cells that already have a record")
    rp.set_defaults(func=cmd_reproduce)

    vp = sub.add_parser("viz", help="figures: ranked lists, perturbations, eps curves, heat-maps, Grad-CAM, t-SNE "
                                    "(needs the [viz] extra)")
    vsub = vp.add_subparsers(dest="viz_command", metavar="FIGURE")
    vhelp = {"ranks": "a query and its top-k gallery images, clean vs each attack (the seed's Figure 1)",
             "perturbation": "clean, adversarial, the amplified perturbation and what CS leaves of it (Figure 6)",
             "gradcam": "Grad-CAM maps on clean and adversarial queries, for one or more models (Figure 8)",
             "tsne": "t-SNE of clean, adversarial and grayscale features of a few identities (Figure 7)",
             "curves": "mAP and rank-1 against eps from matrix records (run the matrix with --eps lists)",
             "heatmap": "robust mAP (or R1) of every leaderboard row under every attack, from records"}
    for kind, text in vhelp.items():
        v = vsub.add_parser(kind, help=text, description=text)
        v.add_argument("--out", required=True, help="FILE.png or FILE.svg")
        v.add_argument("--title", default=None)
        if kind in ("curves", "heatmap"):
            v.add_argument("--results", default="results", help="results folder of `reidbench matrix`")
            v.add_argument("--rerank", action="store_true", help="the metrics after re-ranking")
            if kind == "heatmap":
                v.add_argument("--metric", default="mAP", choices=["mAP", "R1"])
            v.set_defaults(func=cmd_viz)
            continue
        v.add_argument("--checkpoint", required=True, help="model.pt written by `reidbench train`")
        _add_data_args(v, default=None)
        v.add_argument("--attack", action="append", help="run this attack on the shown queries (repeatable)")
        v.add_argument("--adv", action="append", metavar="[LABEL=]FILE",
                       help="saved adversarial queries (`reidbench attack --save FILE.pt`); repeatable")
        v.add_argument("--queries", default=None, help="query indices, e.g. 0,17,42 (default: evenly spaced)")
        v.add_argument("--num-queries", type=int, default=3 if kind != "perturbation" else 2)
        v.add_argument("--eps", default=None, help="attack budget, e.g. 5/255 (default: the attack's)")
        v.add_argument("--alpha", default=None)
        v.add_argument("--steps", type=int, default=None)
        v.add_argument("--attack-arg", action="append", metavar="KEY=VALUE")
        v.add_argument("--seed", type=int, default=0)
        v.add_argument("--device", default="auto")
        v.add_argument("--defense", default=None, help="test-time defense (default: the preset's; perturbation: cs)")
        if kind == "ranks":
            v.add_argument("--topk", type=int, default=10)
            v.add_argument("--adaptive", action="store_true", help="attack through the test-time defense")
        if kind == "gradcam":
            v.add_argument("--compare", action="append", metavar="CHECKPOINT",
                           help="another model to show beside it, e.g. the PD model (repeatable)")
        if kind == "tsne":
            v.add_argument("--ids", type=int, default=6, help="identities to show (default 6)")
        v.set_defaults(func=cmd_viz)
    vp.set_defaults(func=lambda a: _missing_action(vp))

    dp = sub.add_parser("data", help="generate synthreid or check a dataset folder")
    dsub = dp.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="generate the synthreid dataset (Market-1501 layout)")
    s.add_argument("--out", help="output folder (default: $REIDBENCH_HOME/data/synthreid-<size>-seed<seed>-v<N>)")
    s.add_argument("--size", default="default", choices=list(SYNTH_SIZES))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=None, help="rendering processes (default: up to 4)")
    s.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    s.set_defaults(func=cmd_data_synth)
    c = dsub.add_parser("check", help="validate a dataset folder and print its split statistics")
    c.add_argument("--dataset", default="synthreid", help="dataset name (see `reidbench list datasets`)")
    c.add_argument("--root", "--data-root", dest="root", default=None, help="folder holding the dataset")
    c.add_argument("--size", default="default", choices=list(SYNTH_SIZES), help="synthreid size")
    c.add_argument("--decode", action="store_true", help="also decode every image (fills the image cache)")
    c.add_argument("--skip-corrupt", action="store_true", help="with --decode: skip unreadable images, with a count")
    c.add_argument("--no-cache", action="store_true", help="with --decode: do not read or write the image cache")
    c.set_defaults(func=cmd_data_check)
    dp.set_defaults(func=lambda a: _missing_action(dp))
    return p


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        load_builtins()
    except ImportError as e:
        print(f"reidbench: error: {e}", file=sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CLIError, UnknownNameError, FileNotFoundError, FileExistsError, ValueError, OSError,
            RuntimeError) as e:
        print(f"reidbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
