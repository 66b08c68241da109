"""The seed paper's proactive defense PD (Gong, Huang, Chen, CVPR 2022, section 3.2.1) and its pieces.

PD is a training-time augmentation that shows the model homogeneous modalities of its images --
grayscale, channel mixtures with grayscale or a sketch ("channel fusion"), AutoAugment, and a
rectangle of such a modality pasted into the colour image ("local homogeneous transformation") --
so that it stops relying on colour, the cue that colour attacks exploit.

The pieces live in :mod:`reidbench.data.imageops` (LTA uses LGT too) and are re-exported here:

* :func:`grayscale`, :func:`sketch`, :func:`channel_fusion`, :func:`autoaugment`,
* :func:`lgt` (local grayscale, also LTA's reference) and :func:`lht` (local homogeneous),
* :class:`ProactiveDefense` composes them with the seed code's probabilities (``Fuse_LFusePR``).
"""

from __future__ import annotations

import functools

import torch

from ..data.imageops import (
    _accept, autoaugment, autoaugment_seed, autoaugment_seeded, channel_fusion, fuse_channels, fusion_order, grayscale,
    homogeneous, homogeneous_kind, lgt, lht, sample_rectangles, sketch,
)
from ..registry import DEFENSES
from ..training_protocol import TrainingHooks
from .base import Defense

__all__ = ["grayscale", "sketch", "channel_fusion", "autoaugment", "lgt", "lht", "sample_rectangles",
           "ProactiveDefense", "PD_CODE", "PD_PAPER"]

PD_CODE = {"p_gray": 0.05, "p_gray_rgb": 0.01, "p_sketch_rgb": 0.01, "p_aug": 0.05, "p_lht": 0.10}
# the paper's text: augmentation 5 %, grayscale 5 %, channel fusion 5 % (split between gray and sketch), LHT 10 %
PD_PAPER = {"p_gray": 0.05, "p_gray_rgb": 0.025, "p_sketch_rgb": 0.025, "p_aug": 0.05, "p_lht": 0.10}


@DEFENSES.register("pd", aliases=("proactive", "proactive-defense"), paper="Gong et al., CVPR 2022 (seed), section 3.2.1",
                   kind="training")
