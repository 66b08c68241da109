"""reidbench: adversarial-robustness benchmark for person re-identification.

The package is organised by concept (see ``docs/`` and ARCHITECTURE.md):

- :mod:`reidbench.registry` -- name -> class registries for attacks, defenses, models, datasets;
- :mod:`reidbench.data` -- ReID datasets (Market-1501, DukeMTMC-reID, MSMT17, CUHK03-NP) and the
  embedded synthetic default ``synthreid``;
- :mod:`reidbench.evaluation` -- distances, CMC / mAP / mINP, k-reciprocal re-ranking.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
