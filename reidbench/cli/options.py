"""Option groups shared by several commands, declared once, and the readers that turn them into
objects (device, dataset, checkpoint, test-time defense, attack spec and budget).

A command adds the groups it takes (``add_data(p)``, ``add_budget(p)`` ...) and reads them with the
matching reader; no command spells an option another command also has.
"""

from __future__ import annotations

import argparse

from ..registry import parse_attack, parse_defense, parse_value

# reidbench.data.synthreid.SIZES, spelled out so that `--help` does not import the data stack (a test
# keeps the two in step)
SYNTH_SIZES = ("default", "large", "tiny")

#: how adversarial images reach the model: in memory, after 8-bit quantisation, after a JPEG-75 round trip
IO_CHOICES = ("memory", "png", "jpeg75")


class CLIError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


# -- option groups ------------------------------------------------------------------------------------

def add_data(p: argparse.ArgumentParser, default: str | None = "synthreid") -> None:
    """--dataset, --data-root, --synth-size. ``default=None``: the dataset the checkpoint was trained on."""
    p.add_argument("--dataset", default=default,
                   help="dataset name (default: %s; see `reidbench list datasets`)"
                        % (default or "the one the checkpoint was trained on"))
    p.add_argument("--data-root", default=None, help="folder holding a real dataset (not needed for synthreid)")
    p.add_argument("--synth-size", default="default", choices=list(SYNTH_SIZES), help="synthreid size")


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    """--checkpoint and the dataset options (default: the checkpoint's dataset)."""
    p.add_argument("--checkpoint", required=True, help="model.pt written by `reidbench train`")
    add_data(p, default=None)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default: cuda if available)")


def add_init(p: argparse.ArgumentParser) -> None:
    from ..models.architectures import INIT_CHOICES

    p.add_argument("--init", choices=INIT_CHOICES, default=None,
                   help="start from ImageNet weights or from scratch (default: imagenet; on synthreid "
                        "EfficientNet-Lite0's, shipped in a package, offline; scratch there is a small ResNet; "
                        "ft_net and the other torchvision models download theirs)")


def add_batch_size(p: argparse.ArgumentParser, default: int = 64) -> None:
    p.add_argument("--batch-size", type=int, default=default, help="images per forward pass (default: %(default)s)")


def add_defense(p: argparse.ArgumentParser, default_text: str = "the preset's, e.g. cs for jad") -> None:
    p.add_argument("--defense", default=None,
                   help=f"test-time defense spec (cs, cs-r, jpeg, bitdepth, rrp, cs+jpeg, none; default: {default_text})")


def add_budget(p: argparse.ArgumentParser, *, per_attack: bool = False) -> None:
    """--eps, --alpha, --steps, --attack-arg, --seed. ``per_attack``: --attack-arg names its attack
    (ATTACK:KEY=VALUE) and --eps takes a comma-separated list (the matrix)."""
    if per_attack:
        p.add_argument("--eps", default=None, help="budget(s), comma-separated (5/255,8/255); default: each "
                                                   "attack's (5/255; 16/255 for dmr)")
    else:
        p.add_argument("--eps", default=None, help="L-inf budget, e.g. 5/255 (default: the attack's)")
        p.add_argument("--alpha", default=None, help="step size, e.g. 1/255 (default: the attack's)")
    p.add_argument("--steps", type=int, default=None, help="iterations of the gradient attacks (default: the attack's)")
    meta = "ATTACK:KEY=VALUE" if per_attack else "KEY=VALUE"
    example = "mifgsm:gong_faithful=true" if per_attack else "gong_faithful=true"
    p.add_argument("--attack-arg", action="append", metavar=meta,
                   help=f"extra attack argument (JSON value), e.g. {example}; repeatable")
    if not per_attack:
        p.add_argument("--seed", type=int, default=0, help="attack seed (default: %(default)s)")


def add_threat(p: argparse.ArgumentParser) -> None:
    """--adaptive and --eot: attacking through a test-time defense."""
    p.add_argument("--adaptive", action="store_true",
                   help="attack through the test-time defense (differentiable version or BPDA; EOT if randomised)")
    p.add_argument("--eot", type=int, default=10, help="EOT samples per step for randomised defenses (with --adaptive)")


def add_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("--io", default="memory", choices=list(IO_CHOICES),
                   help="evaluate in memory (default), after 8-bit quantisation (png) or after a JPEG-75 round "
                        "trip as the seed's code did (jpeg75)")


