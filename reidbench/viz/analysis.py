"""The seed's analysis figures: Grad-CAM activation maps on clean and adversarial queries (Figure 8)
and a 2-D t-SNE embedding of clean, adversarial and homogeneous-modality features (Figure 7)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import model_mode
from .common import plt, save_figure, to_hwc

__all__ = ["grad_cam", "identity_references", "plot_grad_cam", "tsne", "plot_tsne"]


def _cam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional feature map: the trunk of reidbench's architectures, else the last Conv2d."""
    for name in ("stages", "backbone"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolutional layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of an embedding model on ``images`` (N, 3, H, W) in [0, 1].

    The score needs a real gradient. With ``reference`` (N, D), it is the similarity of each image's
    feature to the reference feature -- another image of the same identity, as in the seed's Figure 8;
    for an adversarial query it shows where the evidence for its true identity went. Without one, it
    is the identity logit the model predicts (models with an identity head, ``logits``).
    The similarity to the image's *own* feature is no score: with L2-normalised features its
    gradient vanishes (f . f0 is stationary at f = f0 on the sphere), which gives noise maps; a
    score whose gradient vanishes anyway is an error. The model is evaluated in eval mode and
    restored; the weights are not changed."""
    layer = _cam_layer(model)
    acts: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        if not acts:  # the first call (an adapter may call the trunk more than once)
            out.retain_grad()
            acts.append(out)

    if reference is None and not callable(getattr(model, "logits", None)):
        raise ValueError(f"{type(model).__name__} has no identity head: give grad_cam a reference feature "
                         "(another image of the identity)")
    handle = layer.register_forward_hook(hook)
    try:
        with model_mode(model), torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            if reference is None:
                score = model.logits(x).max(1).values.sum()
            else:
                score = (model(x) * reference.to(x).detach()).sum()
            score.backward()
        a, g = acts[0], acts[0].grad
        if g is None or float(g.abs().max()) <= 1e-6 * float(a.detach().abs().max()):  # float round-off only
            raise ValueError("the Grad-CAM score has no gradient at the feature map (is the reference the image's "
                             "own feature?); give another image of the identity as reference")
        weights = g.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * a).sum(1, keepdim=True))
        n = images.shape[0]
        if cam.shape[0] == 2 * n:  # flip-TTA batches [x, flip(x)]: fold the flipped half back
            cam = cam[:n] + cam[n:].flip(-1)
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        lo = cam.flatten(1).amin(1)[:, None, None]
        hi = cam.flatten(1).amax(1)[:, None, None]
        return ((cam - lo) / (hi - lo).clamp_min(1e-12)).detach()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)


def identity_references(evalset, queries: Sequence[int]) -> torch.Tensor:
    """For each selected query, the feature of a gallery image of its identity from another camera
    (the first in gallery order): Grad-CAM's reference (the seed's Figure 8). ``evalset``: the
    :func:`~reidbench.attacks.evaluate.prepare_evalset` of the model."""
    out = []
    for q in queries:
        match = (evalset.g_pids == evalset.q_pids[q]) & (evalset.g_camids != evalset.q_camids[q])
        idx = match.nonzero().flatten()
        if not len(idx):
            raise ValueError(f"query {q} has no gallery image of its identity from another camera")
        out.append(evalset.g_feats[idx[0]])
    return torch.stack(out)


def plot_grad_cam(models: dict[str, nn.Module], clean: torch.Tensor, adversarial: dict[str, dict[str, torch.Tensor]],
                  path: str | os.PathLike, title: str | None = None, dpi: int = 120,
                  references: dict[str, torch.Tensor] | None = None) -> Path:
    """For each model (e.g. baseline and PD): the clean queries with their Grad-CAM maps, then each
    adversarial version of them (``adversarial[model name]``: label -> images, attacked on that
    model) with its map. ``references[model name]``: each query's reference feature on that model
    (another image of its identity, :func:`grad_cam`); without, the predicted identity's logit."""
    pyplot = plt()
    n = clean.shape[0]
    cols = 1 + max(len(v) for v in adversarial.values())
    fig, axes = pyplot.subplots(n * len(models), cols, figsize=(1.4 * cols, 2.5 * n * len(models)), squeeze=False)
    r = 0
    for mname, model in models.items():
        advs = adversarial.get(mname, {})
        ref = (references or {}).get(mname)
        maps = {"clean": (clean, grad_cam(model, clean, ref))}
        for label, x in advs.items():
            maps[label] = (x, grad_cam(model, x, ref))
        for i in range(n):
            for j, (label, (imgs, cam)) in enumerate(maps.items()):
                ax = axes[r + i, j]
                ax.imshow(to_hwc(imgs[i]))
                ax.imshow(cam[i].cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{mname}: {label}", fontsize=7)
        r += n
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def tsne(x: torch.Tensor, *, dims: int = 2, perplexity: float = 30.0, iters: int = 750, seed: int = 0,
         lr: float = 200.0) -> np.ndarray:
    """Exact t-SNE (van der Maaten and Hinton, 2008) of a few hundred points, in torch, deterministic
    for a seed: per-point bandwidths by bisection on the perplexity, early exaggeration (x12 for
    the first 250 iterations), momentum gradient descent with gains."""
    x = x.detach().double().cpu()
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    d = torch.cdist(x, x).pow(2)
    target = np.log(perplexity)
    beta = torch.ones(n, dtype=torch.float64)
    lo = torch.full((n,), 0.0, dtype=torch.float64)
    hi = torch.full((n,), float("inf"), dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.bool)
    for _ in range(64):
        p = torch.exp(-d * beta[:, None]).masked_fill(eye, 0)
        s = p.sum(1).clamp_min(1e-300)
        h = torch.log(s) + beta * (d * p).sum(1) / s     # entropy of each row
        too_flat = h > target
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2)
    p = p / s[:, None]
    p = (p + p.T) / (2 * n)
    p = p.clamp_min(1e-12)
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, dims, generator=g, dtype=torch.float64) * 1e-4
    vel = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(iters):
        exaggeration = 12.0 if it < 250 else 1.0
        momentum = 0.5 if it < 250 else 0.8
        num = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
        num = num.masked_fill(eye, 0)
        q = (num / num.sum()).clamp_min(1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4 * (pq.sum(1, keepdim=True) * y - pq @ y)
        gains = torch.where((grad > 0) != (vel > 0), gains + 0.2, gains * 0.8).clamp_min(0.01)
        vel = momentum * vel - lr * gains * grad
        y = y + vel
        y = y - y.mean(0)
    return y.numpy()


def plot_tsne(features: dict[str, torch.Tensor], pids: torch.Tensor, path: str | os.PathLike, *, seed: int = 0,
              title: str | None = None, dpi: int = 120, markers: Sequence[str] = ("o", "x", "^", "s", "D")) -> Path:
    """One t-SNE of several feature sets of the same images (label -> (N, D), e.g. clean,
    adversarial, grayscale): colour = identity, marker = set."""
    labels = list(features)
    allf = torch.cat([F.normalize(features[k].float().cpu(), dim=1) for k in labels])
    y = tsne(allf, seed=seed)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5.5, 5))
    ids = sorted(set(int(p) for p in pids.tolist()))
    cmap = pyplot.get_cmap("tab10" if len(ids) <= 10 else "tab20")
    n = len(pids)
    for k, label in enumerate(labels):
        pts = y[k * n:(k + 1) * n]
        for ci, pid in enumerate(ids):
            sel = (pids == pid).cpu().numpy()
            ax.scatter(pts[sel, 0], pts[sel, 1], s=22, marker=markers[k % len(markers)], color=cmap(ci % cmap.N),
                       label=label if ci == 0 else None, linewidths=1)
    leg = ax.legend(fontsize=7, loc="best")
    for h in leg.legend_handles:
        h.set_color("gray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {', '.join(labels)} features ({len(ids)} identities; colour = identity)",
                 fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
