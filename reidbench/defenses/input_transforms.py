"""Input-transform baselines: JPEG compression, bit-depth reduction, random resizing and padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.imageops import resize_nearest_place_each
from ..data.transforms import jpeg_roundtrip
from ..models.base import IMAGENET_MEAN
from .. import rng
from ..registry import DEFENSES
from .base import Defense

__all__ = ["JPEG", "BitDepth", "RRP"]


@DEFENSES.register("jpeg", aliases=("jpeg75",), paper="Dziugaite et al., arXiv 1608.00853; Guo et al., ICLR 2018",
                   kind="test-time")
class JPEG(Defense):
    """JPEG re-encoding (libjpeg with Pillow's settings, ``quality`` 75; batched on the images' device)
    of query and gallery images. Not differentiable:
    adaptive attacks use BPDA (identity backward). Note the seed's pipeline applied JPEG-75 to every
    adversarial query implicitly (it saved them as .jpg)."""

    name = "jpeg"
    deterministic = True
    differentiable = False

    def __init__(self, quality: int = 75) -> None:
        self.quality = int(quality)

    def test_transform(self, x):
        return jpeg_roundtrip(x, self.quality)

    def config(self):
        return {"quality": self.quality}


@DEFENSES.register("bitdepth", aliases=("bit-depth", "bits"), paper="Xu et al., NDSS 2018; Guo et al., ICLR 2018",
                   kind="test-time")
class BitDepth(Defense):
    """Bit-depth reduction to ``bits`` bits per channel (3 as in Athalye et al.'s reimplementation):
    ``uint8(x) >> (8 - bits) << (8 - bits)``. Not differentiable: BPDA for adaptive attacks."""

    name = "bitdepth"
    deterministic = True
    differentiable = False

    def __init__(self, bits: int = 3) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.bits = int(bits)

    def test_transform(self, x):
        shift = 8 - self.bits
        u = torch.floor(x.clamp(0, 1) * 255).to(torch.int64)
        return ((u >> shift) << shift).to(x.dtype) / 255

    def config(self):
        return {"bits": self.bits}


@DEFENSES.register("rrp", aliases=("random-resize-pad",), paper="Xie et al., Mitigating Adversarial Effects Through Randomization, ICLR 2018",
                   kind="test-time")
class RRP(Defense):
    """Random resizing and padding, adapted to ReID: an (H, W) input is resized (nearest) to a random
    height in [H, 9H/8) with the width following the 1:2 aspect, then padded at a random offset to
    (9H/8, 9W/8) with the ImageNet mean colour (zero after normalisation). The model is fully
    convolutional with global pooling, so the larger input is fine. Randomised (per image and per
    call; keyed draws inside reidbench's pipeline, :mod:`reidbench.rng`): evaluate it against EOT attacks. Differentiable almost everywhere.
    With ``mode="nearest"`` the whole batch is resized and placed in one gather on its device;
    another ``F.interpolate`` mode resizes the images of each drawn size together."""

    name = "rrp"
    deterministic = False
    differentiable = True

    def __init__(self, mode: str = "nearest", seed: int = 0) -> None:
        self.mode = mode
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _draws(self, n: int, h: int, w: int) -> torch.Tensor:
        """(n, 4): each image's resized height and width and its top-left offset on the canvas."""
        out_h, out_w = h + h // 8, w + w // 8
        rows = []
        for g in rng.sample_generators(n, f"{self.name}:{self.seed}") or [self.generator] * n:
            nh = int(torch.randint(h, out_h, (1,), generator=g))
            nw = min(out_w, max(1, round(nh * w / h)))
            top = int(torch.randint(0, out_h - nh + 1, (1,), generator=g))
            left = int(torch.randint(0, out_w - nw + 1, (1,), generator=g))
            rows.append((nh, nw, top, left))
        return torch.tensor(rows, dtype=torch.int64).view(n, 4)

    def test_transform(self, x):
        n, c, h, w = x.shape
        canvas = (h + h // 8, w + w // 8)
        fill = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)
        d = self._draws(n, h, w)
        if self.mode == "nearest":  # all images in one gather
            return resize_nearest_place_each(x, d[:, :2], d[:, 2:], canvas, fill)
        # one F.interpolate per drawn size (images of one size together: the pixels of one at a time),
        # then each placed on the canvas: the difference to the fill colour padded with zeros,
        # differentiable, fill outside
        outs: list[torch.Tensor | None] = [None] * n
        draws = d.tolist()
        for nh, nw in sorted({(a, b) for a, b, _, _ in draws}):
            rows = [i for i, (a, b, _, _) in enumerate(draws) if (a, b) == (nh, nw)]
            resized = F.interpolate(x[rows], size=(nh, nw), mode=self.mode) - fill.view(1, 3, 1, 1)
            for r, i in zip(resized, rows):
                top, left = draws[i][2:]
                outs[i] = F.pad(r, (left, canvas[1] - nw - left, top, canvas[0] - nh - top))
        return torch.stack(outs) + fill.view(1, 3, 1, 1)

    def config(self):
        return {"mode": self.mode, "seed": self.seed}
