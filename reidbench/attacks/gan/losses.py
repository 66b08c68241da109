"""Losses of the generative attacks: MS-SSIM, DMR's mis-ranking triplet, the cross-entropy towards
the least likely identity, and the least-squares GAN loss over discriminator scales."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ms_ssim", "misranking_triplet_loss", "least_likely_cross_entropy", "lsgan_loss", "MS_SSIM_WEIGHTS"]

def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    c = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_cs(x, y, win_size: int, sigma: float, data_range: float):
    ch = x.shape[1]
    g = _gaussian_window(win_size, sigma, x.device, x.dtype)
    wx = g.view(1, 1, 1, -1).repeat(ch, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(ch, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
            weights=MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) per sample, ``(N,)``. At scales smaller than the window
    (a 128x64 person has a 8x4 fifth scale) the window shrinks to the image; negative contrast terms
    are clamped at 0 so the power stays defined."""
    levels = len(weights)
    w = torch.tensor(weights, device=x.device, dtype=x.dtype)
    vals = []
    for i in range(levels):
        k = min(win_size, x.shape[-2], x.shape[-1])
        ssim, cs = _ssim_cs(x, y, k, sigma * k / win_size, data_range)
        vals.append(ssim.relu() if i == levels - 1 else cs.relu())
        if i < levels - 1:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    v = torch.stack(vals, 1).clamp(min=1e-8)
    return torch.prod(v ** w[None], 1)


def misranking_triplet_loss(feats: torch.Tensor, pids: torch.Tensor, margin: float = 0.3,
                            self_positive: bool = False) -> torch.Tensor:
    """Mean over samples of ``[d(furthest negative) - d(nearest positive) + margin]_+``: minimising
    it ranks other identities above the sample's own. ``self_positive`` reproduces the code's mask
    (the sample is its own nearest positive, d = 0)."""
    d = torch.cdist(feats, feats).clamp(min=1e-6)
    same = pids[:, None] == pids[None]
    if not self_positive:
        same = same & ~torch.eye(len(pids), dtype=torch.bool, device=feats.device)
    big = d.detach().max() + 1
    pos_min = torch.where(same, d, big).min(1).values
    other = pids[:, None] != pids[None]
    neg_max = torch.where(other, d, torch.zeros_like(d)).max(1).values
    has = same.any(1) & other.any(1)
    if not bool(has.any()):
        raise ValueError("the mis-ranking triplet needs batches with several images per identity (PK batches)")
    return F.relu(neg_max - pos_min + margin)[has].mean()


def least_likely_cross_entropy(logits: torch.Tensor, pids: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy towards each sample's least-likely identity, label-smoothed over the identities
    absent from the batch (DMR's ``adv_CrossEntropyLabelSmooth``)."""
    k = logits.shape[1]
    target_cls = logits.detach().argmin(1)
    allowed = torch.ones(k, dtype=logits.dtype, device=logits.device)
    present = pids[(pids >= 0) & (pids < k)]
    allowed[present] = 0
    smooth = allowed / allowed.sum().clamp(min=1)
    t = smoothing * smooth[None].expand_as(logits).clone()
    t.scatter_add_(1, target_cls[:, None], torch.full_like(logits[:, :1], 1 - smoothing))
    return -(t * F.log_softmax(logits, 1)).sum(1).mean()


def lsgan_loss(outs: list[torch.Tensor], target: float, last_only: bool) -> torch.Tensor:
    """Least-squares GAN loss towards ``target``, averaged over the scales (the last one only with
    ``last_only``)."""
    outs = outs[-1:] if last_only else outs
    return sum(F.mse_loss(o, torch.full_like(o, target)) for o in outs) / len(outs)
