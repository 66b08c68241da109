"""Pairwise distances between feature matrices, in torch."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["compute_distance", "check_finite_features", "as_tensor"]

METRICS = ("euclidean", "sqeuclidean", "cosine")


def as_tensor(x, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` as a tensor without copying where possible (numpy arrays share memory)."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


def check_finite_features(features: torch.Tensor, name: str = "features") -> None:
    """Raise a ``ValueError`` naming the first rows whose feature holds NaN or +-inf."""
    bad = ~torch.isfinite(features)
    if bad.any():
        rows = bad.reshape(len(features), -1).any(1).nonzero().flatten()
        shown = ", ".join(str(int(r)) for r in rows[:10])
        raise ValueError(
            f"{name}: {len(rows)} of {len(features)} feature vectors contain NaN or inf "
            f"(rows {shown}{', ...' if len(rows) > 10 else ''}). A model that produces non-finite "
            "features cannot be ranked; check the model's input range ([0, 1]) and its weights."
        )


def compute_distance(a, b, metric: str = "euclidean") -> torch.Tensor:
    """Distance matrix between the rows of ``a`` (M, D) and ``b`` (N, D).

    Args:
        a, b: features (torch tensors or numpy arrays) with the same feature dimension.
        metric: ``"euclidean"`` (L2, with square root), ``"sqeuclidean"`` (squared L2, what torchreid
            calls "euclidean") or ``"cosine"`` (``1 - cos``, features are L2-normalised here).

    Returns:
        (M, N) float tensor on the device of ``a``. Ranks ascending (smaller = more similar).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (M, D) and (N, D); got {tuple(a.shape)} and {tuple(b.shape)}")
    if not a.is_floating_point():
        a = a.float()
    b = b.to(a.dtype)
    check_finite_features(a, "query features")
    check_finite_features(b, "gallery features")
    if metric == "cosine":
        a = torch.nn.functional.normalize(a, dim=1)
        b = torch.nn.functional.normalize(b, dim=1)
        return 1.0 - a @ b.T
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * (a @ b.T)
    sq.clamp_(min=0.0)
    return sq.sqrt_() if metric == "euclidean" else sq
