"""CUHK03-NP: CUHK03 (Li et al., CVPR 2014) with the new protocol of Zhong et al. (CVPR 2017)."""

from __future__ import annotations

import os

from ..registry import DATASETS
from .base import FolderLayoutDataset

__all__ = ["CUHK03NP", "CUHK03NPLabeled"]


@DATASETS.register(
    "cuhk03np",
    aliases=("cuhk03-np", "cuhk03np-detected"),
    paper="Zhong et al., Re-ranking Person Re-identification with k-reciprocal Encoding, CVPR 2017",
)
class CUHK03NP(FolderLayoutDataset):
    """CUHK03-NP (new protocol): 767 train ids, 700 test ids, 2 cameras.

    Layout ``cuhk03-np/{detected,labeled}/{bounding_box_train,query,bounding_box_test}/*.png``, file
    names in the Market style (``0001_c1_1.png``). Images: labeled 7,368 train + 1,400 query +
    5,328 gallery; detected 7,365 + 1,400 + 5,332. ``variant`` picks ``detected`` (default) or
    ``labeled``. ``root`` may be the variant folder, ``cuhk03-np/`` or a folder holding it.
    """

    name = "cuhk03np"
    display_name = "CUHK03-NP"
    exts = (".png", ".jpg")
    cam_range = (1, 2)
    drop_pids = ()
    variant = "detected"

    def __init__(self, root: str | os.PathLike, variant: str | None = None) -> None:
        variant = variant or self.variant
        if variant not in ("detected", "labeled"):
            raise ValueError(f"CUHK03-NP variant must be 'detected' or 'labeled', got {variant!r}")
        self.variant = variant
        self.name = f"cuhk03np-{variant}"
        self.candidates = ("", variant, f"cuhk03-np/{variant}", f"cuhk03np/{variant}", f"CUHK03-NP/{variant}")
        super().__init__(root)


@DATASETS.register(
    "cuhk03np-labeled",
    aliases=("cuhk03-np-labeled",),
    paper="Zhong et al., Re-ranking Person Re-identification with k-reciprocal Encoding, CVPR 2017",
)
class CUHK03NPLabeled(CUHK03NP):
    """CUHK03-NP, hand-labelled boxes (see :class:`CUHK03NP`)."""

    variant = "labeled"
