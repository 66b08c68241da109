"""CMC, mAP and mINP under the Market-1501 / DukeMTMC-reID protocol, in torch.

The classic implementations (torchreid's ``eval_market1501``, the official Market MATLAB code and its
Python ports) argsort the whole gallery for every query. Only the ranks of a query's true matches
matter, so this implementation never sorts the gallery: it sorts the (few) true-match distances of
each query, locates every gallery distance among them with ``searchsorted`` and counts how many
kept negatives fall before each true match. That gives every true match's rank among the kept items
exactly, in O(G log H) per query instead of O(G log G).

Ties between a true match and a negative at exactly the same distance are broken by gallery index
(a stable sort); queries with such ties are re-ranked exactly with a stable sort.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .distance import as_tensor

__all__ = ["evaluate_rank"]

APType = Literal["torchreid", "market_official"]

# the sparse path (only negatives up to the last true match) is used while they are at most this
# fraction of a chunk; beyond it the dense path over every gallery item is faster
SPARSE_MAX_FRACTION = 0.3


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap: APType = "torchreid",
    chunk_size: int | None = None,
) -> dict:
    """Evaluate a ranking with the Market-1501 protocol.

    For every query, gallery images with the same pid *and* the same camera are removed ("junk");
    true matches are the remaining images of the query's pid. With ``ap="market_official"`` gallery
    images with pid -1 are junk as well (the official Market code); with ``ap="torchreid"`` they
    would be negatives, which is why the Market loader drops them. pid 0 (distractors) is always a
    negative.

    Args:
        distmat: (Q, G) distances (smaller = more similar), torch tensor or numpy array; every entry
            must be finite. Computation runs on its device.
        q_pids, g_pids, q_camids, g_camids: 1-D integer labels.
        max_rank: length of the CMC curve (clamped to G).
        ap: ``"torchreid"`` -- non-interpolated AP, averaged over valid queries only, equal to
            torchreid's ``eval_market1501``; ``"market_official"`` -- trapezoidal AP of the official
            Market code (and of the seed paper's code), with pid -1 as junk and every query counted
            in the denominators (a query without a true match scores 0).
        chunk_size: queries per chunk (default: about two million distances, cache-friendly).

    Returns:
        dict with ``cmc`` (numpy float64, length ``max_rank``), ``mAP``, ``mINP`` (mean inverse
        negative penalty, Ye et al. TPAMI 2021), ``num_valid_queries``, ``num_queries``, ``ap``
        (the AP type), and per query ``ap_per_query`` (NaN when invalid) and
        ``first_match_rank`` (0-based rank of the first true match among the kept items, -1 when
        invalid).
    """
    if ap not in ("torchreid", "market_official"):
        raise ValueError(f"ap must be 'torchreid' or 'market_official', got {ap!r}")
    dist = as_tensor(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}")
    if not dist.is_floating_point():
        dist = dist.float()
    device = dist.device
    num_q, num_g = dist.shape
    q_pids, g_pids, q_camids, g_camids = (
        as_tensor(x).to(device=device, dtype=torch.int64).flatten() for x in (q_pids, g_pids, q_camids, g_camids)
    )
    for name, x, n in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q),
                       ("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        if len(x) != n:
            raise ValueError(f"{name} has {len(x)} entries but distmat has shape {tuple(dist.shape)}")
    if num_q == 0 or num_g == 0:
        raise ValueError(f"empty problem: distmat has shape {tuple(dist.shape)}")
    max_rank = max(1, min(int(max_rank), num_g))
    official = ap == "market_official"
    g_junk = (g_pids == -1) if official else None

    if chunk_size is None:
        chunk_size = max(1, min(num_q, (2 << 20) // num_g))
    ap_q = torch.full((num_q,), float("nan"), dtype=torch.float64, device=device)
    inp_q = torch.full((num_q,), float("nan"), dtype=torch.float64, device=device)
    first_q = torch.full((num_q,), -1, dtype=torch.int64, device=device)

    for start in range(0, num_q, chunk_size):
        stop = min(num_q, start + chunk_size)
        d = dist[start:stop]
        if not bool(torch.isfinite(d.sum())) and bool((bad := ~torch.isfinite(d)).any()):
            qi, gi = bad.nonzero()[0].tolist()
            raise ValueError(
                f"distmat holds {int(bad.sum())} non-finite entries in queries {start}..{stop - 1} "
                f"(first at query {start + qi}, gallery {gi}). Non-finite distances cannot be ranked; "
                "check the features for NaN/inf (reidbench.evaluation.check_finite_features)."
            )
        ranks, n_hit = _true_match_ranks(d, q_pids[start:stop], g_pids, q_camids[start:stop], g_camids, g_junk)
        valid = n_hit > 0
        if not valid.any():
            continue
        h = ranks.shape[1]
        k = torch.arange(h, device=device, dtype=torch.float64)[None]
        in_list = k < n_hit[:, None]
        r = ranks.to(torch.float64)
        prec = (k + 1.0) / (r + 1.0)
        if official:
            prev = torch.where(r > 0, k / r.clamp(min=1.0), torch.ones_like(r))
            prec = (prev + prec) / 2.0
        n = n_hit.to(torch.float64).clamp(min=1.0)
        ap_chunk = (prec * in_list).sum(1) / n
        last = ranks.gather(1, (n_hit - 1).clamp(min=0)[:, None]).squeeze(1).to(torch.float64)
        inp_chunk = n / (last + 1.0)
        ap_q[start:stop] = torch.where(valid, ap_chunk, ap_q[start:stop])
        inp_q[start:stop] = torch.where(valid, inp_chunk, inp_q[start:stop])
        first_q[start:stop] = torch.where(valid, ranks[:, 0], first_q[start:stop])

    valid_all = first_q >= 0
    num_valid = int(valid_all.sum())
    if num_valid == 0:
        raise ValueError(
            "no query has a true match in the gallery (same pid, different camera): check that the "
            "query and gallery pids/camids come from the same dataset split"
        )
    denom = num_q if official else num_valid
    hist = torch.bincount(first_q[valid_all & (first_q < max_rank)], minlength=max_rank)[:max_rank]
    cmc = (hist.cumsum(0).to(torch.float64) / denom).cpu().numpy()
    ap_np = ap_q.cpu().numpy()
    inp_np = inp_q.cpu().numpy()
    return {
        "cmc": cmc,
        "mAP": float(np.nansum(ap_np) / denom),
        "mINP": float(np.nansum(inp_np) / denom),
        "num_valid_queries": num_valid,
        "num_queries": num_q,
        "ap": ap,
        "ap_per_query": ap_np,
        "first_match_rank": first_q.cpu().numpy(),
    }


def _true_match_ranks(d, q_pids, g_pids, q_camids, g_camids, g_junk):
    """0-based ranks (among kept gallery items) of every true match of each query in the chunk.

    Returns ``(ranks, n_hit)``: ``ranks`` is (C, H) int64 with ``H = max(n_hit)`` (entries past
    ``n_hit[i]`` are meaningless), ``n_hit`` (C,) the number of true matches per query.
    """
    c, num_g = d.shape
    same_pid = g_pids[None] == q_pids[:, None]
    junk = same_pid & (g_camids[None] == q_camids[:, None])
    if g_junk is not None:
        junk |= g_junk[None]
    hit = same_pid & ~junk
    n_hit = hit.sum(1)
    h = int(n_hit.max()) if c else 0
    if h == 0:
        return torch.zeros((c, 1), dtype=torch.int64, device=d.device), n_hit
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    # the h smallest of "hit distances, inf elsewhere" are all true matches, sorted ascending
    hit_sorted = torch.topk(torch.where(hit, d, inf), h, dim=1, largest=False, sorted=True).values.contiguous()
    not_negative = same_pid if g_junk is None else (same_pid | junk)
    sparse = _sparse_ranks(d, hit_sorted, n_hit, not_negative) if d.dtype == torch.float32 else None
    if sparse is not None:
        ranks, tied = sparse
    else:
        ranks, tied = _dense_ranks(d, hit_sorted, n_hit, not_negative)
    rows = tied.nonzero().flatten()
    if len(rows):  # one device-side pass for every query whose true match ties with a negative
        ranks[rows] = _stable_ranks(d[rows], hit[rows], ~not_negative[rows], h)
    return ranks, n_hit


def _dense_ranks(d, hit_sorted, n_hit, not_negative):
    """Ranks from every gallery item: bucket[i, j] = number of true matches of query i at distance
    <= d[i, j]; a negative j precedes the k-th true match (0-based) iff bucket <= k, when no negative
    ties with a true match. Non-negatives go to the spare bucket h + 1."""
    c, h = hit_sorted.shape
    bucket = torch.searchsorted(hit_sorted, d.contiguous(), right=True)
    bucket.masked_fill_(not_negative, h + 1)
    counts = torch.zeros((c, h + 2), dtype=torch.int64, device=d.device)
    counts.scatter_add_(1, bucket, torch.ones(1, dtype=torch.int64, device=d.device).expand_as(bucket))
    ranks = torch.arange(h, device=d.device)[None] + counts[:, :h].cumsum(1)
    # a negative in bucket p >= 1 ties with a true match iff it equals the p-th smallest true-match
    # distance, the lower bound of its bucket: compare each bucket's smallest member with it
    lowest = torch.full((c, h + 2), float("inf"), dtype=d.dtype, device=d.device)
    lowest.scatter_reduce_(1, bucket, d, reduce="amin")
    real = torch.arange(h, device=d.device)[None] < n_hit[:, None]  # beyond n_hit: inf padding
    tied = ((lowest[:, 1:h + 1] == hit_sorted) & real).any(1)
    return ranks, tied


def _ordered_int(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 with the same order (and equal keys exactly for equal floats, +0 == -0)."""
    i = x.view(torch.int32).to(torch.int64)
    return torch.where(i >= 0, i, -(i & 0x7FFFFFFF)) + (1 << 31)


def _sparse_ranks(d, hit_sorted, n_hit, not_negative):
    """The same ranks from the negatives that are not farther than the query's last true match:
    the others come after every true match and cannot change a rank. With a decent model they are
    a small fraction of the gallery; returns None when they are not (then the dense path is faster)."""
    c, h = hit_sorted.shape
    last = hit_sorted.gather(1, (n_hit - 1).clamp(min=0)[:, None])
    last = torch.where(n_hit[:, None] > 0, last, torch.full_like(last, float("-inf")))
    cand = (d <= last) & ~not_negative
    if int(cand.sum()) > SPARSE_MAX_FRACTION * cand.numel():
        return None
    rows, cols = cand.nonzero(as_tuple=True)
    offset = torch.arange(c, device=d.device, dtype=torch.int64) << 33
    keys = _ordered_int(d[rows, cols]) + offset[rows]
    hit_keys = _ordered_int(hit_sorted) + offset[:, None]          # globally sorted once flattened
    bucket = torch.searchsorted(hit_keys.flatten(), keys, right=True) - rows * h
    flat = rows * (h + 2) + bucket
    counts = torch.bincount(flat, minlength=c * (h + 2)).view(c, h + 2)
    ranks = torch.arange(h, device=d.device)[None] + counts[:, :h].cumsum(1)
    lowest = torch.full((c * (h + 2),), torch.iinfo(torch.int64).max, dtype=torch.int64, device=d.device)
    lowest.scatter_reduce_(0, flat, keys, reduce="amin")
    real = torch.arange(h, device=d.device)[None] < n_hit[:, None]
    tied = ((lowest.view(c, h + 2)[:, 1:h + 1] == hit_keys) & real).any(1)
    return ranks, tied


def _stable_ranks(d, hit, neg, h, max_elements: int = 1 << 24):
    """Exact ranks of the true matches of some queries (rows), ties broken by gallery index (a
    stable sort), batched: ``(rows, h)`` with the first ``n_hit`` entries of each row meaningful.
    Items farther than a row's last true match cannot change a rank: they sort last as +inf."""
    out = torch.empty((d.shape[0], h), dtype=torch.int64, device=d.device)
    step = max(1, max_elements // max(1, d.shape[1]))
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    for s in range(0, d.shape[0], step):
        dd, hh, nn = d[s:s + step], hit[s:s + step], neg[s:s + step]
        last = torch.where(hh, dd, -inf).amax(1, keepdim=True)
        kept = (hh | nn) & (dd <= last)
        order = torch.sort(torch.where(kept, dd, inf), dim=1, stable=True).indices
        is_hit = hh.gather(1, order)
        pos = torch.arange(dd.shape[1], device=d.device).expand_as(is_hit)
        pos = torch.where(is_hit, pos, torch.full_like(pos, dd.shape[1]))
        out[s:s + step] = torch.sort(pos, dim=1).values[:, :h]
    return out
