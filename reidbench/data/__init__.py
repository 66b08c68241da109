"""ReID datasets: loaders for the public benchmarks (bring your own copy) and synthreid.

``load_dataset(name, root)`` returns a :class:`ReIDDataset` with ``train``, ``query`` and
``gallery`` lists of :class:`Sample` ``(path, pid, camid)``; :func:`load_images` decodes a split to
uint8 tensors through an on-disk cache.
"""

from __future__ import annotations

import os

from ..registry import resolve_dataset
from .base import DatasetLayoutError, ReIDDataset, Sample, default_data_home
from .cuhk03np import CUHK03NP, CUHK03NPLabeled
from .dukemtmc import DukeMTMCreID
from .images import CorruptImageError, DecodedImages, load_images, read_image
from .market1501 import Market1501
from .msmt17 import MSMT17
from .synthreid import SIZES as SYNTH_SIZES
from .synthreid import SynthReID, generate_synthreid

__all__ = [
    "load_dataset", "open_dataset", "ReIDDataset", "Sample", "DatasetLayoutError", "CorruptImageError", "DecodedImages",
    "load_images", "read_image", "default_data_home", "generate_synthreid", "SYNTH_SIZES",
    "Market1501", "DukeMTMCreID", "MSMT17", "CUHK03NP", "CUHK03NPLabeled", "SynthReID",
]


def load_dataset(name: str = "synthreid", root: str | os.PathLike | None = None, **kwargs) -> ReIDDataset:
    """Load dataset ``name`` (see ``reidbench list datasets``) from ``root``.

    A synthetic dataset (``synthreid``) needs no root (it is generated on first use); every other
    dataset needs the folder holding the user's copy and raises :class:`DatasetLayoutError`
    describing what is missing when the layout does not match.
    """
    entry, variant = resolve_dataset(name)
    cls = entry.obj
    if cls.synthetic:
        if variant is not None:
            kwargs["size"] = variant  # a size given in the name (a card's ``synthreid-large``) wins
        return cls(root, **kwargs)
    if root is None:
        raise ValueError(
            f"dataset {name!r} needs --data-root (the folder holding your copy); reidbench cannot "
            "download it. synthreid is the only dataset that needs none."
        )
    return cls(root, **kwargs)


def open_dataset(name: str, root: str | os.PathLike | None = None, *, size: str = "default",
                 progress: bool = True) -> ReIDDataset:
    """What the commands call: ``size`` and ``progress`` reach a synthetic dataset (a size given
    in the name, ``synthreid-large``, wins), a real one ignores them."""
    synthetic = resolve_dataset(name)[0].obj.synthetic
    return load_dataset(name, root, **({"size": size, "progress": progress} if synthetic else {}))
