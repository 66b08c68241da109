"""Query-side attack evaluation: the protocol of the seed paper and of the reference repositories.

Every query is perturbed, the gallery stays clean; gallery features are computed once per model and
reused for every attack. The attacker's context follows the threat models of the attacks: gallery
features for M-IFGSM guides, the clean query set as FNA's labelled set (as CEA's code does).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import distributed, rng
from ..data.transforms import select_rows, to_model_input
from ..evaluation import evaluate_features, extract_features
from ..utils import atomic_torch_save, model_mode, state_digest
from .base import AttackContext, FeatureBank
from .io import JPEG75, jpeg_roundtrip

log = logging.getLogger(__name__)

__all__ = ["EvalSet", "prepare_evalset", "attack_queries", "evaluate_attacked", "evaluate_attack", "ReplayQueries"]


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
    qf = extract_features(eval_model, q.images, batch_size, device, progress, "query features", "query")
    gf = extract_features(eval_model, g.images, batch_size, device, progress, "gallery features", "gallery")
    dev = qf.device
    ev = EvalSet(q.images, q.pids.to(dev), q.camids.to(dev), qf, gf, g.pids.to(dev), g.camids.to(dev),
                 [Path(s.path).name for s in q.samples])
    if defense is not None and not adaptive:
        ev.ctx_q_feats = extract_features(model, q.images, batch_size, device, progress, "query features (attacker)",
                                          "query")
        ev.ctx_g_feats = extract_features(model, g.images, batch_size, device, progress, "gallery features (attacker)",
                                          "gallery")
    return ev


def attack_queries(attack, evalset: EvalSet, model: torch.nn.Module, *, batch_size: int = 64,
                   device: str | torch.device = "cpu", io: str = "memory", progress: bool = False,
                   keep_images: bool = False, context: AttackContext | None = None, key: str = "",
                   indices=None, resume: str | os.PathLike | None = None) -> dict[str, Any]:
    """Attack every query (or the queries at ``indices``); return adversarial features,
    perturbation statistics and, with ``keep_images``, the adversarial images (on the 8-bit grid when
    the attack quantises). ``context``: the attacker's guides (default: ``evalset.context()``).

    Randomness is keyed (:mod:`reidbench.rng`): the attack's draws by ``key`` (a matrix cell's key),
    each query's index, step and EOT sample; the defended model's by the query's index -- so a query
    gets the same result in any batch, order or subset. An ensemble (``auto``) also returns
    ``components``: each component's features and perturbation. ``zero_grad``: per query, whether
    the attack's input gradient at its first step was exactly zero (None if the attack does not say).

    ``resume``: a folder where every finished batch is saved at once (atomically, one file per batch)
    and from which a rerun takes the batches it finds instead of attacking them again -- a killed
    evaluation loses one batch at most, and the keyed draws make the resumed result the uninterrupted
    one. Each file names its evaluation (a digest of ``key``, the attack's repr, ``io`` and the
    evaluated model's weights) and its queries; a batch of another evaluation is refused, never
    reused. ``seconds`` then sums the attack time of every batch, in whichever run it was spent.

    Under ``torchrun`` (:mod:`reidbench.distributed`) each rank attacks a contiguous shard of the
    queries and every rank gets all rows back; the keyed draws make them one process's."""
    size = tuple(model.input_size)
    ctx = evalset.context() if context is None else context
    n_all = len(evalset.q_pids)
    order = list(range(n_all)) if indices is None else [int(i) for i in indices]
    world = distributed.current()
    distributed.check_items(len(order), "queries", world)
    share = distributed.shard_range(len(order), world)
    mine = order[share.start:share.stop]
    ensemble = hasattr(attack, "perturb_components")
    folder = None if resume is None else Path(resume)
    ident = "" if folder is None else _evaluation_id(attack, model, key, io)
    batches: list[dict[str, Any]] = []
    reused = 0
    for s in tqdm(range(0, len(mine), batch_size), desc=f"attacking queries ({getattr(attack, 'name', 'attack')})",
                  unit="batch", disable=not progress or not world.is_main, leave=False):
        idx = mine[s:s + batch_size]
        saved = None if folder is None else _saved_batch(folder, ident, idx, keep_images, device)
        if saved is not None:
            batches.append(saved)
            reused += 1
            continue
        t0 = time.perf_counter()
        b = _attack_batch(attack, evalset, model, idx, size=size, device=device, io=io, ctx=ctx, key=key,
                          ensemble=ensemble, keep_images=keep_images)
        b["seconds"] = time.perf_counter() - t0
        if folder is not None:
            _save_batch(folder, ident, idx, b)
        batches.append(b)
    if reused:
        log.info("resumed from %s: %d of %d batches of these queries were already attacked", folder, reused,
                 len(batches))
    seconds = distributed.max_over_ranks(sum(b["seconds"] for b in batches), world)

    def cat(get) -> torch.Tensor:
        rows = torch.cat([get(b) for b in batches])
        return distributed.gather_rows(rows, world) if world.distributed else rows  # every rank's, in query order

    def rows(part) -> dict[str, Any]:  # one output's features and perturbation over every batch
        linf, l2 = cat(lambda b: part(b)["linf"]), cat(lambda b: part(b)["l2"])
        return {"features": cat(lambda b: part(b)["features"]), "linf": linf, "l2": l2,
                "linf_max": float(linf.max()), "linf_mean": float(linf.mean()), "l2_mean": float(l2.mean())}

    zero = cat(lambda b: b["zero_grad"]) if batches and all(b["zero_grad"] is not None for b in batches) else None
    out = {**rows(lambda b: b), "seconds": seconds, "indices": order, "zero_grad": zero}
    names = list(batches[0]["components"]) if batches else []
    if names:
        out["components"] = {}
        for name in names:
            c = rows(lambda b: b["components"][name])
            out["components"][name] = {k: c[k] for k in ("features", "linf_max", "linf_mean", "l2_mean")}
    if keep_images:
        out["images"] = cat(lambda b: b["images"])
    return out


def _attack_batch(attack, evalset: EvalSet, model: torch.nn.Module, idx: list[int], *, size, device, io, ctx,
                  key: str, ensemble: bool, keep_images: bool) -> dict[str, Any]:
    """:func:`attack_queries` on the queries ``idx``: their adversarial features and perturbations
    (and each component's, for an ensemble)."""
    sel = torch.tensor(idx, dtype=torch.int64)
    x = to_model_input(select_rows(evalset.query_images, idx), size, device)
    pids, camids = evalset.q_pids[sel.to(evalset.q_pids.device)], evalset.q_camids[sel.to(evalset.q_camids.device)]
    with rng.scope(key=key, purpose="attack", indices=idx):
        if ensemble:
            adv, comp = attack.perturb_components(x, pids, camids, ctx)
        else:
            adv, comp = attack(x, pids, camids, ctx), {}
    z = getattr(attack, "last_diagnostics", {}).get("zero_grad")
    b: dict[str, Any] = {"zero_grad": z.cpu() if z is not None else None, "components": {}}
    for name, images in [(None, adv), *comp.items()]:
        if io == JPEG75:  # the seed's implicit I/O: adversarial queries saved as .jpg, read back
            images = jpeg_roundtrip(images)
        delta = (images - x).flatten(1)
        with rng.scope(key="", purpose="query", indices=idx):  # the defender's draws: the clean query's
            f = _eval_features(model, images)
        part = {"features": f, "linf": delta.abs().amax(1).cpu(), "l2": delta.norm(dim=1).cpu()}
        if name is None:
            adv = images
            b.update(part)
        else:
            b["components"][name] = part
    if keep_images:
        b["images"] = adv.detach().cpu()
    return b


def _evaluation_id(attack, model: torch.nn.Module, key: str, io: str) -> str:
    """What a saved batch must match to be reused: the key, the attack (its repr holds its
    hyperparameters), the I/O, the evaluated model's test-time defense and its weights and buffers."""
    text = f"{key}\0{attack!r}\0{io}\0{getattr(model, 'defense', None)!r}\0{state_digest(model)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _batch_file(folder: Path, idx: list[int]) -> Path:
    return folder / f"q{idx[0]:06d}-n{len(idx)}.pt"


def _save_batch(folder: Path, ident: str, idx: list[int], b: dict[str, Any]) -> None:
    def cpu(v):
        if isinstance(v, torch.Tensor):
            return v.detach().cpu()
        return {k: cpu(w) for k, w in v.items()} if isinstance(v, dict) else v

    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format": 1, "evaluation": ident, "indices": list(idx), **cpu(b)}, _batch_file(folder, idx))


def _saved_batch(folder: Path, ident: str, idx: list[int], keep_images: bool, device) -> dict[str, Any] | None:
    """The batch of queries ``idx`` saved in ``folder`` by an earlier run of the evaluation ``ident``,
    on ``device``; None when there is none. A file that is another evaluation's is an error."""
    path = _batch_file(folder, idx)
    if not path.is_file():
        return None
    b = torch.load(path, map_location="cpu", weights_only=True)
    if b.get("evaluation") != ident or b.get("indices") != list(idx):
        raise ValueError(f"{path} is a batch of another evaluation (another attack, model, key or I/O, or other "
                         f"queries: {b.get('indices', [])[:3]}... where this one attacks {idx[:3]}...): give each "
                         f"evaluation its own resume folder, or delete this one to attack these queries again")
    if keep_images and "images" not in b:
        return None  # saved without its images: attack again

    b["features"] = b["features"].to(device)
    for part in b["components"].values():
        part["features"] = part["features"].to(device)
    return b


def evaluate_attacked(out: dict[str, Any], evalset: EvalSet, *, rerank: bool = False, ap: str = "torchreid",
                      indices=None) -> dict[str, Any]:
    """Metrics of :func:`attack_queries`' output against the clean gallery: ``attacked`` and, for an
    ensemble, ``components`` (each component's metrics). ``indices``: the queries attacked (all by
    default)."""
    ev = evalset
    sel = None if indices is None else torch.tensor(list(indices), dtype=torch.int64)
    qp, qc = (ev.q_pids, ev.q_camids) if sel is None else (ev.q_pids[sel.to(ev.q_pids.device)],
                                                            ev.q_camids[sel.to(ev.q_camids.device)])

    def score(feats):
        return evaluate_features(feats, ev.g_feats, qp, ev.g_pids, qc, ev.g_camids, rerank=rerank, ap=ap)

    res = {"attacked": score(out["features"])}
    if "components" in out:
        res["components"] = {name: score(c["features"]) for name, c in out["components"].items()}
    return res


def evaluate_attack(attack, evalset: EvalSet, model: torch.nn.Module, *, batch_size: int = 64,
                    device: str | torch.device = "cpu", io: str = "memory", rerank: bool = False,
                    progress: bool = False, keep_images: bool = False,
                    context: AttackContext | None = None, key: str = "",
                    resume: str | os.PathLike | None = None) -> dict[str, Any]:
    """Clean and attacked metrics (R1/R5/R10/mAP/mINP in percent), the realised perturbation (per
    query ``linf``, and its summary) and time;
    for an ensemble also each component's metrics (``components``). ``context``: the attacker's
    guides (default: ``evalset.context()``); ``key``: keys the attack's random draws; ``resume``: the
    folder that keeps the attacked batches (see :func:`attack_queries`)."""
    clean = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                              evalset.g_camids, rerank=rerank)
    res = attack_queries(attack, evalset, model, batch_size=batch_size, device=device, io=io, progress=progress,
                         keep_images=keep_images, context=context, key=key, resume=resume)
    scored = evaluate_attacked(res, evalset, rerank=rerank)
    out = {"clean": clean, "attacked": scored["attacked"], "linf": res["linf"], "linf_max": res["linf_max"],
           "linf_mean": res["linf_mean"], "l2_mean": res["l2_mean"], "seconds": res["seconds"], "io": io}
    if "components" in scored:
        out["components"] = scored["components"]
    if keep_images:
        out["images"] = res["images"]
    return out


