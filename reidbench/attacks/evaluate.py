"""Query-side attack evaluation: the protocol of the seed paper and of the reference repositories.

Every query is perturbed, the gallery stays clean; gallery features are computed once per model and
reused for every attack. The attacker's context follows the threat models of the attacks: gallery
features for M-IFGSM guides, the clean query set as FNA's labelled set (as CEA's code does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.transforms import to_model_input
from ..evaluation import evaluate_features, extract_features
from ..utils import model_mode
from .base import AttackContext, FeatureBank
from .io import JPEG75, jpeg_roundtrip

log = logging.getLogger(__name__)

__all__ = ["EvalSet", "prepare_evalset", "attack_queries", "evaluate_attack"]


@dataclass
class EvalSet:
    """A dataset's query and gallery for one model: decoded queries, clean features, labels."""

    query_images: Any                  # uint8 (N, 3, H, W) tensor or list, native resolution
    q_pids: torch.Tensor
    q_camids: torch.Tensor
    q_feats: torch.Tensor              # clean query features
    g_feats: torch.Tensor
    g_pids: torch.Tensor
    g_camids: torch.Tensor
    query_names: list[str] = field(default_factory=list)
    # what the attacker knows, when it differs from the defended evaluation features (an attacker
    # oblivious of a test-time defense computes its guides without it)
    ctx_q_feats: torch.Tensor | None = None
    ctx_g_feats: torch.Tensor | None = None

    def context(self, adaptive: bool = False) -> AttackContext:
        """The attacker's guides: features without the test-time defense (oblivious attacker), or
        through it (``adaptive``)."""
        qf = self.q_feats if self.ctx_q_feats is None or adaptive else self.ctx_q_feats
        gf = self.g_feats if self.ctx_g_feats is None or adaptive else self.ctx_g_feats
        return AttackContext(gallery=FeatureBank(gf, self.g_pids, self.g_camids),
                             attacker_set=FeatureBank(qf, self.q_pids, self.q_camids))


@torch.no_grad()
def _eval_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with model_mode(model):
        return model(x)


def prepare_evalset(model: torch.nn.Module, dataset, device: str | torch.device = "cpu", batch_size: int = 128,
                    progress: bool = False, defense=None, adaptive: bool = False) -> EvalSet:
    """Decode query and gallery and compute their features once. With a test-time ``defense`` the
    evaluation features go through it; the attacker's guide features too when ``adaptive``, and
    not when the attacker is oblivious of the defense."""
    from pathlib import Path

    from ..data import load_images
    from ..models.defended import DefendedModel

    q = load_images(dataset.query, progress=progress, desc="decoding query")
    g = load_images(dataset.gallery, progress=progress, desc="decoding gallery")
    eval_model = DefendedModel(model, defense) if defense is not None else model
    qf = extract_features(eval_model, q.images, batch_size, device, progress, "query features")
    gf = extract_features(eval_model, g.images, batch_size, device, progress, "gallery features")
    dev = qf.device
    ev = EvalSet(q.images, q.pids.to(dev), q.camids.to(dev), qf, gf, g.pids.to(dev), g.camids.to(dev),
                 [Path(s.path).name for s in q.samples])
    if defense is not None and not adaptive:
        ev.ctx_q_feats = extract_features(model, q.images, batch_size, device, progress, "query features (attacker)")
        ev.ctx_g_feats = extract_features(model, g.images, batch_size, device, progress, "gallery features (attacker)")
    return ev


