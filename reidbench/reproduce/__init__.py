"""Reproduction recipes: a paper's protocol as matrix cells, printed next to the paper's numbers.

``reidbench reproduce seed-cvpr22 --data-root DIR`` (see :mod:`reidbench.reproduce.seed_cvpr22`).
"""

from .seed_cvpr22 import PAPER_CELLS, PaperCell, compare, plan_configs, render_comparison, reproduce_seed_cvpr22

#: recipe name -> (runner, one-line description)
RECIPES = {
    "seed-cvpr22": (reproduce_seed_cvpr22,
                    "Gong et al., CVPRW 2022 (the seed paper): Tables 1, 4, 5, 6 and 7 -- baseline, CF, PD, JAD, "
                    "CS resize patterns and offline AT against M-IFGSM, SMA, LTA(*), eps 5/255, 15 steps"),
}

__all__ = ["RECIPES", "PAPER_CELLS", "PaperCell", "compare", "plan_configs", "render_comparison",
           "reproduce_seed_cvpr22"]
