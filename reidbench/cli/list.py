"""``reidbench list [attacks|defenses|models|datasets]``: what the registries hold."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from ..registry import ARCHITECTURES, ATTACKS, DATASETS, DEFENSES, MODELS, REPRODUCTIONS, Registry, format_eps

REGISTRIES: dict[str, Registry] = {"attacks": ATTACKS, "defenses": DEFENSES, "models": MODELS,
                                   "architectures": ARCHITECTURES, "datasets": DATASETS, "reproductions": REPRODUCTIONS}


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered attacks, defenses, model presets, architectures, datasets or reproductions")
    p.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="what to list (default: everything)")
    p.set_defaults(func=run)


def _format_defaults(defaults: dict) -> str:
    def fmt(k, v):
        if k in ("eps", "alpha") and isinstance(v, float):
            return format_eps(v)
        return repr(v)

    return ", ".join(f"{k}={fmt(k, v)}" for k, v in defaults.items())


def run(args: argparse.Namespace) -> int:
    for kind in [args.kind] if args.kind else list(REGISTRIES):
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
