"""One-run GPU benchmark (issue 20): every GPU figure of benchmarks/RESULTS.md in one command.

    python benchmarks/gpu_run.py --out gpu.json            # on the GPU machine (device tool)
    python benchmarks/gpu_run.py --quick --device cpu      # checks the script here, in a minute

Each figure is measured in this run against its named baseline:

* ``attack_step``: SMA and LTA images/s with ft_net (ResNet-50) at 256x128, batch 32/128/512, against
  a raw forward + backward-to-input loop of the same model and batch (ratio = raw / engine time);
* ``batched``: LTA on 32 queries as one batch against one query at a time;
* ``training``: train_model images/s of ft_net at 256x128 (the seed recipe's batch 32), without and
  with PD's augmentation, fp32, fp16 (autocast + GradScaler) and bf16 autocast, channels-last;
* ``evaluation``: evaluate_rank and k-reciprocal re-ranking of a Market-shaped problem (3,368 x
  15,913, 512-d) on the device;
* ``market_lta``: the full Market-shaped query set (3,368 queries, 15 steps) through LTA end to end
  (attack_queries: decode-free uint8 queries, the attack, the adversarial features).

Results are printed and written as JSON (``--out``) with the device's name, torch and CUDA versions.
``--quick`` shrinks every size so that the script itself can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeat: int = 3, warmup: int = 1) -> float:
    """The best of ``repeat`` wall times of ``fn`` (seconds), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def frozen_ftnet(device: str, quick: bool):
    from reidbench.models import build_architecture

    torch.manual_seed(0)
    if quick:
        m = build_architecture("resnet-small", 751, widths=(8, 16, 16, 16), input_size=(64, 32))
    else:
        m = build_architecture("ft_net", 751)
    return m.eval().to(device)


def attack_step(device: str, quick: bool) -> list[dict]:
    from reidbench.attacks import LTA, SMA

    model = frozen_ftnet(device, quick)
    size = tuple(model.input_size)
    rows = []
    for batch in ((4, 8) if quick else (32, 128, 512)):
        x = torch.rand(batch, 3, *size, device=device)
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            ref = model(x)

        def raw():
            xa = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad((model(xa) - ref).pow(2).sum(), xa)
            return (xa + g.sign() / 255).clamp(0, 1)

        steps = 2 if quick else 10
        t_raw = timed(lambda: [raw() for _ in range(steps)], device)
        for name, cls in (("sma", SMA), ("lta", LTA)):
            atk = cls(model, steps=steps)
            t = timed(lambda: atk(x), device)
            rows.append({"attack": name, "batch": batch, "steps": steps, "images_per_s": round(batch / t, 1),
                         "raw_images_per_s": round(batch / t_raw, 1), "engine_over_raw": round(t / t_raw, 3)})
            print(f"attack step: {name} batch {batch}: {batch / t:.1f} img/s, engine/raw {t / t_raw:.2f}x", flush=True)
    return rows


def batched(device: str, quick: bool) -> dict:
    from reidbench.attacks import LTA

    model = frozen_ftnet(device, quick)
    x = torch.rand(8 if quick else 32, 3, *model.input_size, device=device)
    atk = LTA(model, steps=2 if quick else 15)
    t_batch = timed(lambda: atk(x), device, repeat=2)
    t_one = timed(lambda: torch.cat([atk(x[i:i + 1]) for i in range(len(x))]), device, repeat=1)
    print(f"batched LTA {len(x)} queries: {t_one / t_batch:.1f}x one at a time", flush=True)
    return {"queries": len(x), "batched_s": round(t_batch, 3), "one_at_a_time_s": round(t_one, 3),
            "speedup": round(t_one / t_batch, 2)}


