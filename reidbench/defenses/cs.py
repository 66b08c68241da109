"""Circuitous scaling CS, the seed paper's passive defense (Gong et al., CVPR 2022, section 3.2.2).

Query and gallery images are resized down, up, down and finally to the model's input size with
bicubic interpolation -- ``(110, 50) -> (220, 100) -> (110, 50) -> (256, 128)`` in the seed, whose
Market images are 128x64 -- quantising to 8 bits after every step as PIL does. The chain is a fixed
low-pass operator (up to rounding), which is why an adaptive attacker can differentiate through it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import rng
from ..data.imageops import resize_bicubic_each
from ..data.transforms import pil_per_image
from ..registry import DEFENSES
from .base import Defense

__all__ = ["circuitous_scaling", "circuitous_scaling_each", "CircuitousScaling", "CircuitousScalingRandom", "SEED_SIZES", "PATTERNS", "MARKET_NATIVE"]

SEED_SIZES = ((110, 50), (220, 100), (110, 50))
MARKET_NATIVE = (128, 64)
# seed Table 6: P1 = one resize to (110, 50), P2 = one to (220, 100); each chain ends at the final size
PATTERNS = {
    "P1": ((110, 50),),
    "P2": ((220, 100),),
    "P1P2": ((110, 50), (220, 100)),
    "P1P2P1": SEED_SIZES,
    "P2P1P2": ((220, 100), (110, 50), (220, 100)),
}


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid in the forward pass, identity in the backward pass."""
    q = torch.round(x.clamp(0, 1) * 255) / 255
    return x + (q - x).detach()


