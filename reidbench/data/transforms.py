"""Batch transforms on uint8 / float image tensors (torch, on any device), and batch samplers.

Randomness always comes from an explicit ``torch.Generator`` so that a run is reproducible and can
be resumed exactly."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F

__all__ = ["to_model_input", "select_rows", "random_pad_crop_flip", "pk_batches", "random_batches", "to_uint8",
           "jpeg_roundtrip", "jpeg_roundtrip_torchvision", "pil_per_image"]


def select_rows(images, idx):
    """Rows ``idx`` (a sequence or a 1-D index tensor) of decoded images: a uint8 (N, 3, H, W) tensor,
    or a list for images of varying size."""
    idx = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
    return images[idx] if isinstance(images, torch.Tensor) else [images[i] for i in idx]


def to_model_input(images: torch.Tensor | Sequence[torch.Tensor], size: tuple[int, int],
                   device: torch.device | str | None = None, mode: str = "bicubic") -> torch.Tensor:
    """uint8 images (a (N, 3, H, W) tensor or a list of (3, H_i, W_i)) -> float (N, 3, *size) in [0, 1].

    Images already at ``size`` are only converted; others are resized with antialiasing (the
    test transform of the reference code is a bicubic PIL resize)."""
    items = [images] if isinstance(images, torch.Tensor) and images.ndim == 3 else images
    if isinstance(items, torch.Tensor):
        x = items.to(device) if device is not None else items
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp_(0, 1)
        return x
    out = []
    for img in items:
        out.append(to_model_input(img[None], size, device, mode))
    return torch.cat(out, 0)


def random_pad_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator,
                         batch: int | None = None, start: int = 0) -> torch.Tensor:
    """The standard ReID train augmentation: zero-pad by ``pad``, random crop back to the size,
    random horizontal flip (p = 0.5), one draw per image.

    ``batch``/``start``: ``x`` holds rows ``start ...`` of a batch of ``batch`` images (a rank's shard
    under torchrun): the draws are made for the whole batch, as one process makes them, and this
    shard's are applied."""
    b, _, h, w = x.shape
    total = b if batch is None else int(batch)
    rows = slice(start, start + b)
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[rows].tolist()
        ox = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[rows].tolist()
        x = torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])
    if flip:
        f = (torch.rand(total, generator=generator)[rows] < 0.5).to(x.device)
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x


def pk_batches(pids: torch.Tensor, batch_size: int, num_instances: int, num_batches: int,
               generator: torch.Generator) -> list[torch.Tensor]:
    """Identity-balanced batches: ``batch_size // num_instances`` distinct identities, each with
    ``num_instances`` images (drawn with replacement when an identity has fewer)."""
    p = batch_size // num_instances
    uniq, inverse = torch.unique(pids, return_inverse=True)
    if len(uniq) < p:
        raise ValueError(f"a PK batch needs {p} identities but the training set has {len(uniq)}")
    members = [torch.nonzero(inverse == i).flatten() for i in range(len(uniq))]
    batches = []
    for _ in range(num_batches):
        ids = torch.randperm(len(uniq), generator=generator)[:p].tolist()
        idx = []
        for i in ids:
            m = members[i]
            if len(m) >= num_instances:
                pick = m[torch.randperm(len(m), generator=generator)[:num_instances]]
            else:
                pick = m[torch.randint(0, len(m), (num_instances,), generator=generator)]
            idx.append(pick)
        batches.append(torch.cat(idx))
    return batches


def random_batches(n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    batches = list(perm.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return batches


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).cpu()


def pil_per_image(x: torch.Tensor, fn: Callable[[Image.Image], Image.Image] | Sequence[Callable[[Image.Image], Image.Image]]
                  ) -> torch.Tensor:
    """``fn`` applied to each image of a float (N, 3, H, W) batch in [0, 1] as an 8-bit RGB PIL image
    (or ``fn[k]`` to image ``k``), over torch's number of CPU threads (Pillow's codecs and resampling
    release the GIL); the results, of one size, come back as floats in [0, 1] on ``x``'s device and
    dtype, in order. The exact Pillow paths (the seed's CS and CS-R, JPEG on CPUs) go through it."""
    u8 = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    fns = list(fn) if isinstance(fn, Sequence) else [fn] * len(u8)
    if len(fns) != len(u8):
        raise ValueError(f"{len(fns)} functions for {len(u8)} images")

    def one(k: int) -> np.ndarray:
        return np.asarray(fns[k](Image.fromarray(u8[k])).convert("RGB"))

    threads = min(len(u8), max(1, torch.get_num_threads()))
    if threads <= 1:
        out = [one(k) for k in range(len(u8))]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            out = list(pool.map(one, range(len(u8))))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype if x.is_floating_point()
                                                                  else torch.float32) / 255


def _jpeg_pillow(quality: int) -> Callable[[Image.Image], Image.Image]:
    def roundtrip(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf)

    return roundtrip


def jpeg_roundtrip(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Encode each image as JPEG (``quality``, Pillow's settings: libjpeg, 4:2:0 chroma) and decode it:
    (N, 3, H, W) floats in [0, 1] on ``x``'s device.

    On CPUs: Pillow, over the CPU threads (:func:`pil_per_image`). On GPUs: torchvision's batched
    ``encode_jpeg`` / ``decode_jpeg`` on the device (nvJPEG), so that an attack through JPEG (BPDA)
    never leaves the GPU; with Pillow's settings, torchvision's libjpeg path gives Pillow's pixels
    exactly (tests/data/test_jpeg.py) and nvJPEG's decoder may differ by a grey level."""
    if x.device.type == "cuda":
        return jpeg_roundtrip_torchvision(x, quality)
    return pil_per_image(x, _jpeg_pillow(quality)).float()


def jpeg_roundtrip_torchvision(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """:func:`jpeg_roundtrip` through torchvision's codecs on ``x``'s device (CPU: libjpeg)."""
    import warnings

    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; its codecs are what we use
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

        u = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8)
        encoded = encode_jpeg(list(u), quality=quality)
        decoded = decode_jpeg(encoded, device=u.device) if u.device.type == "cuda" else decode_jpeg(encoded)
    return torch.stack(decoded).to(x.device, torch.float32) / 255
