"""Figures from matrix records alone: robustness against the budget (eps curves) and the attack x
model heat-map of robust mAP."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..leaderboard.tables import ADAPTIVE, NO_DEFENSE, attack_title, build_leaderboard, load_records
from ..protocol import CLEAN
from .common import plt, save_figure

__all__ = ["plot_eps_curves", "plot_heatmap"]


def _row_label(model: str, defense: str) -> str:
    return model if defense == NO_DEFENSE else f"{model} + {defense}"


def plot_eps_curves(results: str | os.PathLike, path: str | os.PathLike, *, rerank: bool = False,
                    title: str | None = None, dpi: int = 110) -> Path:
    """mAP and rank-1 against eps (in /255), one line per (model row, attack, threat); eps 0 is the
    clean cell. Needs records of at least one attack at two or more budgets (``--eps`` lists)."""
    df = load_records(results)
    pre = "rr_" if rerank else ""
    att = df[(df["attack"] != CLEAN) & df["eps"].notna()]
    lines = att.groupby(["model", "defense", "attack", "threat"], sort=False)
    if not any(g["eps"].nunique() > 1 for _, g in lines):
        raise ValueError(f"the records under {results} hold each attack at one budget only: run the matrix with "
                         "several, e.g. --eps 2/255,5/255,8/255")
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(10, 4))
    for (model, defense, attack, threat), g in lines:
        clean = df[(df["model"] == model) & (df["defense"] == defense) & (df["attack"] == CLEAN)]
        pts = g.groupby("eps")[[pre + "mAP", pre + "R1"]].mean().sort_index()
        xs = [0.0] + [e * 255 for e in pts.index]
        label = f"{_row_label(model, defense)}: {attack_title(attack)}" + \
            (" adapt." if threat == ADAPTIVE else "")
        style = "--" if threat == ADAPTIVE else "-"
        for ax, metric in zip(axes, ("mAP", "R1")):
            c = float(clean[pre + metric].mean()) if len(clean) else np.nan
            ax.plot(xs, [c, *pts[pre + metric].tolist()], style, marker="o", markersize=3, label=label)
    for ax, metric in zip(axes, ("mAP", "rank-1")):
        ax.set_xlabel("eps (x/255, L-inf)")
        ax.set_ylabel(f"{metric} (%)" + (" re-ranked" if rerank else ""))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_heatmap(results: str | os.PathLike, path: str | os.PathLike, *, metric: str = "mAP", rerank: bool = False,
                 title: str | None = None, dpi: int = 110) -> Path:
    """Robust ``metric`` (mAP or R1) of every leaderboard row (model + test-time defense) under every
    attack column, clean and worst case included, as a heat-map with the numbers written in."""
    if metric not in ("mAP", "R1"):
        raise ValueError(f"metric must be 'mAP' or 'R1', got {metric!r}")
    wide, notes = build_leaderboard(load_records(results), rerank)
    titles = notes["titles"]
    values = np.array([[row.get(f"{t} {metric}", np.nan) for t in titles] for _, row in wide.iterrows()], float)
    rows = [_row_label(m, d) for m, d in zip(wide["model"], wide["defense"])]
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(1.0 + 0.85 * len(titles), 0.9 + 0.45 * len(rows)))
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(titles)), titles, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v < 55 else "black")
    fig.colorbar(im, ax=ax, label=f"{metric} (%)" + (" re-ranked" if rerank else ""))
    ax.set_title(title or f"robust {metric} by attack", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
