"""Reproduction recipes: a paper's protocol as matrix cells, printed next to the paper's numbers.

``reidbench reproduce seed-cvpr22 --data-root DIR`` (see :mod:`reidbench.reproduce.seed_cvpr22`).
"""

from ..registry import REPRODUCTIONS
from .seed_cvpr22 import PAPER_CELLS, PaperCell, compare, plan_configs, render_comparison, reproduce_seed_cvpr22


def __getattr__(name: str):
    if name == "RECIPES":  # the old name -> (runner, description) table, derived from the registry
        return {e.name: (e.obj, e.meta.get("description", e.summary)) for e in REPRODUCTIONS.entries()}
    raise AttributeError(name)


__all__ = ["RECIPES", "PAPER_CELLS", "PaperCell", "compare", "plan_configs", "render_comparison",
           "reproduce_seed_cvpr22"]
