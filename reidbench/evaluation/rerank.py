"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), in torch, with sparse neighbour sets.

Same algorithm and numbers as the reference Python port shipped by torchreid / fast-reid / the
seed's code (``re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)``), including its input
convention: the port squares its input distances (see ``spec/ALGORITHMS.md`` section 5.3).

The reference builds three dense (N x N) matrices (N = queries + gallery) and loops over N rows in
Python. Here only chunks of rows are ever dense: the k-nearest lists are found with ``topk`` per
chunk, the k-reciprocal sets and their expansions are computed for whole chunks at once, the
encoding ``V`` is kept as a sparse (CSR) matrix -- each row has a few dozen non-zeros -- and the
Jaccard distance is accumulated through an inverted index over ``V``'s columns. Peak memory above
the inputs is the (Q x G) output plus ``max_memory_gb`` of work space.
"""

from __future__ import annotations

import numpy as np
import torch

from .distance import as_tensor

__all__ = ["re_ranking", "re_ranking_features"]


def re_ranking(
    q_g_dist,
    q_q_dist,
    g_g_dist,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    max_memory_gb: float = 0.25,
):
    """Re-rank a query-gallery distance matrix with k-reciprocal encoding.

    Args:
        q_g_dist: (Q, G) query-gallery distances; q_q_dist: (Q, Q); g_g_dist: (G, G). Torch tensors
            (any device) or numpy arrays. Like the reference port, the distances are squared before
            use: pass Euclidean distances to follow the paper, or squared Euclidean distances to
            reproduce torchreid's / the seed's numbers.
        k1, k2: neighbourhood sizes of the k-reciprocal sets and of the local query expansion.
        lambda_value: weight of the original distance in the final blend.
        max_memory_gb: work space for the dense row chunks (the output is extra).

    Returns:
        (Q, G) float32 re-ranked distances, a numpy array when ``q_g_dist`` is one, else a tensor
        on its device.
    """
    return_numpy = not isinstance(q_g_dist, torch.Tensor)
    qg, qq, gg = (as_tensor(x) for x in (q_g_dist, q_q_dist, g_g_dist))
    device = qg.device
    qq, gg = qq.to(device), gg.to(device)
    nq, ng = qg.shape
    if qq.shape != (nq, nq) or gg.shape != (ng, ng):
        raise ValueError(
            f"shapes do not fit: q_g {tuple(qg.shape)}, q_q {tuple(qq.shape)}, g_g {tuple(gg.shape)}; "
            f"expected ({nq}, {nq}) and ({ng}, {ng})"
        )
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    for name, x in (("q_g_dist", qg), ("q_q_dist", qq), ("g_g_dist", gg)):
        if not _all_finite(x):
            raise ValueError(f"{name} holds NaN or inf; re-ranking needs finite distances")
    out = _re_rank(_Blocks(qg, qq, gg), nq, ng, k1, k2, lambda_value, max_memory_gb)
    return out.cpu().numpy() if return_numpy else out


def re_ranking_features(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3, max_memory_gb: float = 0.25):
    """:func:`re_ranking` of ``re_ranking(sqeuclidean(qf, gf), sqeuclidean(qf, qf), sqeuclidean(gf, gf))``
    -- the convention of torchreid and the seed -- computed from the features, without any (G x G)
    or (Q + G)^2 matrix: distances are computed block by block where the algorithm reads them.
    Peak memory above the features is the (Q x G) output plus ``max_memory_gb`` of work space, so
    MSMT17's 11,659 x 82,161 problem fits a 24 GB machine (the dense inputs alone would be 27 GB for
    the gallery, and the reference port needs about 35 GB). Numbers equal the dense path's up to
    float32 rounding of the distances (the same neighbours, unless two are within rounding)."""
    qf, gf = as_tensor(qf), as_tensor(gf)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D); got {tuple(qf.shape)} and {tuple(gf.shape)}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not qf.is_floating_point():
        qf = qf.float()
    gf = gf.to(device=qf.device, dtype=qf.dtype)
    for name, x in (("query features", qf), ("gallery features", gf)):
        if not _all_finite(x):
            raise ValueError(f"{name} hold NaN or inf; re-ranking needs finite features")
    return _re_rank(_FeatureBlocks(qf, gf), len(qf), len(gf), k1, k2, lambda_value, max_memory_gb)


def _re_rank(blocks, nq: int, ng: int, k1: int, k2: int, lambda_value: float, max_memory_gb: float) -> torch.Tensor:
    """The algorithm, on row access to the full (Q + G) distance matrix (``blocks``)."""
    device = blocks.device
    n = nq + ng
    chunk = max(1, min(n, int(max_memory_gb * (1 << 30)) // (n * 4 * 4)))

    # pass 1: per-row max (the port normalises each row by its max) and the nearest neighbours.
    # Squaring and normalising are monotone for non-negative distances, so the neighbour lists are
    # found on the raw blocks, without materialising the squared, normalised rows.
    kh = int(round(k1 / 2.0)) + 1  # numpy.around and round() both round half to even
    k_top = min(n, max(k1 + 1, k2, kh))
    row_max = torch.empty(n, dtype=torch.float32, device=device)
    top = torch.empty((n, k_top), dtype=torch.int64, device=device)
    for s, e in _chunks(n, nq, chunk):
        parts = blocks.row_parts(s, e)
        squared = any(bool((part < 0).any()) for part, _ in parts)  # then squaring is not monotone
        vals, idx, maxes = [], [], []
        for part, offset in parts:
            if squared:
                part = part.pow(2)
            v, i = torch.topk(part, min(k_top, part.shape[1]), dim=1, largest=False, sorted=True)
            vals.append(v)
            idx.append(i + offset)
            maxes.append(part.amax(1))
        v, i = torch.cat(vals, 1), torch.cat(idx, 1)
        order = torch.sort(v, dim=1, stable=True).indices[:, :k_top]
        top[s:e] = i.gather(1, order)
        rmax = torch.stack(maxes, 1).amax(1)
        row_max[s:e] = (rmax if squared else rmax.pow(2)).to(torch.float32)
    top1 = top[:, : min(k1 + 1, k_top)]
    tophalf = top[:, : min(kh, k_top)]
    recip1 = _reciprocal(top1)
    reciph = _reciprocal(tophalf)

    # pass 2: k-reciprocal expansion sets and their Gaussian-kernel weights, row chunk by row chunk
    v_rows, v_cols, v_vals = [], [], []
    small = max(1, min(n, 4096))
    for s in range(0, n, small):
        e = min(n, s + small)
        cols, valid = _expansion(top1[s:e], recip1[s:e], tophalf, reciph)
        ri = torch.arange(s, e, device=device)[:, None].expand_as(cols)
        w = torch.exp(-blocks.squared(ri, cols) / row_max[s:e, None]) * valid
        w = w / w.sum(1, keepdim=True)
        v_rows.append(ri[valid])
        v_cols.append(cols[valid])
        v_vals.append(w[valid].to(torch.float32))
    v = _csr(torch.cat(v_rows), torch.cat(v_cols), torch.cat(v_vals), n)

    # local query expansion: V[i] <- mean of V over the k2 nearest neighbours of i
    if k2 != 1:
        src = top[:, :k2].reshape(-1)
        dst = torch.arange(n, device=device).repeat_interleave(k2)
        r_i, c_i, v_i = _gather_rows(v, src, dst)
        key = r_i * n + c_i
        uniq, inv = torch.unique(key, return_inverse=True)
        summed = torch.zeros(len(uniq), dtype=torch.float32, device=device).index_add_(0, inv, v_i)
        v = _csr(uniq // n, uniq % n, summed / k2, n)

    # Jaccard distance between every query row and every gallery row through an inverted index:
    # sum_t min(V[i, t], V[j, t]) only has terms where both are non-zero.
    crow, col, val = v
    row_of = _row_ids(crow)
    g_mask = row_of >= nq
    inv_crow, inv_row, inv_val = _csc(row_of[g_mask], col[g_mask], val[g_mask], n)
    out = torch.empty((nq, ng), dtype=torch.float32, device=device)
    q_nnz = crow[1 : nq + 1] - crow[:nq]
    # number of (query entry, gallery entry) pairs each query row produces, to size the chunks
    q_col = col[: int(crow[nq])]
    entry_pairs = torch.zeros(int(crow[nq]) + 1, dtype=torch.int64, device=device)
    entry_pairs[1:] = (inv_crow[q_col + 1] - inv_crow[q_col]).cumsum(0)
    pairs_upto = entry_pairs[crow[: nq + 1]].cpu().numpy()  # pairs of queries [0, i)
    pair_budget = max(1 << 16, int(max_memory_gb * (1 << 30)) // 48)
    s = 0
    while s < nq:
        e = int(np.searchsorted(pairs_upto, pairs_upto[s] + pair_budget, side="right")) - 1
        e = min(nq, max(e, s + 1), s + max(1, int(max_memory_gb * (1 << 30)) // (ng * 16)))
        lo, hi = int(crow[s]), int(crow[e])
        q_row = torch.arange(s, e, device=device).repeat_interleave(q_nnz[s:e]) - s
        t = col[lo:hi]
        q_val = val[lo:hi]
        lens = inv_crow[t + 1] - inv_crow[t]
        pos = _expand_ranges(inv_crow[t], lens)
        g_row = inv_row[pos] - nq
        mins = torch.minimum(q_val.repeat_interleave(lens), inv_val[pos])
        acc = torch.zeros((e - s) * ng, dtype=torch.float32, device=device)
        acc.index_add_(0, q_row.repeat_interleave(lens) * ng + g_row, mins)
        acc = acc.view(e - s, ng)
        jaccard = 1.0 - acc / (2.0 - acc)
        original = blocks.squared_qg(s, e) / row_max[s:e, None]
        out[s:e] = jaccard * (1.0 - lambda_value) + original * lambda_value
        s = e
    return out


class _Blocks:
    """Row access to the full distance matrix [[qq, qg], [qg^T, gg]] without building it.

    The reference port normalises by column maxima and transposes, so row i of its matrix is
    column i of the input. Distance matrices of a set with itself are symmetric and their rows are
    used directly (contiguous, fast); a q_q or g_g that is not symmetric (checked on a sample of
    entries) is read column-wise, as the reference does."""

    def __init__(self, qg, qq, gg):
        self.qg = qg
        self.qq = qq if _looks_symmetric(qq) else qq.T
        self.gg = gg if _looks_symmetric(gg) else gg.T
        self.nq = qg.shape[0]
        self.device = qg.device

    def row_parts(self, s, e):
        """(block rows, column offset) pairs making up rows s..e (all queries or all gallery)."""
        nq = self.nq
        if e <= nq:
            return [(self.qq[s:e], 0), (self.qg[s:e], nq)]
        a, b = s - nq, e - nq
        return [(self.qg[:, a:b].T, 0), (self.gg[a:b], nq)]

    def squared(self, rows, cols):
        """float32 squared entries at (rows, cols) of the row-wise full matrix."""
        nq = self.nq
        rq, cq = rows < nq, cols < nq
        r_g, c_g = (rows - nq).clamp(min=0), (cols - nq).clamp(min=0)
        r_q, c_q = rows.clamp(max=nq - 1), cols.clamp(max=nq - 1)
        val = torch.where(
            rq,
            torch.where(cq, self.qq[r_q, c_q], self.qg[r_q, c_g]),
            torch.where(cq, self.qg[c_q, r_g], self.gg[r_g, c_g]),
        )
        return val.pow(2).to(torch.float32)

    def squared_qg(self, s, e):
        return self.qg[s:e].pow(2).to(torch.float32)


class _FeatureBlocks:
    """The same row access as :class:`_Blocks` for the squared-Euclidean distances of features
    (``all = [queries; gallery]``), computed where they are read: a chunk of rows against every
    feature, or the entries at (row, column) pairs."""

    def __init__(self, qf: torch.Tensor, gf: torch.Tensor) -> None:
        self.all = torch.cat([qf, gf])
        self.sq = (self.all * self.all).sum(1)
        self.nq = qf.shape[0]
        self.device = qf.device

    def _sqeuclidean(self, a: slice, b: slice) -> torch.Tensor:
        x, y = self.all[a], self.all[b]
        d = self.sq[a][:, None] + self.sq[b][None] - 2.0 * (x @ y.T)
        return d.clamp_(min=0.0)

    def row_parts(self, s, e):
        nq = self.nq
        return [(self._sqeuclidean(slice(s, e), slice(0, nq)), 0),
                (self._sqeuclidean(slice(s, e), slice(nq, None)), nq)]

    def squared(self, rows, cols):
        out = torch.empty(rows.shape, dtype=torch.float32, device=self.device)
        step = max(1, (16 << 20) // max(1, rows.shape[1] * self.all.shape[1]))
        for s in range(0, rows.shape[0], step):  # (rows, K, D) gathered a few rows at a time
            r, c = rows[s:s + step], cols[s:s + step]
            dot = torch.einsum("rd,rkd->rk", self.all[r[:, 0]], self.all[c]) if bool((r == r[:, :1]).all()) \
                else (self.all[r] * self.all[c]).sum(-1)
            d = (self.sq[r] + self.sq[c] - 2.0 * dot).clamp_(min=0.0)
            out[s:s + step] = d.pow(2).to(torch.float32)
        return out

    def squared_qg(self, s, e):
        return self._sqeuclidean(slice(s, e), slice(self.nq, None)).pow(2).to(torch.float32)


def _looks_symmetric(a: torch.Tensor, samples: int = 20000) -> bool:
    n = a.shape[0]
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, n, (samples,), generator=g).to(a.device)
    j = torch.randint(0, n, (samples,), generator=g).to(a.device)
    scale = a[i, j].abs().max().clamp(min=1e-30)
    return bool(((a[i, j] - a[j, i]).abs() <= 1e-6 * scale).all())


def _all_finite(x: torch.Tensor, rows: int = 1024) -> bool:
    """``isfinite(x).all()`` without a full-size temporary (torch's isfinite allocates |x|)."""
    if bool(torch.isfinite(x.sum())):  # a NaN or inf makes the sum non-finite
        return True
    return all(bool(torch.isfinite(x[s:s + rows]).all()) for s in range(0, x.shape[0], rows))


def _chunks(n, nq, size):
    """Row ranges of at most ``size`` rows that never straddle the query/gallery boundary."""
    for lo, hi in ((0, nq), (nq, n)):
        for s in range(lo, hi, size):
            yield s, min(hi, s + size)


def _reciprocal(top: torch.Tensor) -> torch.Tensor:
    """mask[i, a] = True iff i is among the neighbours of its neighbour top[i, a]."""
    n, k = top.shape
    out = torch.empty((n, k), dtype=torch.bool, device=top.device)
    step = max(1, (32 << 20) // (k * k * 8))
    for s in range(0, n, step):
        e = min(n, s + step)
        back = top[top[s:e]]  # (c, k, k)
        out[s:e] = (back == torch.arange(s, e, device=top.device)[:, None, None]).any(-1)
    return out


def _expansion(cand, cand_ok, tophalf, reciph):
    """k-reciprocal sets of a chunk of rows expanded by their candidates' half-size reciprocal sets.

    Returns ``(cols, valid)`` with each row's distinct members (padding marked invalid)."""
    c, k = cand.shape
    members = tophalf[cand]                   # (c, k, kh) candidate sets R(j, k1/2)
    members_ok = reciph[cand]                 # which of them are reciprocal
    in_r = (members[..., None] == cand[:, None, None, :]) & cand_ok[:, None, None, :]
    n_common = (in_r.any(-1) & members_ok).sum(-1)  # |R(j, k1/2) intersect R(i, k1)|
    n_members = members_ok.sum(-1)
    # same float64 comparison as the reference: len(intersection) > 2/3 * len(candidate set)
    accept = cand_ok & (n_common.to(torch.float64) > (2.0 / 3.0) * n_members.to(torch.float64))
    cols = torch.cat([cand, members.reshape(c, -1)], 1)
    valid = torch.cat([cand_ok, (members_ok & accept[..., None]).reshape(c, -1)], 1)
    sentinel = torch.iinfo(torch.int64).max
    cols = torch.where(valid, cols, torch.full_like(cols, sentinel))
    cols, _ = torch.sort(cols, dim=1)
    dup = torch.zeros_like(valid)
    dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
    valid = (cols != sentinel) & ~dup
    return torch.where(valid, cols, torch.zeros_like(cols)), valid


def _csr(rows, cols, vals, n):
    order = torch.argsort(rows * n + cols)
    rows, cols, vals = rows[order], cols[order], vals[order]
    crow = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return crow, cols, vals


def _csc(rows, cols, vals, n):
    crow, r, v = _csr(cols, rows, vals, n)
    return crow, r, v


def _row_ids(crow):
    n = len(crow) - 1
    return torch.arange(n, device=crow.device).repeat_interleave(crow[1:] - crow[:-1])


def _expand_ranges(starts, lens):
    """Concatenation of ranges [starts[i], starts[i] + lens[i])."""
    total = int(lens.sum())
    offsets = torch.arange(total, device=starts.device) - (lens.cumsum(0) - lens).repeat_interleave(lens)
    return starts.repeat_interleave(lens) + offsets


def _gather_rows(csr, src, dst):
    """Entries of rows ``src`` of a CSR matrix, relabelled as rows ``dst``."""
    crow, col, val = csr
    lens = crow[src + 1] - crow[src]
    pos = _expand_ranges(crow[src], lens)
    return dst.repeat_interleave(lens), col[pos], val[pos]