def _after_resize(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """What follows every resize of the differentiable chain: 8-bit rounding (straight-through) as
    PIL's 8-bit images do, or a clamp to [0, 1]."""
    return _ste_round(x) if quantize else x.clamp(0, 1)


def _pil_chain(im: Image.Image, sizes: Sequence[tuple[int, int]], final: tuple[int, int]) -> Image.Image:
    for h, w in (*sizes, final):
        im = im.resize((int(w), int(h)), Image.BICUBIC)
    return im


def circuitous_scaling(images, sizes: Sequence[tuple[int, int]] | str = SEED_SIZES, final: tuple[int, int] = (256, 128),
                       backend: str = "pil", quantize: bool = True):
    """Resize through ``sizes`` ((H, W) each) and then to ``final``, bicubic.

    ``backend="pil"``: chained ``PIL.Image.resize(..., BICUBIC)`` on 8-bit images, exactly as the
    seed's code; accepts a PIL image, a uint8 HWC array, a list of those, or a float (N, 3, H, W)
    tensor in [0, 1] (rounded to 8 bits first; returns a float tensor, not differentiable).
    ``backend="torch"``: ``F.interpolate(bicubic, antialias=True)`` on float tensors, differentiable,
    8-bit rounding after each step with a straight-through gradient when ``quantize``.
    """
    sizes = PATTERNS[sizes] if isinstance(sizes, str) else tuple(tuple(s) for s in sizes)
    final = tuple(final)
    if backend == "torch":
        if not isinstance(images, torch.Tensor):
            raise TypeError("the torch backend takes a float (N, 3, H, W) tensor")
        x = images
        for size in (*sizes, final):
            x = F.interpolate(x, size=tuple(int(v) for v in size), mode="bicubic", align_corners=False, antialias=True)
            x = _after_resize(x, quantize)
        return x
    if backend != "pil":
        raise ValueError(f"backend must be 'pil' or 'torch', got {backend!r}")
    if isinstance(images, Image.Image):
        return _pil_chain(images, sizes, final)
    if isinstance(images, np.ndarray):
        return np.asarray(_pil_chain(Image.fromarray(images), sizes, final))
    if isinstance(images, (list, tuple)):
        return [circuitous_scaling(im, sizes, final, backend) for im in images]
    if isinstance(images, torch.Tensor):  # 8-bit PIL images, over the CPU threads
        return pil_per_image(images, lambda im: _pil_chain(im, sizes, final))
    raise TypeError(f"cannot apply circuitous scaling to {type(images).__name__}")


def circuitous_scaling_each(x: torch.Tensor, chains: Sequence[Sequence[tuple[int, int]]], final: tuple[int, int],
                            backend: str = "torch", quantize: bool = True) -> torch.Tensor:
    """Circuitous scaling of each image of a float (N, 3, H, W) batch through its own sizes
    (``chains[k]``: image ``k``'s (H, W) sizes, as many for every image) and then to ``final``.

    ``backend="torch"``: every stage of all images in one batched product (separable antialiased
    bicubic weights per image, :func:`~reidbench.data.imageops.resize_bicubic_each`), equal to
    ``circuitous_scaling(x[k:k+1], chains[k], final, backend="torch")`` to float rounding (which may
    move a rounded pixel by one grey level), differentiable. ``backend="pil"``: the exact PIL chain
    of each image, over the CPU threads."""
    final = tuple(int(v) for v in final)
    if backend == "pil":
        return pil_per_image(x, [lambda im, c=tuple(c): _pil_chain(im, c, final) for c in chains])
    if backend != "torch":
        raise ValueError(f"backend must be 'pil' or 'torch', got {backend!r}")
    depth = {len(c) for c in chains}
    if len(depth) != 1:
        raise ValueError(f"every image's chain must have as many sizes; got lengths {sorted(depth)}")
    n, stages = len(x), depth.pop()
    cur = torch.tensor([list(x.shape[-2:])] * n)
    for k in range(stages + 1):
        nxt = torch.tensor([list(c[k]) for c in chains] if k < stages else [list(final)] * n)
        x = _after_resize(resize_bicubic_each(x, cur, nxt), quantize)
        cur = nxt
    return x


def _scale_sizes(sizes, native):
    """The seed's sizes are for Market's native 128x64; keep their ratios for another native size."""
    if tuple(native) == MARKET_NATIVE:
        return tuple(tuple(s) for s in sizes)
    return tuple((max(1, round(h * native[0] / MARKET_NATIVE[0])), max(1, round(w * native[1] / MARKET_NATIVE[1])))
                 for h, w in sizes)


@DEFENSES.register("cs", aliases=("circuitous-scaling",), paper="Gong et al., CVPR 2022 (seed), section 3.2.2",
                   kind="test-time")
class CircuitousScaling(Defense):
    """Circuitous scaling: bicubic resizes ``(110, 50) -> (220, 100) -> (110, 50) -> model input`` of
    every query and gallery image (``sizes`` may be a Table 6 pattern name: P1, P2, P1P2, P1P2P1,
    P2P1P2). Sizes are for images whose native size is ``native`` (Market's 128x64); for another
    native size they keep the seed's ratios. The final size is the input's (the model's input size).

    Evaluation uses PIL (``backend="pil"``, bit-exact with the seed's code); the adaptive attacker's
    forward path uses the differentiable torch version with straight-through 8-bit rounding.

    Threat model: the seed evaluates CS against oblivious attacks only; reidbench reports the
    adaptive (CS-aware) attack next to it.
    """

    name = "cs"
    deterministic = True
    differentiable = True

    def __init__(self, sizes: Sequence[tuple[int, int]] | str = "P1P2P1", native: tuple[int, int] = MARKET_NATIVE,
                 backend: str = "pil", quantize: bool = True) -> None:
        self.pattern = sizes if isinstance(sizes, str) else None
        base = PATTERNS[sizes] if isinstance(sizes, str) else sizes
        self.sizes = _scale_sizes(base, native)
        self.native = tuple(native)
        self.backend = backend
        self.quantize = quantize

    def test_transform(self, x: torch.Tensor) -> torch.Tensor:
        return circuitous_scaling(x, self.sizes, tuple(x.shape[-2:]), backend=self.backend, quantize=self.quantize)

    def attack_transform(self, x: torch.Tensor) -> torch.Tensor:
        return circuitous_scaling(x, self.sizes, tuple(x.shape[-2:]), backend="torch", quantize=self.quantize)

    def config(self):
        return {"sizes": [list(s) for s in self.sizes], "backend": self.backend, "quantize": self.quantize}


@DEFENSES.register("cs-r", aliases=("cs-random", "circuitous-scaling-random"),
                   paper="reidbench's randomised CS (the seed suggests randomising CS, without a specification)",
                   kind="test-time")
class CircuitousScalingRandom(CircuitousScaling):
    """CS-R: circuitous scaling whose intermediate sizes are jittered by up to ``jitter`` pixels in
    height (width following the aspect ratio, +-1 pixel), drawn afresh per image and per call --
    keyed by the image's index, the attack step and EOT sample inside reidbench's pipeline
    (:mod:`reidbench.rng`), from the defense's own generator when called by hand.

    Randomised: evaluate it against EOT attacks (``eot_samples`` > 1)."""

    name = "cs-r"
    deterministic = False

    def __init__(self, jitter: int = 10, seed: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.jitter = int(jitter)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, generator: torch.Generator) -> tuple[tuple[int, int], ...]:
        out = []
        for h, w in self.sizes:
            dh = int(torch.randint(-self.jitter, self.jitter + 1, (1,), generator=generator))
            dw = int(torch.randint(-1, 2, (1,), generator=generator))
            nh = max(2, h + dh)
            out.append((nh, max(2, round(nh * w / h) + dw)))
        return tuple(out)

    def _each(self, x, backend):
        gens = rng.sample_generators(x.shape[0], f"{self.name}:{self.seed}") or [self.generator] * x.shape[0]
        return circuitous_scaling_each(x, [self._draw(g) for g in gens], tuple(x.shape[-2:]), backend=backend,
                                       quantize=self.quantize)

    def test_transform(self, x):
        return self._each(x, self.backend)

    def attack_transform(self, x):
        return self._each(x, "torch")

    def config(self):
        return {**super().config(), "jitter": self.jitter, "seed": self.seed}
