"""Ranked lists (the seed's Figure 1) and perturbation panels (the seed's Figure 6).

A ranked-list strip shows a query and its top-k gallery images under the Market protocol
(same-identity same-camera gallery images are left out), with green borders for true matches and
red for false ones -- once for the clean query and once per adversarial version of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..protocol import CLEAN
from ..data.transforms import select_rows, to_model_input
from .common import MATCH, MISMATCH, plt, save_figure, to_hwc

__all__ = ["RankedLists", "ranked_lists", "plot_ranked_lists", "plot_perturbation", "attack_selected_queries",
           "select_rows"]


@dataclass
class RankedLists:
    """What :func:`plot_ranked_lists` draws. ``panels``: label -> (query images (Q, 3, H, W) in
    [0, 1], top-k gallery indices (Q, k), true-match flags (Q, k))."""

    queries: list[int]
    q_pids: list[int]
    gallery_images: object                       # uint8 (N, 3, H, W) tensor or list
    g_pids: torch.Tensor
    panels: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def _topk(qf: torch.Tensor, gf: torch.Tensor, q_pids, q_camids, g_pids, g_camids, k: int):
    from ..evaluation import compute_distance

    d = compute_distance(qf, gf, metric="cosine").clone()
    junk = (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] == g_camids[None, :])
    d[junk] = float("inf")
    idx = torch.topk(d, k=min(k, d.shape[1]), dim=1, largest=False).indices
    return idx, g_pids[idx] == q_pids[:, None]


def attack_selected_queries(attack, evalset, queries: Sequence[int], model: torch.nn.Module,
                            device: str | torch.device = "cpu", context=None) -> torch.Tensor:
    """Adversarial versions (float, in [0, 1]) of the selected queries only."""
    idx = torch.as_tensor(list(queries), device=evalset.q_pids.device)
    x = to_model_input(select_rows(evalset.query_images, queries), tuple(model.input_size), device)
    ctx = evalset.context() if context is None else context
    return attack(x, evalset.q_pids[idx], evalset.q_camids[idx], ctx).detach()


def ranked_lists(model: torch.nn.Module, dataset, queries: Sequence[int], *,
                 adversarial: dict[str, torch.Tensor] | None = None, defense=None, topk: int = 10,
                 device: str | torch.device = "cpu", batch_size: int = 128, evalset=None) -> RankedLists:
    """Top-k gallery lists of the selected ``queries`` (indices into the query split), clean and for
    each adversarial version in ``adversarial`` (label -> images of the selected queries, or of
    every query, float in [0, 1] at the model's input size). With a test-time ``defense`` both sides
    are ranked through it, as the defender evaluates."""
    from ..attacks.evaluate import _eval_features, prepare_evalset
    from ..data import load_images
    from ..models.defended import DefendedModel

    ev = evalset if evalset is not None else prepare_evalset(model, dataset, device, batch_size, defense=defense)
    eval_model = DefendedModel(model, defense) if defense is not None else model
    queries = [int(q) for q in queries]
    n_q = len(ev.q_pids)
    bad = [q for q in queries if not 0 <= q < n_q]
    if bad:
        raise ValueError(f"query indices {bad} out of range: the query split has {n_q} images")
    qi = torch.as_tensor(queries, device=ev.q_pids.device)
    gallery = load_images(dataset.gallery, progress=False)
    out = RankedLists(queries, ev.q_pids[qi].tolist(), gallery.images, ev.g_pids.cpu())
    size = tuple(model.input_size)
    clean = to_model_input(select_rows(ev.query_images, queries), size, device)
    versions = {CLEAN: clean}
    for label, imgs in (adversarial or {}).items():
        imgs = imgs.float() / 255 if imgs.dtype == torch.uint8 else imgs.float()
        if len(imgs) == n_q and len(queries) != n_q:
            imgs = imgs[qi.cpu()]
        if len(imgs) != len(queries):
            raise ValueError(f"adversarial set {label!r} has {len(imgs)} images; expected one per selected query "
                             f"({len(queries)}) or one per query of the split ({n_q})")
        versions[label] = to_model_input(imgs, size, device)
    for label, x in versions.items():
        qf = ev.q_feats[qi] if label == CLEAN else _eval_features(eval_model, x)
        idx, match = _topk(qf, ev.g_feats, ev.q_pids[qi], ev.q_camids[qi], ev.g_pids, ev.g_camids, topk)
        out.panels[label] = (x.cpu(), idx.cpu(), match.cpu())
    return out


def plot_ranked_lists(lists: RankedLists, path: str | os.PathLike, title: str | None = None, dpi: int = 100) -> Path:
    """One strip per (query, version): the query, then its top-k gallery images with green (true
    match) or red (false match) borders."""
    pyplot = plt()
    labels = list(lists.panels)
    k = max(p[1].shape[1] for p in lists.panels.values())
    rows = len(lists.queries) * len(labels)
    fig, axes = pyplot.subplots(rows, k + 1, figsize=(0.75 * (k + 1) + 0.6, 1.55 * rows), squeeze=False)
    r = 0
    for qn, q in enumerate(lists.queries):
        for label in labels:
            x, idx, match = lists.panels[label]
            ax = axes[r, 0]
            ax.imshow(to_hwc(x[qn]), interpolation="nearest")
            ax.set_title(f"{label}\nq{q} id {lists.q_pids[qn]}", fontsize=7)
            for j in range(k):
                ax = axes[r, j + 1]
                if j >= idx.shape[1]:
                    ax.axis("off")
                    continue
                gi = int(idx[qn, j])
                ax.imshow(to_hwc(lists.gallery_images[gi]), interpolation="nearest")
                colour = MATCH if bool(match[qn, j]) else MISMATCH
                for s in ax.spines.values():
                    s.set_edgecolor(colour)
                    s.set_linewidth(3)
                ax.set_title(f"{j + 1}", fontsize=7, color=colour)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
            r += 1
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_perturbation(clean: torch.Tensor, adversarial: torch.Tensor, path: str | os.PathLike, *, defense=None,
                      amplify: float | None = None, title: str | None = None, dpi: int = 120) -> Path:
    """The seed's Figure 6 for one or more queries ((3, H, W) or (N, 3, H, W) in [0, 1]): clean,
    adversarial, the perturbation amplified, and -- with a test-time ``defense`` such as CS -- the
    defended adversarial image and what is left of the perturbation after the defense."""
    pyplot = plt()
    clean = clean[None] if clean.ndim == 3 else clean
    adversarial = adversarial[None] if adversarial.ndim == 3 else adversarial
    clean, adversarial = clean.float().cpu(), adversarial.float().cpu()
    clean = clean / 255 if clean.max() > 1.5 else clean
    adversarial = adversarial / 255 if adversarial.max() > 1.5 else adversarial
    delta = adversarial - clean
    linf = float(delta.abs().max())
    gain = amplify if amplify is not None else (0.5 / max(linf, 1e-8))
    cols = [("clean", clean), ("adversarial", adversarial),
            (f"perturbation x{gain:.0f}\n(L-inf {linf * 255:.1f}/255)", (0.5 + gain * delta).clamp(0, 1))]
    if defense is not None:
        dc, da = defense.test_transform(clean), defense.test_transform(adversarial)
        rest = da - dc
        cols += [(f"after {defense.name}", da),
                 (f"left after {defense.name} x{gain:.0f}\n(L-inf {float(rest.abs().max()) * 255:.1f}/255)",
                  (0.5 + gain * rest).clamp(0, 1))]
    n = clean.shape[0]
    fig, axes = pyplot.subplots(n, len(cols), figsize=(1.35 * len(cols), 2.4 * n), squeeze=False)
    for i in range(n):
        for j, (name, imgs) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(to_hwc(imgs[i]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
