"""Issue 18's targets: does ``auto`` give a worst case that holds? (results: benchmarks/RESULTS.md)

For one checkpoint (and its test-time defense, attacked adaptively through it) on a dataset:

* every attack of ``--attacks all`` but ``auto`` and DMR (SMA, LTA, M-IFGSM, FNA, ODFA) at the
  library's protocol, and their per-query worst case (rank-1 lost under any attack; AP the minimum);
* ``auto``: R1 / mAP, per component, seconds, and how many queries each component attacked (early
  stopping on queries already broken);
* the cost ratio of ``auto`` to one 15-step SMA of the same queries;
* ``auto`` with 4x the iterations on a fixed subset of queries against ``auto`` on the same subset
  (converged: within 1 point).

    python benchmarks/auto_targets.py --checkpoint STORE/baseline-.../model.pt --out /tmp/auto-baseline.json
    python benchmarks/auto_targets.py --checkpoint STORE/pd-.../model.pt --defense cs --out /tmp/auto-jad.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from reidbench.attacks.evaluate import attack_queries, evaluate_attacked, prepare_evalset
from reidbench.checks import check_subset
from reidbench.data import open_dataset
from reidbench.models import load_checkpoint
from reidbench.models.defended import DefendedModel
from reidbench.protocol import attack_kwargs, prepare_attack, threat_of
from reidbench.registry import parse_defense

OTHERS = ("sma", "lta", "mifgsm", "fna", "odfa")


def per_query(res: dict) -> tuple[np.ndarray, np.ndarray]:
    pq = res["per_query"]
    return np.asarray(pq["first_match_rank"]) == 0, np.asarray(pq["ap"], dtype=float)


def worst(results: list[dict]) -> dict[str, float]:
    hits = np.logical_and.reduce([per_query(r)[0] for r in results])
    aps = np.min([per_query(r)[1] for r in results], axis=0)
    valid = aps >= 0
    return {"R1": round(100 * float(hits[valid].mean()), 2), "mAP": round(100 * float(aps[valid].mean()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", default="synthreid")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--defense", default="none", help="test-time defense, attacked adaptively (e.g. cs)")
    ap.add_argument("--check-queries", type=int, default=64, help="queries of the 4x-iterations run")
    ap.add_argument("--queries", type=int, default=0, help="attack only this many queries, spread over the set "
                                                           "(0: all); the worst cases are over them")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, card = load_checkpoint(args.checkpoint)
    ds = open_dataset(args.dataset, args.data_root, progress=False)
    spec = parse_defense(args.defense)
    defense = spec.build()
    threat = threat_of(defense is not None, adaptive=True)
    ev = prepare_evalset(model, ds, defense=defense, adaptive=True)
    eval_model = DefendedModel(model, defense) if defense is not None else model
    out: dict = {"checkpoint": str(args.checkpoint), "preset": card.get("preset"), "defense": spec.text,
                 "threat": threat.value, "queries": len(ev.q_pids), "machine": f"{platform.machine()}, "
                 f"{torch.get_num_threads()} threads, torch {torch.__version__}", "attacks": {}}

    def run(name: str, indices=None, **over):
        kw = {**attack_kwargs(name, threat, spec, seed=0), **over}
        prepared = prepare_attack(model, name, defense, threat, ev, kwargs=kw)
        atk = prepared.attack
        counts: dict[str, int] = {}
        for cname, comp in getattr(atk, "components", {}).items():
            real = comp.perturb

            def counting(images, *a, _real=real, _name=cname, **k):
                counts[_name] = counts.get(_name, 0) + len(images)
                return _real(images, *a, **k)

            comp.perturb = counting
        t0 = time.perf_counter()
        indices = indices if indices is not None else subset
        res = attack_queries(atk, ev, eval_model, batch_size=args.batch_size, context=prepared.context, indices=indices)
        seconds = time.perf_counter() - t0
        scored = evaluate_attacked(res, ev, indices=indices)
        return scored, seconds, counts

    subset = check_subset(len(ev.q_pids), args.queries) if args.queries else None
    out["queries_attacked"] = len(subset) if subset else len(ev.q_pids)
    results = []
    for name in OTHERS:
        scored, seconds, _ = run(name)
        results.append(scored["attacked"])
        out["attacks"][name] = {"R1": round(scored["attacked"]["R1"], 2), "mAP": round(scored["attacked"]["mAP"], 2),
                                "seconds": round(seconds, 1)}
        print(name, out["attacks"][name], flush=True)
    out["worst_of_others"] = worst(results)
    scored, seconds, counts = run("auto")
    out["auto"] = {"R1": round(scored["attacked"]["R1"], 2), "mAP": round(scored["attacked"]["mAP"], 2),
                   "seconds": round(seconds, 1), "queries_per_component": counts,
                   "components": {n: {"R1": round(m["R1"], 2), "mAP": round(m["mAP"], 2)}
                                  for n, m in scored["components"].items()},
                   "worst_with_components": worst([scored["attacked"], *scored["components"].values()])}
    out["worst_all"] = worst([*results, scored["attacked"], *scored["components"].values()])
    out["auto_over_sma_seconds"] = round(seconds / out["attacks"]["sma"]["seconds"], 2)
    print("auto", out["auto"], "cost x SMA", out["auto_over_sma_seconds"], flush=True)
    idx = check_subset(len(ev.q_pids), args.check_queries)
    if subset is not None:  # the convergence queries spread over the attacked subset
        idx = [subset[i] for i in check_subset(len(subset), args.check_queries)]
    one, s1, _ = run("auto", indices=idx)
    four, s4, _ = run("auto", indices=idx, steps=400)
    out["convergence"] = {"queries": len(idx), "auto": {k: round(one["attacked"][k], 2) for k in ("R1", "mAP")},
                          "auto_4x": {k: round(four["attacked"][k], 2) for k in ("R1", "mAP")},
                          "seconds": round(s1, 1), "seconds_4x": round(s4, 1)}
    print("convergence", out["convergence"], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
