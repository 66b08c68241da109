"""Issue 3: does synthreid flatter circuitous scaling because of the pipeline? (results: benchmarks/RESULTS.md)

On Market-1501 the seed's models see 128x64 crops up-sampled to 256x128, and CS resizes that input
down to 110x50 (0.43 of it); on synthreid the default model sees the native 128x64 and CS goes down
to 0.86 of it. This probe trains (or loads) the synthreid baseline at a chosen input size and
measures how much of rank-1 CS restores under white-box attacks that are oblivious of CS:

    python benchmarks/cs_pipeline_probe.py --input 256x128 --out /tmp/cs-256.json
    python benchmarks/cs_pipeline_probe.py --checkpoint STORE/baseline-.../model.pt --out /tmp/cs-128.json
    python benchmarks/cs_pipeline_probe.py --widths 48,96,192,384 --out /tmp/cs-wide.json   # 2x wider
    python benchmarks/cs_pipeline_probe.py --input 256x128 --weights W.pt --io jpeg75 ...     # the seed's JPEG I/O

At 256x128 the small ResNet uses ResNet's 7x7/2 + max-pool stem (overall stride 4), so its stages
run at the same feature-map sizes as the 128x64 model's, and the pad of the augmentation doubles.
``--data-root`` measures another synthreid folder (a variant of ``synth_variants.py``, or a larger
test set). Prints and writes JSON: clean, attacked, CS-defended and JPEG-75-defended (queries only) R1/mAP
for each attack, the share of the attack's feature shift that survives CS, and seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from reidbench.attacks import build_attack
from reidbench.attacks.evaluate import attack_queries, prepare_evalset
from reidbench.data import load_dataset, load_images
from reidbench.defenses import JPEG, CircuitousScaling, DefendedModel
from reidbench.evaluation import evaluate_features, extract_features
from reidbench.models import build_architecture, load_checkpoint
from reidbench.train import get_recipe, train_model
from reidbench.utils import seed_everything


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _metrics(res: dict) -> dict[str, float]:
    return {"R1": round(float(res["R1"]), 2), "mAP": round(float(res["mAP"]), 2)}


def _shift_ratio(adv: torch.Tensor, clean: torch.Tensor, adv_cs: torch.Tensor, clean_cs: torch.Tensor) -> float:
    """Median over queries of how much of the attack's feature shift (L2-normalised features)
    survives CS: ||f(CS(x')) - f(CS(x))|| / ||f(x') - f(x)||."""
    n = torch.nn.functional.normalize
    kept = (n(adv_cs, dim=1) - n(clean_cs, dim=1)).norm(dim=1) / (n(adv, dim=1) - n(clean, dim=1)).norm(dim=1).clamp_min(1e-12)
    return round(float(kept.median()), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=_size, default=(128, 64), help="model input size HxW (default 128x64)")
    ap.add_argument("--widths", help="stage widths of the small ResNet, e.g. 48,96,192,384 (default: the preset's)")
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training one")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attacks", default="lta,sma")
    ap.add_argument("--eps", type=float, default=5.0, help="in 1/255 units")
    ap.add_argument("--weights", help="with --input/--widths: load these weights (from --save) instead of training")
    ap.add_argument("--io", default="memory", choices=("memory", "jpeg75"),
                    help="jpeg75: adversarial queries saved as JPEG-75 and read back, as the seed's scripts do")
    ap.add_argument("--save", help="write the trained model's weights here")
    ap.add_argument("--data-root", help="a synthreid folder to use instead of the default one (e.g. another generator)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ds = load_dataset("synthreid", root=args.data_root, progress=False)
    t0 = time.perf_counter()
    if args.checkpoint:
        model, card = load_checkpoint(args.checkpoint)
        source = {"checkpoint": args.checkpoint, "sha256": card["sha256"]}
    else:
        seed_everything(args.seed)
        train = load_images(ds.train, progress=False)
        h, w = args.input
        kwargs = {"input_size": (h, w)} if (h, w) == (128, 64) else {"input_size": (h, w), "stem": "resnet"}
        if args.widths:
            kwargs["widths"] = tuple(int(v) for v in args.widths.split(","))
        model = build_architecture("resnet-small", int(train.pids.max()) + 1, **kwargs)
        recipe = get_recipe("cpu").replace(epochs=args.epochs, pad=4 * h // 128)
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        else:
            model = train_model(model, train.images, train.pids, recipe, seed=args.seed, progress=True).model
        source = {"trained": not args.weights, "weights": args.weights,
                  "arch_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                  "recipe": recipe.to_dict()}
        if args.save:
            torch.save(model.state_dict(), args.save)
    train_s = time.perf_counter() - t0
    model.eval()

    cs = CircuitousScaling()
    defended = DefendedModel(model, cs)
    # evaluation features through CS; the oblivious attacker's (ctx_*) without it
    ev = prepare_evalset(model, ds, defense=cs, adaptive=False)
    q_plain, g_plain, q_cs, g_cs = ev.ctx_q_feats, ev.ctx_g_feats, ev.q_feats, ev.g_feats

    def score(qf, gf):
        return _metrics(evaluate_features(qf, gf, ev.q_pids, ev.g_pids, ev.q_camids, ev.g_camids))

    out = {"input_size": list(model.input_size), "cs_sizes": [list(s) for s in cs.sizes],
           "cs_min_scale": round(min(s[0] for s in cs.sizes) / model.input_size[0], 3), "source": source,
           "train_seconds": round(train_s, 1), "clean": score(q_plain, g_plain), "clean_cs": score(q_cs, g_cs),
           "attacks": {}, "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
           "torch": torch.__version__, "seed": args.seed, "io": args.io}
    for name in args.attacks.split(","):
        t1 = time.perf_counter()
        atk = build_attack(name, model, eps=args.eps / 255, seed=args.seed)
        res = attack_queries(atk, ev, model, keep_images=True, progress=True, io=args.io)
        adv_cs = extract_features(defended, res["images"], 128, "cpu")
        attacked, attacked_cs = score(res["features"], g_plain), score(adv_cs, g_cs)
        # the seed's Table 4 JPEG row: the adversarial queries through a JPEG-75 round trip, gallery clean
        attacked_jpeg = score(extract_features(DefendedModel(model, JPEG()), res["images"], 128, "cpu"), g_plain)
        out["attacks"][name] = {"attacked": attacked, "attacked_cs": attacked_cs, "attacked_jpeg75": attacked_jpeg,
                                "shift_kept_by_cs": _shift_ratio(res["features"], q_plain, adv_cs, q_cs),
                                "r1_restored_by_cs": round(attacked_cs["R1"] / max(out["clean_cs"]["R1"], 1e-9), 3),
                                "linf_max_255": round(res["linf_max"] * 255, 2),
                                "seconds": round(time.perf_counter() - t1, 1)}
    text = json.dumps(out, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
