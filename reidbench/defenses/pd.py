"""Building blocks of the seed paper's proactive defense PD (Gong et al., CVPR 2022), usable alone.

This module currently provides the local grayscale transformation :func:`lgt` (also the reference
generator of the LTA attack) and :func:`grayscale`; channel fusion, sketch, AutoAugment and the
local homogeneous transformation join it with the defenses (issue 6).
"""

from __future__ import annotations

import torch

__all__ = ["grayscale", "lgt", "sample_rectangles"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def grayscale(x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> luma replicated over 3 channels. ``quantize=True`` reproduces PIL's
    8-bit ``convert("L")`` on images truncated to uint8 (as ``ToPILImage`` does)."""
    if quantize:
        u = (x * 255).floor().clamp(0, 255).to(torch.int64)  # ToPILImage truncates
        luma = (u[:, 0] * 19595 + u[:, 1] * 38470 + u[:, 2] * 7471 + 0x8000) >> 16
        g = luma.to(x.dtype) / 255
    else:
        g = _LUMA[0] * x[:, 0] + _LUMA[1] * x[:, 1] + _LUMA[2] * x[:, 2]
    return g[:, None].expand(-1, 3, -1, -1)


def sample_rectangles(n: int, h: int, w: int, generator: torch.Generator, sl: float = 0.02, sh: float = 0.4,
                      r1: float = 0.3, swapped_geometry: bool = False, attempts: int = 100,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W) boolean masks of one random rectangle per image (Random-Erasing sampler).

    Area fraction ~ U(sl, sh), aspect ~ U(r1, 1/r1), up to ``attempts`` tries (no rectangle if all
    fail). ``swapped_geometry`` reproduces the seed code's port of the sampler to PIL sizes, where
    height and width are exchanged (the patch is clipped at the border)."""
    area = torch.empty(n, attempts).uniform_(sl, sh, generator=generator) * (h * w)
    aspect = torch.empty(n, attempts).uniform_(r1, 1 / r1, generator=generator)
    rh = torch.round(torch.sqrt(area * aspect)).long()
    rw = torch.round(torch.sqrt(area / aspect)).long()
    u1 = torch.rand(n, attempts, generator=generator)
    u2 = torch.rand(n, attempts, generator=generator)
    if swapped_geometry:
        # seed code: accept if w < H and h < W; x1 in [0, W - h] (columns), y1 in [0, H - w] (rows);
        # rows y1:y1+h and columns x1:x1+w, clipped by numpy slicing
        ok = (rw < h) & (rh < w)
        first = torch.argmax(ok.int(), 1)
        pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
        hh, ww, a, b = pick(rh), pick(rw), pick(u1), pick(u2)
        x1 = torch.floor(a * (w - hh + 1).clamp(min=1)).long()
        y1 = torch.floor(b * (h - ww + 1).clamp(min=1)).long()
        top, left, height, width = y1, x1, hh, ww
    else:
        ok = (rh < h) & (rw < w)
        first = torch.argmax(ok.int(), 1)
        pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
        hh, ww, a, b = pick(rh), pick(rw), pick(u1), pick(u2)
        top = torch.floor(a * (h - hh + 1)).long()
        left = torch.floor(b * (w - ww + 1)).long()
        height, width = hh, ww
    found = ok.any(1)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    mask = ((rows >= top[:, None, None]) & (rows < (top + height)[:, None, None])
            & (cols >= left[:, None, None]) & (cols < (left + width)[:, None, None]) & found[:, None, None])
    return mask.to(device)


def lgt(x: torch.Tensor, generator: torch.Generator, p: float = 1.0, sl: float = 0.02, sh: float = 0.4,
        r1: float = 0.3, swapped_geometry: bool = False, quantize: bool = False) -> torch.Tensor:
    """Local grayscale transformation (Gong et al., arXiv 2101.08533): with probability ``p`` per
    image, one random rectangle is replaced by the image's grayscale. (N, 3, H, W) in [0, 1] in and
    out; a new tensor (the input is not modified). ``quantize`` reproduces the seed code's 8-bit
    round trip through PIL for the whole image."""
    n, _, h, w = x.shape
    mask = sample_rectangles(n, h, w, generator, sl, sh, r1, swapped_geometry, device=x.device)
    apply = (torch.rand(n, generator=generator) < p).to(x.device)
    mask = mask & apply[:, None, None]
    base = (x * 255).floor().clamp(0, 255) / 255 if quantize else x
    return torch.where(mask[:, None], grayscale(x, quantize=quantize), base)
