"""Shared figure plumbing: a headless matplotlib, deterministic PNG/SVG output, image helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_path

__all__ = ["plt", "save_figure", "to_hwc", "MATCH", "MISMATCH"]

MATCH = "#1a9850"      # green border: a true match
MISMATCH = "#d73027"   # red border: a false match


def plt():
    """``matplotlib.pyplot`` on the Agg backend, or an error that says how to install it."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'reidbench[viz]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    pyplot.rcParams["svg.hashsalt"] = "reidbench"  # stable ids in SVG output
    return pyplot


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` atomically as PNG or SVG (by suffix) without time stamps or version strings, so
    that the same figure gives the same bytes; close it."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "svg"):
        raise ValueError(f"figures are written as .png or .svg, not {path.name!r}")
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
    plt().close(fig)
    return path


def to_hwc(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 or float in [0, 1] -> (H, W, 3) float array for ``imshow``."""
    x = img.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1).permute(1, 2, 0).numpy()