def training(device: str, quick: bool) -> list[dict]:
    from reidbench.data.loader import default_workers
    from reidbench.defenses.pd import ProactiveDefense
    from reidbench.models import build_architecture
    from reidbench.train import get_recipe, train_model

    n = 64 if quick else 1024
    size = (64, 32) if quick else (256, 128)
    images = (torch.rand(n, 3, 128, 64) * 255).to(torch.uint8)
    pids = torch.arange(n // 4).repeat_interleave(4)
    rows = []
    for pd in (False, True):
        for amp in (("off", "bf16") if not device.startswith("cuda") else ("off", "fp16", "bf16")):
            recipe = get_recipe("seed").replace(epochs=1, amp=amp)
            torch.manual_seed(0)
            if quick:
                model = build_architecture("resnet-small", n // 4, widths=(8, 16, 16, 16), input_size=size)
            else:
                model = build_architecture("ft_net", n // 4)
            hook = ProactiveDefense().batch_train_transform if pd else None
            res = train_model(model, images, pids, recipe, seed=0, device=device, progress=False,
                              batch_train_transform=hook, channels_last=device.startswith("cuda"),
                              workers=default_workers(device))
            ips = res.history[-1]["images_per_s"]
            rows.append({"pd": pd, "precision": amp, "channels_last": device.startswith("cuda"),
                         "workers": default_workers(device), "images_per_s": ips})
            print(f"training pd={pd} amp={amp}: {ips} img/s", flush=True)
    return rows


def evaluation(device: str, quick: bool) -> dict:
    from problems import MARKET, make_problem

    from reidbench.evaluation import evaluate_features

    shape = dict(MARKET, num_query=300, num_gallery=1500, num_ids=100) if quick else MARKET
    qf, gf, qp, gp, qc, gc = make_problem(**shape)
    args = [t.to(device) if isinstance(t, torch.Tensor) else torch.as_tensor(t, device=device)
            for t in (qf, gf, qp, gp, qc, gc)]
    t_eval = timed(lambda: evaluate_features(*args), device, repeat=2)
    t_rr = timed(lambda: evaluate_features(*args, rerank=True), device, repeat=1)
    print(f"evaluation {shape['num_query']}x{shape['num_gallery']}: {t_eval:.2f} s, with re-ranking {t_rr:.2f} s",
          flush=True)
    return {"queries": shape["num_query"], "gallery": shape["num_gallery"], "evaluate_s": round(t_eval, 3),
            "evaluate_and_rerank_s": round(t_rr, 3)}


def market_lta(device: str, quick: bool) -> dict:
    from reidbench.attacks import LTA
    from reidbench.attacks.evaluate import EvalSet, attack_queries

    model = frozen_ftnet(device, quick)
    nq = 64 if quick else 3368
    g = torch.Generator().manual_seed(0)
    queries = (torch.rand(nq, 3, 128, 64, generator=g) * 255).to(torch.uint8)  # Market's native size
    pids = torch.randint(0, 750, (nq,), generator=g).to(device)
    cams = torch.randint(0, 6, (nq,), generator=g).to(device)
    feats = torch.randn(nq, 512, device=device)
    ev = EvalSet(queries, pids, cams, feats, feats, pids, cams)
    atk = LTA(model, steps=2 if quick else 15)
    sync(device)
    t0 = time.perf_counter()
    out = attack_queries(atk, ev, model, batch_size=64 if quick else 512, device=device)
    sync(device)
    seconds = time.perf_counter() - t0
    print(f"Market-shaped LTA: {nq} queries in {seconds:.1f} s", flush=True)
    return {"queries": nq, "steps": atk.steps, "seconds": round(seconds, 2), "linf_max": out["linf_max"]}


STAGES = {"attack_step": attack_step, "batched": batched, "training": training, "evaluation": evaluation,
          "market_lta": market_lta}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check the script on a CPU")
    p.add_argument("--only", default=",".join(STAGES), help="comma-separated stages: " + ", ".join(STAGES))
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    info = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "quick": args.quick,
            "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(info), flush=True)
    results: dict[str, Any] = {"machine": info}
    for name in args.only.split(","):
        results[name] = STAGES[name.strip()](args.device, args.quick)
        if args.out:  # after every stage: a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
