"""Image operations on float images in [0, 1] that attacks and defenses share: grayscale, sketch,
channel fusion, AutoAugment, local grayscale (LGT, LTA's reference) and local homogeneous (LHT)
transformations, and the random rectangles they paste.

They sit below both :mod:`reidbench.attacks` (LTA) and :mod:`reidbench.defenses` (the proactive
defense PD composes them). Each takes (3, H, W) or (N, 3, H, W), draws its randomness from an
explicit ``torch.Generator`` (:func:`lgt` and :func:`sample_rectangles` also take one generator per
image: keyed draws, :mod:`reidbench.rng`) and returns a new tensor; :func:`grayscale`, :func:`sketch`,
:func:`lgt` and :func:`lht` also take a uint8 tensor, a PIL image or a uint8 (H, W, 3) array, as
the seed's code does, and give the result back in that kind.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..rng import uniform
from .transforms import to_uint8

__all__ = ["grayscale", "sketch", "channel_fusion", "autoaugment", "lgt", "lht", "sample_rectangles", "fusion_order",
           "fuse_channels", "autoaugment_seed", "autoaugment_seeded", "homogeneous_kind", "homogeneous",
           "bicubic_aa_weights", "resize_bicubic_each", "resize_nearest_place_each"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (x[None], True) if x.ndim == 3 else (x, False)


def _accept(x):
    """The image operations take what the seed's code takes: a float tensor in [0, 1] ((3, H, W) or
    (N, 3, H, W)), a uint8 tensor, a PIL image or a uint8 (H, W, 3) array. Returns the float tensor
    and a function that gives the result back in the input's kind."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.uint8:
            return x.float() / 255, lambda y: to_uint8(y).to(x.device)
        return x, lambda y: y
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGB"))
        return _accept(x)[0], lambda y: Image.fromarray(to_uint8(y).permute(1, 2, 0).numpy())
    if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] == 3 and x.dtype == np.uint8:
        return (torch.from_numpy(np.array(x)).permute(2, 0, 1).float() / 255,
                lambda y: to_uint8(y).permute(1, 2, 0).numpy())
    raise TypeError(f"expected an image: a float tensor in [0, 1] of shape (3, H, W) or (N, 3, H, W), a uint8 "
                    f"tensor, a PIL image or a uint8 (H, W, 3) array; got {type(x).__name__}")


