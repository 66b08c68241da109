"""``reidbench train``: train a model preset, checkpoint every epoch, evaluate it clean."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import options
from .report import Report


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model preset (checkpoint each epoch, --resume)")
    p.add_argument("--model", default="baseline", help="model preset (see `reidbench list models`)")
    options.add_data(p)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    p.add_argument("--arch", default=None, help="override the preset's architecture")
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>-<dataset>-seed<seed>)")
    p.add_argument("--seed", type=int, default=0)
    options.add_device(p)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    options.add_init(p)
    p.add_argument("--pretrained", choices=["on", "off"], default=None, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--amp", nargs="?", const="fp16", default=False, choices=["fp16", "bf16"],
                   help="mixed precision: fp16 (the default of a bare --amp; CUDA, gradient scaling) or bf16 (any device)")
    p.add_argument("--channels-last", action="store_true",
                   help="model and inputs in channels-last memory format (faster convolutions on GPUs)")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the training forward pass (backend: inductor, the default)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="DataLoader processes fetching the next batches (default: 0 on a CPU, up to 4 beside a GPU); "
                        "the weights do not depend on it")
    p.add_argument("--stream", action="store_true",
                   help="decode the training images batch by batch from their files (in the workers) instead of "
                        "all of them first into memory through the image cache")
    p.add_argument("--no-eval", action="store_true", help="skip the clean evaluation at the end")
    p.set_defaults(func=run, torchrun=True)  # torchrun -m reidbench train: data-parallel


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..models.architectures import parse_init
    from ..models.defended import DefendedModel
    from ..evaluation import evaluate_model
    from ..registry import parse_defense
    from ..train import train_preset
    from .report import rounded

    ds = options.load_data(args.dataset, args)
    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{ds.name}-seed{args.seed}"
    device = options.device(args.device)
    t0 = time.perf_counter()
    pretrained = parse_init(args.init) if args.init is not None else \
        None if args.pretrained is None else args.pretrained == "on"
    result, card = train_preset(args.model, ds, out, seed=args.seed, epochs=args.epochs, arch=args.arch,
                                device=device, resume=args.resume, pretrained=pretrained, amp=args.amp,
                                channels_last=args.channels_last, compile=args.compile, workers=args.workers,
                                stream=args.stream, progress=not args.quiet)
    last = card["history"][-1] if card["history"] else {}  # every stage's epochs: AT's, goat-ft's fine-tuning too
    print(f"trained {card['preset']} ({card['arch']}, init {card.get('init', 'scratch')}) on {ds.name} for {len(card['history'])} epochs "
          f"in {time.perf_counter() - t0:.0f} s; last epoch loss {last.get('loss', float('nan')):.4f}, "
          f"train accuracy {100 * last.get('train_acc', float('nan')):.1f}%")
    print(f"checkpoint: {out / 'model.pt'} (sidecar {out / 'model.json'})")
    if not args.no_eval:
        defense = parse_defense(card.get("test_defense")).build()
        model = DefendedModel(result.model, defense) if defense is not None else result.model
        m = evaluate_model(model, ds, device=device, progress=not args.quiet)
        Report().add(f"{ds.name} (clean)", m).print()
        if distributed.current().is_main:  # torchrun: rank 0 writes
            (out / "eval.json").write_text(json.dumps(rounded(m), indent=2) + "\n")
    return 0