class ProactiveDefense(Defense):
    """Proactive defense PD: training augmentation with homogeneous modalities (seed ``Fuse_LFusePR``).

    One uniform draw per training image chooses: full grayscale (``p_gray``), channel fusion with
    grayscale (``p_gray_rgb``) or with a sketch (``p_sketch_rgb``), ImageNet AutoAugment (``p_aug``),
    the local homogeneous transformation (``p_lht``), or nothing. Defaults are the seed code's
    (README: G=0.05, G_rgb=0.01, S_rgb=0.01, Aug=0.05, F=0.1); ``preset="paper"`` uses the paper's
    text (channel fusion 5 %). ``swapped_geometry`` uses the seed code's rectangle sampler.

    Threat model: none at test time -- the defense changes the trained weights only, so every
    white-box attack on the PD model is already adaptive.
    """

    name = "pd"
    deterministic = True
    differentiable = True

    def __init__(self, p_gray: float | None = None, p_gray_rgb: float | None = None, p_sketch_rgb: float | None = None,
                 p_aug: float | None = None, p_lht: float | None = None, preset: str = "code",
                 swapped_geometry: bool = False) -> None:
        base = {"code": PD_CODE, "paper": PD_PAPER}.get(preset)
        if base is None:
            raise ValueError(f"preset must be 'code' or 'paper', got {preset!r}")
        given = {"p_gray": p_gray, "p_gray_rgb": p_gray_rgb, "p_sketch_rgb": p_sketch_rgb, "p_aug": p_aug, "p_lht": p_lht}
        self.probs = {k: (base[k] if v is None else float(v)) for k, v in given.items()}
        if sum(self.probs.values()) > 1 + 1e-9:
            raise ValueError(f"PD probabilities sum to more than 1: {self.probs}")
        self.preset = preset
        self.swapped_geometry = swapped_geometry

    def train_transform(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        kind = self._branch(float(torch.rand(1, generator=generator)))
        if kind is None:
            return img
        if kind == "lht":
            return lht(img, generator, swapped_geometry=self.swapped_geometry)
        return homogeneous(img, kind, generator)

    def batch_train_transform(self, images: torch.Tensor, generator: torch.Generator, *,
                              inplace: bool = False) -> torch.Tensor:
        """:meth:`train_transform` of a whole (N, 3, H, W) batch (uint8 or float in [0, 1], on any
        device; returned in its dtype on its device), with the same draws from ``generator`` in the same
        order -- so the same images, bit for bit: the draws (a few scalars per image) are made image by
        image on the CPU, then each branch's pixel work runs once over its images, on the device.
        ``inplace``: a float batch is overwritten and returned (what the engine asks for through
        :meth:`training_hooks`: its batch is its own) instead of copied first."""
        x, back = _accept(images)
        n, _, h, w = x.shape
        kinds, orders, seeds, masks = [], {}, {}, {}
        for i in range(n):
            kind = self._branch(float(torch.rand(1, generator=generator)))
            local = kind == "lht"
            if local:  # LHT: the homogeneous image's own draw, its draws, then the rectangle's
                kind = homogeneous_kind(float(torch.rand(1, generator=generator)))
            self._draw_params(kind, i, generator, orders, seeds)
            if local:
                masks[i] = sample_rectangles(1, h, w, generator, swapped_geometry=self.swapped_geometry, device=x.device)[0]
            kinds.append(kind)
        out = x.clone() if x is images and not inplace else x  # changed rows written into it
        for kind in ("gray", "fuse_gray", "fuse_sketch", "aug"):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            if not idx:
                continue
            sel = x[idx]
            if kind == "gray":
                hom = grayscale(sel)
            elif kind == "aug":
                hom = autoaugment_seeded(sel, [seeds[i] for i in idx])
            else:  # sketch image by image: its rounded blur would change with the batch's convolution algorithm
                other = grayscale(sel) if kind == "fuse_gray" else torch.stack([sketch(img) for img in sel])
                hom = fuse_channels(sel, other, torch.cat([orders[i] for i in idx]))
            whole = [j for j, i in enumerate(idx) if i not in masks]
            if whole:
                out[[idx[j] for j in whole]] = hom[whole]
            for j, i in enumerate(idx):
                if i in masks:  # LHT: the rectangle only
                    out[i] = torch.where(masks[i][None], hom[j], x[i])
        return back(out)

    def training_hooks(self, images, pids: torch.Tensor, seed: int = 0) -> TrainingHooks:
        """The engine's batch is its own: PD writes its changed rows into it (no copy of the batch)."""
        return TrainingHooks(train_transform=self.train_transform,
                             batch_train_transform=functools.partial(self.batch_train_transform, inplace=True))

    def _branch(self, u: float) -> str | None:
        """Which of :meth:`train_transform`'s branches the uniform ``u`` picks (None: the image as is)."""
        t = 0.0
        for kind, key in (("gray", "p_gray"), ("fuse_gray", "p_gray_rgb"), ("fuse_sketch", "p_sketch_rgb"),
                          ("aug", "p_aug"), ("lht", "p_lht")):
            t += self.probs[key]
            if u < t:
                return kind
        return None

    @staticmethod
    def _draw_params(kind: str, i: int, generator: torch.Generator, orders: dict, seeds: dict) -> None:
        if kind in ("fuse_gray", "fuse_sketch"):
            orders[i] = fusion_order(1, generator)
        elif kind == "aug":
            seeds[i] = autoaugment_seed(generator)

    def config(self) -> dict:
        return {**self.probs, "preset": self.preset, "swapped_geometry": self.swapped_geometry}