def add_run_store(p: argparse.ArgumentParser, results_default: str = "./results") -> None:
    """--results, --checkpoints, --force: where a resumable run keeps records and checkpoints."""
    p.add_argument("--results", default=None, help=f"results folder (default: {results_default})")
    p.add_argument("--checkpoints", default=None,
                   help="checkpoint store (default: $REIDBENCH_HOME/checkpoints; keyed by preset, dataset, seed)")
    p.add_argument("--force", action="store_true", help="recompute cells that already have a record")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


# -- readers ------------------------------------------------------------------------------------------

def device(name: str | None) -> str:
    """--device: ``auto`` is CUDA when there is one; a CUDA device where none exists is an error."""
    import torch

    from .. import distributed

    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: no CUDA device is available here; use --device cpu")
    world = distributed.current()
    if name == "cuda" and world.distributed:  # torchrun: this process's GPU
        return f"cuda:{world.local_rank}"
    return name


def load_data(name: str, args: argparse.Namespace):
    from .. import distributed
    from ..data import open_dataset

    with distributed.main_first():  # torchrun: one process generates or checks the files, the others reuse them
        return open_dataset(name, args.data_root, size=args.synth_size, progress=not args.quiet)


def checkpoint_and_data(args: argparse.Namespace):
    """(device, model, checkpoint card, dataset): the dataset defaults to the one the model was
    trained on (``--dataset`` evaluates across domains)."""
    from ..models import load_checkpoint

    dev = device(args.device)
    model, card = load_checkpoint(args.checkpoint, device=dev)
    name = args.dataset or card.get("dataset", {}).get("name", "synthreid")  # a card's name may carry its size
    return dev, model, card, load_data(name, args)


def model_title(card: dict) -> str:
    return card.get("preset", card["arch"])


def defense_spec(args: argparse.Namespace, card: dict):
    """--defense (``none`` disables), else the test-time defense the checkpoint's preset carries."""
    name = getattr(args, "defense", None)
    return parse_defense(card.get("test_defense") if name is None else name)


def attack_spec(args: argparse.Namespace, name: str | None = None):
    """--attack (a spec: ``mifgsm(gong_faithful=true)``) with the --attack-arg KEY=VALUE items added."""
    extra = {}
    for item in args.attack_arg or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CLIError(f"--attack-arg expects KEY=VALUE (e.g. gong_faithful=true), got {item!r}")
        extra[key.strip()] = parse_value(value)
    return parse_attack(name or args.attack, **extra)


def per_attack_args(items) -> dict:
    """``--attack-arg mifgsm:gong_faithful=true`` (repeatable) -> ``{"mifgsm": {"gong_faithful": True}}``."""
    out: dict = {}
    for item in items or []:
        head, eq, value = item.partition("=")
        attack, colon, key = head.rpartition(":")
        if not colon or not eq or not key.strip() or not attack.strip():
            raise CLIError(f"--attack-arg expects ATTACK:KEY=VALUE (e.g. mifgsm:gong_faithful=true), got {item!r}")
        out.setdefault(parse_attack(attack).name, {})[key.strip()] = parse_value(value)
    return out


def budget(args: argparse.Namespace) -> dict:
    """--seed, --eps, --alpha and --steps as attack arguments (absent: the attack's defaults)."""
    from ..utils import parse_fraction

    kw: dict = {"seed": args.seed}
    for name in ("eps", "alpha"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = parse_fraction(v, option=f"--{name}")
    if args.steps is not None:
        kw["steps"] = args.steps
    return kw


def eps_list(text: str | None) -> tuple:
    """--eps of the matrix: comma-separated budgets; absent: ``(None,)`` (each attack's default)."""
    from ..registry import split_specs
    from ..utils import parse_fraction

    return tuple(parse_fraction(e, option="--eps") for e in split_specs(text)) if text else (None,)


def int_list(text: str, option: str) -> tuple[int, ...]:
    from ..registry import split_specs

    try:
        return tuple(int(s) for s in split_specs(str(text)))
    except ValueError:
        raise CLIError(f"{option} takes whole numbers, comma-separated (e.g. 0,1,2); got {text!r}") from None


def echo(args: argparse.Namespace):
    """What a long command prints its progress lines with: nothing under --quiet."""
    return (lambda s: None) if args.quiet else print
