"""Image decoding with clear errors, and an on-disk cache of decoded uint8 tensors.

JPEG decoding dominates the start-up of every evaluation on a CPU, so each split is decoded once
and kept under ``<cache dir>/images/<key>.pt``, the key being a hash of the file list (paths, sizes
and modification times). A changed image changes the key; nothing stale is ever served.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..utils import atomic_torch_save
from .base import Sample, default_data_home

log = logging.getLogger(__name__)

__all__ = ["CorruptImageError", "read_image", "DecodedImages", "load_images"]

CACHE_FORMAT = 1


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded."""


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode one image file to an RGB uint8 tensor of shape (3, H, W).

    Raises :class:`CorruptImageError` naming the file when it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode everything now: a truncated file fails here, not later
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise CorruptImageError(f"image file {path} does not exist") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(
            f"cannot decode image {path}: {e}. Replace the file from your copy of the dataset, or "
            "skip unreadable images explicitly (skip_corrupt=True, CLI --skip-corrupt)."
        ) from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def require_files(samples: Sequence[Sample]) -> None:
    """Raise :class:`CorruptImageError` naming the first missing files of ``samples``, if any."""
    missing = [s.path for s in samples if not os.path.isfile(s.path)]
    if missing:
        raise CorruptImageError(
            f"{len(missing)} image files do not exist, e.g. {', '.join(missing[:3])}; "
            "the dataset folder changed after its file lists were read"
        )


@dataclass
class DecodedImages:
    """Decoded images of a split: ``images`` is one (N, 3, H, W) uint8 tensor when every image has
    the same size, else a list of (3, H_i, W_i) tensors; ``samples`` are the samples kept (all of
    them unless corrupt files were skipped) and ``skipped`` the paths left out."""

    images: torch.Tensor | list[torch.Tensor]
    samples: list[Sample]
    skipped: list[str]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]

    @property
    def pids(self) -> torch.Tensor:
        return torch.tensor([s.pid for s in self.samples], dtype=torch.int64)

    @property
    def camids(self) -> torch.Tensor:
        return torch.tensor([s.camid for s in self.samples], dtype=torch.int64)


def _cache_key(samples: Sequence[Sample]) -> str:
    h = hashlib.sha256(f"reidbench-images-v{CACHE_FORMAT}".encode())
    for s in samples:
        st = os.stat(s.path)
        h.update(f"\n{os.path.abspath(s.path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_images(
    samples: Sequence[Sample],
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    skip_corrupt: bool = False,
    num_workers: int | None = None,
    desc: str = "decoding images",
    progress: bool = True,
) -> DecodedImages:
    """Decode ``samples`` (in order), through the on-disk cache.

    Args:
        samples: the split to decode.
        cache_dir: cache folder (default ``$REIDBENCH_HOME/cache``); ``use_cache=False`` bypasses it.
        skip_corrupt: leave out unreadable images with a warning and a count instead of raising
            :class:`CorruptImageError`.
        num_workers: decoding threads (PIL releases the GIL while decoding).
    """
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to decode")
    require_files(samples)
    cache_file = None
    if use_cache:
        cache_file = Path(cache_dir or default_data_home() / "cache") / "images" / f"{_cache_key(samples)}.pt"
        if cache_file.is_file():
            try:
                blob = torch.load(cache_file, map_location="cpu", weights_only=True)
                if blob.get("format") == CACHE_FORMAT and blob.get("skip_corrupt") == skip_corrupt:
                    kept = [samples[i] for i in blob["kept"]]
                    log.debug("image cache hit: %s", cache_file)
                    return DecodedImages(blob["images"], kept, list(blob["skipped"]))
            except (RuntimeError, OSError, KeyError, EOFError) as e:  # a damaged cache is rebuilt
                log.warning("ignoring unreadable image cache %s (%s); decoding again", cache_file, e)

    workers = num_workers or min(8, os.cpu_count() or 1)
    decoded: list[torch.Tensor | None] = [None] * len(samples)
    errors: list[tuple[int, CorruptImageError]] = []

    def work(i: int) -> None:
        try:
            decoded[i] = read_image(samples[i].path)
        except CorruptImageError as e:
            errors.append((i, e))

    bar = tqdm(total=len(samples), desc=desc, unit="img", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, range(len(samples))):
            bar.update()
    bar.close()
    if errors and not skip_corrupt:
        errors.sort(key=lambda x: x[0])
        more = f" ({len(errors) - 1} more unreadable images)" if len(errors) > 1 else ""
        raise CorruptImageError(f"{errors[0][1]}{more}") from errors[0][1]
    skipped = [samples[i].path for i, _ in sorted(errors, key=lambda x: x[0])]
    if skipped:
        log.warning("skipped %d unreadable images (first: %s)", len(skipped), skipped[0])
    kept_idx = [i for i, t in enumerate(decoded) if t is not None]
    tensors = [decoded[i] for i in kept_idx]
    images: torch.Tensor | list[torch.Tensor]
    if len({tuple(t.shape) for t in tensors}) == 1:
        images = torch.stack(tensors)
    else:
        images = tensors
    if cache_file is not None:
        atomic_torch_save(
            {"format": CACHE_FORMAT, "skip_corrupt": skip_corrupt, "images": images, "kept": kept_idx,
             "skipped": skipped},
            cache_file,
        )
    return DecodedImages(images, [samples[i] for i in kept_idx], skipped)
