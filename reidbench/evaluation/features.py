"""Feature extraction and the standard query/gallery evaluation of an Embedder."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed, rng
from ..data.transforms import to_model_input
from ..utils import model_mode
from .distance import check_finite_features, compute_distance
from .rank import evaluate_rank
from .rerank import re_ranking, re_ranking_features

log = logging.getLogger(__name__)

__all__ = ["extract_features", "evaluate_features", "evaluate_model", "summarize", "METRIC_KEYS", "EVAL_NUMERICS"]

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")

#: version of the evaluation's numerics (distances, CMC / mAP / mINP, re-ranking): bump it when a
#: change alters a metric; part of every matrix cell's key, pinned by a golden test
EVAL_NUMERICS = "1"


@torch.no_grad()
def extract_features(model: torch.nn.Module, images: torch.Tensor | Sequence[torch.Tensor], batch_size: int = 128,
                     device: str | torch.device | None = None, progress: bool = False,
                     desc: str = "features", purpose: str = "features") -> torch.Tensor:
    """Evaluation features (N, D) of uint8 images, computed in eval mode (the mode is restored).

    ``images`` are resized to ``model.input_size`` when needed. The features stay on ``device``
    (default: the model's). A randomised test-time defense in ``model`` draws keyed by ``purpose``
    (``query``, ``gallery``) and each image's index (:mod:`reidbench.rng`): the same image set gives
    the same features whatever the batch size or what ran before. Under ``torchrun``
    (:mod:`reidbench.distributed`) each rank computes a contiguous shard and every rank gets all rows."""
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    size = tuple(model.input_size)
    world = distributed.current()
    distributed.check_items(len(images), desc, world)
    mine = distributed.shard_range(len(images), world)
    out = []
    with model_mode(model):
        for s in tqdm(range(mine.start, mine.stop, batch_size), desc=desc, leave=False,
                      disable=not progress or not world.is_main):
            e = min(mine.stop, s + batch_size)
            with rng.scope(key="", purpose=purpose, indices=range(s, e)):
                out.append(model(to_model_input(images[s:e], size, device)))
    feats = torch.cat(out, 0)
    check_finite_features(feats, desc)
    return distributed.gather_rows(feats, world)


def summarize(result: dict) -> dict[str, float]:
    """R1 / R5 / R10 / mAP / mINP in percent from an :func:`evaluate_rank` result."""
    cmc = result["cmc"]
    pick = lambda k: float(cmc[min(k, len(cmc)) - 1]) * 100  # noqa: E731
    return {"R1": pick(1), "R5": pick(5), "R10": pick(10), "mAP": result["mAP"] * 100, "mINP": result["mINP"] * 100}


#: re-ranking reads dense (Q x Q) and (G x G) distance matrices -- exactly the reference's numbers --
#: while they take at most this many GiB together; beyond (MSMT17: 27 GiB for the gallery alone) it
#: computes them from the features, block by block (equal up to float32 rounding)
RERANK_DENSE_GB = 2.0


def evaluate_features(qf: torch.Tensor, gf: torch.Tensor, q_pids, g_pids, q_camids, g_camids,
                      rerank: bool = False, metric: str = "cosine", ap: str = "torchreid",
                      rerank_dense_gb: float = RERANK_DENSE_GB) -> dict:
    """Metrics of query features against gallery features, optionally with re-ranking.

    Returns ``{"R1", "R5", "R10", "mAP", "mINP"}`` in percent plus ``"per_query"`` (first-match
    ranks, APs) and, with ``rerank``, the same under ``"rerank"``. Re-ranking follows the seed's and
    torchreid's convention: squared Euclidean distances of the (normalised) features; no (G x G)
    matrix is built when it would exceed ``rerank_dense_gb`` (:data:`RERANK_DENSE_GB`)."""
    dist = compute_distance(qf, gf, metric)
    res = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, ap=ap)
    del dist  # (Q x G): free before re-ranking makes its own
    out: dict = summarize(res)
    out["per_query"] = {"first_match_rank": res["first_match_rank"].tolist(),
                        "ap": np.nan_to_num(res["ap_per_query"], nan=-1.0).round(6).tolist()}
    if rerank:
        if (len(qf) ** 2 + len(gf) ** 2) * 4 <= rerank_dense_gb * (1 << 30):
            rr = re_ranking(compute_distance(qf, gf, "sqeuclidean"), compute_distance(qf, qf, "sqeuclidean"),
                            compute_distance(gf, gf, "sqeuclidean"))
        else:
            rr = re_ranking_features(qf, gf)
        rres = evaluate_rank(rr, q_pids, g_pids, q_camids, g_camids, ap=ap)
        out["rerank"] = summarize(rres)
        out["rerank"]["per_query"] = {"first_match_rank": rres["first_match_rank"].tolist(),
                                      "ap": np.nan_to_num(rres["ap_per_query"], nan=-1.0).round(6).tolist()}
    return out


def evaluate_model(model: torch.nn.Module, dataset, *, rerank: bool = False, batch_size: int = 128,
                   device: str | torch.device | None = None, progress: bool = False, ap: str = "torchreid") -> dict:
    """Clean evaluation of ``model`` on ``dataset``'s query and gallery (decoded through the cache)."""
    from ..data import load_images

    q = load_images(dataset.query, progress=progress, desc="decoding query")
    g = load_images(dataset.gallery, progress=progress, desc="decoding gallery")
    qf = extract_features(model, q.images, batch_size, device, progress, "query features", "query")
    gf = extract_features(model, g.images, batch_size, device, progress, "gallery features", "gallery")
    return evaluate_features(qf, gf, q.pids, g.pids, q.camids, g.camids, rerank=rerank, ap=ap)
