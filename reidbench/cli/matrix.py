"""``reidbench matrix``: models x test-time defenses x attacks, resumable; records and the leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options


def add_parser(sub) -> None:
    p = sub.add_parser("matrix", help="cross models x test-time defenses x attacks; resumable; writes records and "
                                      "prints the leaderboard")
    p.add_argument("--models", default="baseline,jad", help="model presets, comma-separated (default: %(default)s)")
    p.add_argument("--attacks", default="all",
                   help="attack specs, comma-separated, or 'all' (see `reidbench list attacks`)")
    p.add_argument("--defenses", default="none",
                   help="extra test-time defenses crossed with every model (cs, jpeg, bitdepth, rrp, cs+jpeg, "
                        "cs(sizes=P1), jpeg(quality=50)...); "
                        "'none' (the model as its preset defines it) is always included")
    options.add_data(p)
    options.add_budget(p, per_attack=True)
    p.add_argument("--seeds", default="0", help="seeds, comma-separated: each trains its own models (default 0)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=True,
                   help="also record metrics after k-reciprocal re-ranking (default: on)")
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                   help="adaptive twins of every attack for rows with a test-time defense (default: on)")
    p.add_argument("--eot", type=int, default=10, help="EOT samples for randomised test-time defenses (adaptive)")
    p.add_argument("--checks", type=int, default=32, metavar="N",
                   help="self-checks per attacked cell (unconverged: N queries attacked again with 4x the "
                        "iterations; zero-gradient; randomised-no-eot); 0 turns them off (default: %(default)s)")
    options.add_io(p)
    p.add_argument("--surrogate", default="baseline", help="preset transfer attacks (dmr) are fitted on "
                                                          "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="override every preset's training epochs (smoke runs)")
    options.add_init(p)
    p.add_argument("--dmr-epochs", type=int, default=None, help="override the transfer attacks' fitting epochs")
    options.add_device(p)
    options.add_batch_size(p)
    options.add_run_store(p)
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: this process (default, no setup); ray: trainings, features and cells as Ray tasks "
                        "(pip install 'reidbench[distributed]'), records written here")
    p.add_argument("--address", default=None, help="with --executor ray: the cluster (HOST:PORT or auto; default: "
                                                   "start a local one)")
    p.add_argument("--gpus-per-task", type=float, default=None,
                   help="with --executor ray: GPUs per task, fractions allowed (default: 1 when the cluster has GPUs)")
    p.add_argument("--ray-cpus", type=int, default=None, help="with --executor ray and no --address: CPUs of the local cluster")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..leaderboard import render
    from ..matrix import MatrixConfig, run_matrix
    from ..registry import parse_attacks, parse_defenses, split_specs

    if args.checks < 0:
        raise options.CLIError(f"--checks takes a number of queries >= 0 (0 turns the self-checks off), got {args.checks}")
    attacks = parse_attacks(args.attacks)
    defenses = parse_defenses("none," + (args.defenses or ""))  # the model as its preset defines it comes first
    for spec in (*attacks, *(p for d in defenses for p in d.parts)):
        spec.validate()  # an argument the class does not take fails now, not after the trainings
    config = MatrixConfig(models=tuple(split_specs(args.models)), attacks=attacks, defenses=defenses,
                          dataset=args.dataset, data_root=args.data_root, synth_size=args.synth_size,
                          eps=options.eps_list(args.eps), steps=args.steps, seeds=options.int_list(args.seeds, "--seeds"),
                          rerank=args.rerank, adaptive=args.adaptive, eot=args.eot, io=args.io,
                          surrogate=args.surrogate, epochs=args.epochs, init=args.init, dmr_epochs=args.dmr_epochs,
                          device=options.device(args.device), batch_size=args.batch_size,
                          attack_args=options.per_attack_args(args.attack_arg), checks=args.checks)
    results = args.results or "results"
    if args.executor == "ray":
        from ..matrix.ray_executor import run_matrix_ray

        run = run_matrix_ray(config, results, address=args.address, gpus_per_task=args.gpus_per_task,
                             num_cpus=args.ray_cpus, force=args.force, progress=not args.quiet, store=args.checkpoints,
                             echo=options.echo(args))
    else:
        if args.address or args.gpus_per_task is not None or args.ray_cpus is not None:
            raise options.CLIError("--address, --gpus-per-task and --ray-cpus are options of --executor ray")
        run = run_matrix(config, results, force=args.force, progress=not args.quiet, store=args.checkpoints,
                         echo=options.echo(args))
    print(render(results, "md", rerank=False, title=f"reidbench leaderboard ({config.dataset})"))
    if args.rerank:
        print(render(results, "md", rerank=True, title="with k-reciprocal re-ranking"))
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in run.stages.items())
    print(f"{len(run.computed)} cells computed, {len(run.skipped)} already recorded"
          + (f", {len(run.busy)} being computed by another run" if run.busy else "") + f"; {stages}")
    print(f"records in {Path(results) / 'records'}; tables: reidbench leaderboard --results {results} --format md|csv|html")
    return 0