class ReplayQueries:
    """Saved adversarial queries (:func:`~reidbench.attacks.io.load_adversarial`) played back as an
    attack, so that anyone re-scores a submission's queries through the very evaluation that scored
    the attack (:func:`evaluate_attack`: same batches, same keyed draws of a randomised defense, same
    perturbation statistics, whose per-query ``linf`` a caller checks against the claimed budget)
    without running the attack again.

    Each batch gets the saved rows of the queries it holds: the indices of the current
    :mod:`reidbench.rng` scope, which :func:`attack_queries` opens per batch."""

    name = "replay"

    def __init__(self, images: torch.Tensor, evalset: EvalSet, input_size, *, names=None) -> None:
        n, size = len(evalset.q_pids), tuple(int(v) for v in input_size)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"saved queries must be (N, 3, H, W) images; got shape {tuple(images.shape)}")
        if len(images) != n:
            raise ValueError(f"{len(images)} saved queries for {n} queries in the dataset: a replay re-scores every "
                             f"query, in the dataset's order (`reidbench attack --save` writes them so)")
        if tuple(images.shape[-2:]) != size:
            raise ValueError(f"saved queries are {tuple(images.shape[-2:])} (H, W), the model takes {size}: they "
                             f"were made for a model of another input size")
        if names and evalset.query_names:
            stem = [Path(str(v)).stem for v in names]
            want = [Path(v).stem for v in evalset.query_names]
            bad = next((i for i, (a, b) in enumerate(zip(stem, want)) if a != b), None)
            if bad is not None:
                raise ValueError(f"saved query {bad} is {names[bad]!r} where the dataset's query {bad} is "
                                 f"{evalset.query_names[bad]!r}: the file holds another query set or order")
        self.images = images

    def __call__(self, x: torch.Tensor, pids=None, camids=None, context=None) -> torch.Tensor:
        scope = rng.current()
        if scope is None or scope.indices is None or len(scope.indices) != len(x):
            raise RuntimeError("ReplayQueries plays saved queries back inside attack_queries / evaluate_attack, "
                               "which say which queries each batch holds")
        return self.images[list(scope.indices)].to(x.device, x.dtype)

    def __repr__(self) -> str:
        return f"ReplayQueries({len(self.images)} queries)"


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
    world = distributed.current()
    distributed.check_items(len(target), "gallery images to attack", world)
    share = distributed.shard_range(len(target), world)
    linf, l2 = [], []
    t0 = time.perf_counter()
    for s in tqdm(range(share.start, share.stop, batch_size), desc="attacking gallery", unit="batch",
                  disable=not progress or not world.is_main, leave=False):
        idx = target[s:min(share.stop, s + batch_size)]
        x = to_model_input([g.images[i] for i in idx] if isinstance(g.images, list) else g.images[idx], size, device)
        pids = evalset.g_pids[idx]
        # guides: every query of the identity (a gallery image has no "same camera" junk rule)
        with rng.scope(key="", purpose="attack-gallery", indices=idx):
            adv = attack(x, pids, None, ctx)
        delta = (adv - x).flatten(1)
        linf.append(delta.abs().amax(1).cpu())
        l2.append(delta.norm(dim=1).cpu())
        with rng.scope(key="", purpose="gallery", indices=idx):
            feats[idx] = _eval_features(model, adv)
    seconds = distributed.max_over_ranks(time.perf_counter() - t0, world)
    if world.distributed:  # every rank's attacked rows
        mine = target[share.start:share.stop]
        feats[target] = distributed.gather_rows(feats[mine], world)
        linf, l2 = [distributed.gather_rows(torch.cat(linf), world)], [distributed.gather_rows(torch.cat(l2), world)]
    clean = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                              evalset.g_camids, rerank=rerank)
    attacked = evaluate_features(evalset.q_feats, feats, evalset.q_pids, evalset.g_pids, evalset.q_camids,
                                 evalset.g_camids, rerank=rerank)
    linf_t, l2_t = torch.cat(linf), torch.cat(l2)
    return {"clean": clean, "attacked": attacked, "linf_max": float(linf_t.max()), "linf_mean": float(linf_t.mean()),
            "l2_mean": float(l2_t.mean()), "seconds": seconds, "io": "memory", "side": "gallery",
            "attacked_gallery_images": len(target)}