def grayscale(x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
    """Luma replicated over 3 channels. ``quantize=True`` reproduces PIL's 8-bit ``convert("L")`` of
    images truncated to uint8 (as ``ToPILImage`` does)."""
    x, back = _accept(x)
    xb, single = _batched(x)
    if quantize:
        u = (xb * 255).floor().clamp(0, 255).to(torch.int64)  # ToPILImage truncates
        luma = (u[:, 0] * 19595 + u[:, 1] * 38470 + u[:, 2] * 7471 + 0x8000) >> 16
        g = luma.to(xb.dtype) / 255
    else:
        g = _LUMA[0] * xb[:, 0] + _LUMA[1] * xb[:, 1] + _LUMA[2] * xb[:, 2]
    out = g[:, None].expand(-1, 3, -1, -1).contiguous()
    return back(out[0] if single else out)


def _gaussian_kernel(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return (k / k.sum()).to(dtype)


def _reflect101(n: int, pad: int, device) -> torch.Tensor:
    """Source indices of positions -pad .. n + pad - 1 under reflect-101 (…2 1 | 0 1 2 … n-1 | n-2 …)."""
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * n - 2
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def sketch(x: torch.Tensor, ksize: int = 27, sigma: float | None = None) -> torch.Tensor:
    """Pencil sketch of the luma, as the seed's ``toSketch``: invert, Gaussian blur (27 x 27, sigma from
    OpenCV's rule ``0.3 ((k - 1) / 2 - 1) + 0.8`` = 4.4), colour-dodge ``L * 256 / (255 - blur)``
    (saturating; a zero divisor gives 0, as ``cv2.divide``), in 8-bit arithmetic. Returns the sketch
    replicated over 3 channels."""
    x, back = _accept(x)
    xb, single = _batched(x)
    sigma = 0.3 * ((ksize - 1) / 2 - 1) + 0.8 if sigma is None else sigma
    lum = torch.round(grayscale(xb, quantize=False)[:, :1] * 255)
    inv = 255 - lum
    k = _gaussian_kernel(ksize, sigma, xb.device, torch.float32)
    pad = ksize // 2
    h, w = inv.shape[-2:]
    # OpenCV's BORDER_REFLECT_101, also for images smaller than the kernel
    padded = inv.float()[..., _reflect101(h, pad, xb.device)[:, None], _reflect101(w, pad, xb.device)[None, :]]
    blur = F.conv2d(padded, k.view(1, 1, 1, -1))
    blur = torch.round(F.conv2d(blur, k.view(1, 1, -1, 1)))
    denom = 255 - blur
    dodge = torch.where(denom > 0, torch.round(lum.float() * 256 / denom.clamp(min=1)), torch.zeros_like(denom))
    out = (dodge.clamp(0, 255) / 255).to(xb.dtype).expand(-1, 3, -1, -1).contiguous()
    return back(out[0] if single else out)


def channel_fusion(x: torch.Tensor, other: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The seed's ``random_choose(R, G, B, X)``: shuffle the five channels [R, G, B, X, X] and keep the
    first three, per image. Hence 10 % of the results contain no X channel (a permutation of R, G, B),
    60 % one and 30 % two; ``other`` is the homogeneous image whose channel is X (gray or sketch)."""
    xb, single = _batched(x)
    out = fuse_channels(xb, _batched(other)[0], fusion_order(xb.shape[0], generator))
    return out[0] if single else out


def fusion_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`channel_fusion`'s draw: (N, 3) indices into [R, G, B, X, X]."""
    return torch.argsort(torch.rand(n, 5, generator=generator), dim=1)[:, :3]


def fuse_channels(x: torch.Tensor, other: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """:func:`channel_fusion` with its draw given: channels ``order`` of [R, G, B, X, X] per image."""
    pool = torch.cat([x, other[:, :1], other[:, :1]], 1)  # (N, 5, H, W)
    order = order.to(x.device)
    return pool.gather(1, order[:, :, None, None].expand(-1, -1, *x.shape[2:]))


_AUTOAUGMENT = None


def autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision's ImageNet AutoAugment policy on the 8-bit image (the seed's ``AutoAugPolicy`` is
    the same 25 sub-policies; bins and fill differ slightly). Randomness comes from ``generator``."""
    xb, single = _batched(x)
    out = autoaugment_seeded(xb, [autoaugment_seed(generator) for _ in range(len(xb))])
    return out[0] if single else out


def autoaugment_seed(generator: torch.Generator) -> int:
    """:func:`autoaugment`'s draw for one image."""
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))


def autoaugment_seeded(x: torch.Tensor, seeds) -> torch.Tensor:
    """:func:`autoaugment` of a (3, H, W) image with its draw ``seeds`` (an int), or of an (N, 3, H, W)
    batch with one draw per image (a sequence): the 8-bit conversions run once over the batch, the
    policy image by image (torchvision draws its sub-policy and magnitudes per call)."""
    global _AUTOAUGMENT
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy

    if _AUTOAUGMENT is None:
        _AUTOAUGMENT = AutoAugment(AutoAugmentPolicy.IMAGENET, fill=[128, 128, 128])
    single = x.dim() == 3
    seeds = [seeds] if single else list(seeds)
    u8 = torch.round(x * 255).to(torch.uint8)
    u8 = u8[None] if single else u8
    if len(seeds) != len(u8):
        raise ValueError(f"autoaugment_seeded: {len(u8)} images but {len(seeds)} seeds")
    with torch.random.fork_rng(devices=[]):
        # torchvision draws from the global CPU generator; seeding it alone (not torch.manual_seed, which
        # also seeds every accelerator backend) is what used to make this the PD augmentation's main cost
        out = []
        for img, seed in zip(u8, seeds):
            torch.default_generator.manual_seed(int(seed))
            out.append(_AUTOAUGMENT(img))
    y = torch.stack(out).to(x.dtype) / 255
    return y[0] if single else y


def sample_rectangles(n: int, h: int, w: int, generator: torch.Generator, sl: float = 0.02, sh: float = 0.4,
                      r1: float = 0.3, swapped_geometry: bool = False, attempts: int = 100,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W) boolean masks of one random rectangle per image (Random-Erasing sampler).

    Area fraction ~ U(sl, sh), aspect ~ U(r1, 1/r1), up to ``attempts`` tries (no rectangle if all
    fail). ``swapped_geometry`` reproduces the seed code's port of the sampler to PIL sizes, where
    height and width are exchanged (the patch is clipped at the border)."""
    area = uniform(generator, n, attempts, low=sl, high=sh) * (h * w)
    aspect = uniform(generator, n, attempts, low=r1, high=1 / r1)
    rh = torch.round(torch.sqrt(area * aspect)).long()
    rw = torch.round(torch.sqrt(area / aspect)).long()
    u1 = uniform(generator, n, attempts)
    u2 = uniform(generator, n, attempts)
    # seed code: accept if w < H and h < W; x1 in [0, W - h] (columns), y1 in [0, H - w] (rows);
    # rows y1:y1+h and columns x1:x1+w, clipped by numpy slicing
    ok = ((rw < h) & (rh < w)) if swapped_geometry else ((rh < h) & (rw < w))
    first = torch.argmax(ok.int(), 1)[:, None]
    hh, ww, a, b = (t.gather(1, first).squeeze(1) for t in (rh, rw, u1, u2))
    if swapped_geometry:
        left = torch.floor(a * (w - hh + 1).clamp(min=1)).long()
        top = torch.floor(b * (h - ww + 1).clamp(min=1)).long()
    else:
        top = torch.floor(a * (h - hh + 1)).long()
        left = torch.floor(b * (w - ww + 1)).long()
    found = ok.any(1)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    mask = ((rows >= top[:, None, None]) & (rows < (top + hh)[:, None, None])
            & (cols >= left[:, None, None]) & (cols < (left + ww)[:, None, None]) & found[:, None, None])
    return mask.to(device)


def lgt(x: torch.Tensor, generator: torch.Generator, p: float = 1.0, sl: float = 0.02, sh: float = 0.4,
        r1: float = 0.3, swapped_geometry: bool = False, quantize: bool = False) -> torch.Tensor:
    """Local grayscale transformation (Gong et al., arXiv 2101.08533): with probability ``p`` per
    image, one random rectangle is replaced by the image's grayscale. ``quantize`` reproduces the seed
    code's 8-bit round trip through PIL for the whole image."""
    x, back = _accept(x)
    xb, single = _batched(x)
    n, _, h, w = xb.shape
    mask = sample_rectangles(n, h, w, generator, sl, sh, r1, swapped_geometry, device=xb.device)
    apply = (uniform(generator, n) < p).to(xb.device)
    mask = mask & apply[:, None, None]
    base = (xb * 255).floor().clamp(0, 255) / 255 if quantize else xb
    out = torch.where(mask[:, None], grayscale(xb, quantize=quantize), base)
    return back(out[0] if single else out)


def homogeneous_kind(u: float) -> str:
    """LHT's homogeneous image for the uniform draw ``u``: gray 20 %, channel fusion with gray 20 %,
    with a sketch 20 %, AutoAugment 40 %."""
    return "gray" if u < 0.2 else "fuse_gray" if u < 0.4 else "fuse_sketch" if u < 0.6 else "aug"


def homogeneous(img: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """A homogeneous version of ``img`` of ``kind`` (:func:`homogeneous_kind`), with its own draws
    from ``generator``: grayscale, channel fusion with the gray or the sketch, AutoAugment."""
    if kind == "gray":
        return grayscale(img)
    if kind == "fuse_gray":
        return channel_fusion(img, grayscale(img), generator)
    if kind == "fuse_sketch":
        return channel_fusion(img, sketch(img), generator)
    return autoaugment(img, generator)


def _homogeneous(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return homogeneous(img, homogeneous_kind(float(torch.rand(1, generator=generator))), generator)


def lht(x: torch.Tensor, generator: torch.Generator, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
        swapped_geometry: bool = False) -> torch.Tensor:
    """Local homogeneous transformation (seed Eqs. 7-10): one random rectangle of each image is
    replaced by the same region of a homogeneous version of the image."""
    x, back = _accept(x)
    xb, single = _batched(x)
    n, _, h, w = xb.shape
    hom = torch.stack([_homogeneous(img, generator) for img in xb])
    mask = sample_rectangles(n, h, w, generator, sl, sh, r1, swapped_geometry, device=xb.device)
    out = torch.where(mask[:, None], hom, xb)
    return back(out[0] if single else out)


def _cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """The bicubic convolution kernel (``a = -0.5``: the antialiased resize's, as PIL's)."""
    t = t.abs()
    return torch.where(t < 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                       torch.where(t < 2, (((t - 5) * t + 8) * t - 4) * a, torch.zeros_like(t)))


def bicubic_aa_weights(n_in: torch.Tensor, n_out: torch.Tensor, in_len: int, out_len: int,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, out_len, in_len): row ``i`` of matrix ``k`` holds the weights with which output pixel ``i``
    of a resize of ``n_in[k]`` pixels to ``n_out[k]`` (antialiased bicubic, half-pixel centres: what
    ``F.interpolate(..., mode="bicubic", antialias=True, align_corners=False)`` computes along one
    axis, to float rounding) reads the input pixels; rows and columns past a sample's sizes are zero.
    ``n_in``, ``n_out``: (N,) integer tensors on the device the weights are wanted on."""
    dev = n_in.device
    n_in = n_in.to(dtype).view(-1, 1, 1)
    n_out = n_out.to(dtype).view(-1, 1, 1)
    scale = n_in / n_out
    i = torch.arange(out_len, device=dev, dtype=dtype).view(1, -1, 1)
    j = torch.arange(in_len, device=dev, dtype=dtype).view(1, 1, -1)
    w = _cubic((j - scale * (i + 0.5) + 0.5) / scale.clamp(min=1)) * ((j < n_in) & (i < n_out))
    total = w.sum(-1, keepdim=True)
    return w / torch.where(total == 0, torch.ones_like(total), total)


def resize_bicubic_each(x: torch.Tensor, in_hw: torch.Tensor, out_hw: torch.Tensor) -> torch.Tensor:
    """Resize image ``k`` of ``x`` (N, C, H, W), whose content is its top-left ``in_hw[k]`` (H_k, W_k),
    to ``out_hw[k]``, antialiased bicubic, all images in one batched product (differentiable): (N, C,
    max out height, max out width), each result top-left and zero elsewhere. ``in_hw``, ``out_hw``: (N, 2)
    integer tensors. Equals ``F.interpolate`` per image to float rounding (tests/defenses/test_cs.py)."""
    in_hw, out_hw = in_hw.to(x.device), out_hw.to(x.device)
    rows = bicubic_aa_weights(in_hw[:, 0], out_hw[:, 0], x.shape[-2], int(out_hw[:, 0].max()), x.dtype)
    cols = bicubic_aa_weights(in_hw[:, 1], out_hw[:, 1], x.shape[-1], int(out_hw[:, 1].max()), x.dtype)
    return rows[:, None] @ x @ cols[:, None].transpose(-1, -2)


def _nearest_source(n_in: int, n_out: torch.Tensor, offset: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the source index of each of ``length`` output positions of a nearest resize of
    ``n_in`` to ``n_out[k]`` pixels placed at ``offset[k]`` (torch's rule: floor(i * in / out) in
    float32), and whether the position is inside the placed image."""
    i = torch.arange(length, device=n_out.device).view(1, -1) - offset.view(-1, 1)
    scale = torch.tensor(float(n_in), dtype=torch.float32, device=n_out.device) / n_out.view(-1, 1).to(torch.float32)
    src = (i.to(torch.float32) * scale).floor().to(torch.int64).clamp(0, n_in - 1)
    return src, (i >= 0) & (i < n_out.view(-1, 1))


def resize_nearest_place_each(x: torch.Tensor, out_hw: torch.Tensor, top_left: torch.Tensor, canvas: tuple[int, int],
                              fill: torch.Tensor) -> torch.Tensor:
    """Resize image ``k`` of ``x`` (N, C, H, W) to ``out_hw[k]`` (nearest, as ``F.interpolate``'s
    ``mode="nearest"``, pixel for pixel) and place it at ``top_left[k]`` on a ``canvas`` of ``fill``
    (a (C,) or broadcastable colour), all images in one gather (differentiable)."""
    out_hw, top_left = out_hw.to(x.device), top_left.to(x.device)
    rows, in_rows = _nearest_source(x.shape[-2], out_hw[:, 0], top_left[:, 0], canvas[0])
    cols, in_cols = _nearest_source(x.shape[-1], out_hw[:, 1], top_left[:, 1], canvas[1])
    k = torch.arange(len(x), device=x.device).view(-1, 1, 1)
    picked = x.permute(0, 2, 3, 1)[k, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    return torch.where(inside, picked, fill.to(x.dtype).view(1, -1, 1, 1))