def attack_queries(attack, evalset: EvalSet, model: torch.nn.Module, *, batch_size: int = 64,
                   device: str | torch.device = "cpu", io: str = "memory", progress: bool = False,
                   keep_images: bool = False, context: AttackContext | None = None) -> dict[str, Any]:
    """Attack every query; return adversarial features, perturbation statistics and, with
    ``keep_images``, the adversarial images (on the 8-bit grid when the attack quantises).
    ``context``: the attacker's guides (default: ``evalset.context()``)."""
    size = tuple(model.input_size)
    ctx = evalset.context() if context is None else context
    feats, linf, l2, kept = [], [], [], []
    n = len(evalset.q_pids)
    t0 = time.perf_counter()
    for s in tqdm(range(0, n, batch_size), desc=f"attacking queries ({getattr(attack, 'name', 'attack')})",
                  unit="batch", disable=not progress, leave=False):
        e = min(n, s + batch_size)
        x = to_model_input(evalset.query_images[s:e], size, device)
        adv = attack(x, evalset.q_pids[s:e], evalset.q_camids[s:e], ctx)
        if io == JPEG75:  # the seed's implicit I/O: adversarial queries saved as .jpg, read back
            adv = jpeg_roundtrip(adv)
        delta = (adv - x).flatten(1)
        linf.append(delta.abs().amax(1).cpu())
        l2.append(delta.norm(dim=1).cpu())
        feats.append(_eval_features(model, adv))
        if keep_images:
            kept.append(adv.detach().cpu())
    seconds = time.perf_counter() - t0
    linf_t, l2_t = torch.cat(linf), torch.cat(l2)
    out = {"features": torch.cat(feats), "linf": linf_t, "l2": l2_t, "seconds": seconds,
           "linf_max": float(linf_t.max()), "linf_mean": float(linf_t.mean()), "l2_mean": float(l2_t.mean())}
    if keep_images:
        out["images"] = torch.cat(kept)
    return out


def evaluate_attack(attack, evalset: EvalSet, model: torch.nn.Module, *, batch_size: int = 64,
                    device: str | torch.device = "cpu", io: str = "memory", rerank: bool = False,
                    progress: bool = False, keep_images: bool = False,
                    context: AttackContext | None = None) -> dict[str, Any]:
    """Clean and attacked metrics (R1/R5/R10/mAP/mINP in percent), the realised perturbation and time.
    ``context``: the attacker's guides (default: ``evalset.context()``)."""
    clean = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                              evalset.g_camids, rerank=rerank)
    res = attack_queries(attack, evalset, model, batch_size=batch_size, device=device, io=io, progress=progress,
                         keep_images=keep_images, context=context)
    attacked = evaluate_features(res["features"], evalset.g_feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                                 evalset.g_camids, rerank=rerank)
    out = {"clean": clean, "attacked": attacked, "linf_max": res["linf_max"], "linf_mean": res["linf_mean"],
           "l2_mean": res["l2_mean"], "seconds": res["seconds"], "io": io}
    if keep_images:
        out["images"] = res["images"]
    return out


def evaluate_gallery_attack(attack, dataset, model: torch.nn.Module, evalset: EvalSet, *, batch_size: int = 64,
                            device: str | torch.device = "cpu", rerank: bool = False,
                            progress: bool = False) -> dict[str, Any]:
    """Gallery-side attack (Bai et al.'s default): every gallery image of a query identity is
    perturbed with the queries of that identity as guides; distractors (pid 0) and identities
    without queries stay clean; queries stay clean."""
    from ..data import load_images

    g = load_images(dataset.gallery, progress=progress, desc="decoding gallery")
    size = tuple(model.input_size)
    ctx = AttackContext(gallery=FeatureBank(evalset.q_feats, evalset.q_pids, evalset.q_camids))
    target = torch.isin(evalset.g_pids, evalset.q_pids).nonzero().flatten().tolist()
    feats = evalset.g_feats.clone()
    linf, l2 = [], []
    t0 = time.perf_counter()
    for s in tqdm(range(0, len(target), batch_size), desc="attacking gallery", unit="batch", disable=not progress,
                  leave=False):
        idx = target[s:s + batch_size]
        x = to_model_input([g.images[i] for i in idx] if isinstance(g.images, list) else g.images[idx], size, device)
        pids = evalset.g_pids[idx]
        # guides: every query of the identity (a gallery image has no "same camera" junk rule)
        adv = attack(x, pids, None, ctx)
        delta = (adv - x).flatten(1)
        linf.append(delta.abs().amax(1).cpu())
        l2.append(delta.norm(dim=1).cpu())
        feats[idx] = _eval_features(model, adv)
    seconds = time.perf_counter() - t0
    clean = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                              evalset.g_camids, rerank=rerank)
    attacked = evaluate_features(evalset.q_feats, feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                                 evalset.g_camids, rerank=rerank)
    linf_t, l2_t = torch.cat(linf), torch.cat(l2)
    return {"clean": clean, "attacked": attacked, "linf_max": float(linf_t.max()), "linf_mean": float(linf_t.mean()),
            "l2_mean": float(l2_t.mean()), "seconds": seconds, "io": "memory", "side": "gallery",
            "attacked_gallery_images": len(target)}
