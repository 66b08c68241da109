"""Training batches through ``torch.utils.data.DataLoader``: worker processes gather (and, for a
streamed split, decode) the rows of the next batches while the model trains on the current one, and
hand them over in pinned memory for an asynchronous copy to a GPU.

What a batch holds never depends on the loader: the engine draws every batch's indices (and every
augmentation) from its own generator in the main process, and the loader only fetches those rows
in that order -- so the weights are the same with 0, 2 or 8 workers, in memory or streamed
(``tests/train/test_loader.py``).

* :class:`StreamedImages`: a split as a sequence of image files decoded on access (nothing held in
  memory, nothing decoded before the first step) -- usable wherever decoded images are (rows,
  slices, ``len``), best with workers, which then do the JPEG decoding in parallel.
* :func:`batch_rows`: the rows of each batch of indices, in order, in the main process (``workers=0``:
  exactly the former loop, no DataLoader) or through a DataLoader with ``workers`` processes.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .base import Sample
from .images import read_image, require_files
from .transforms import select_rows

__all__ = ["StreamedImages", "batch_rows", "default_workers"]


class StreamedImages(Sequence):
    """The images of ``samples`` decoded from their files on access: ``images[i]`` a (3, H, W) uint8
    tensor, ``images[a:b]`` and ``images[[i, j]]`` lists of them. A missing or unreadable file raises
    :class:`~reidbench.data.CorruptImageError` naming it when it is reached."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        if not samples:
            raise ValueError("no samples to stream")
        require_files(samples)  # before training starts, not hours into it
        self.paths = [s.path for s in samples]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [read_image(p) for p in self.paths[i]]
        if isinstance(i, (list, tuple)) or (isinstance(i, torch.Tensor) and i.ndim == 1):
            return [read_image(self.paths[int(k)]) for k in i]
        return read_image(self.paths[int(i)])


class _Rows(Dataset):
    """A DataLoader's view of decoded (or streamed) images: one fetch per batch of indices."""

    def __init__(self, images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]

    def __getitems__(self, idx: list[int]):
        rows = select_rows(self.images, idx)
        if isinstance(rows, list) and len({tuple(r.shape) for r in rows}) == 1:
            rows = torch.stack(rows)  # a streamed split of one image size: one tensor to pin and copy
        return rows


def _as_is(rows):
    return rows


def default_workers(device: torch.device | str) -> int:
    """Loader workers when none are asked for: up to 4 beside a CUDA GPU; none elsewhere (on a CPU the
    model needs its cores, and the rows of decoded images are one gather)."""
    if torch.device(device).type != "cuda":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def batch_rows(images, batches: Sequence[Sequence[int] | torch.Tensor], *, workers: int = 0,
               pin_memory: bool = False, prefetch: int = 2) -> Iterator[torch.Tensor | list[torch.Tensor]]:
    """The rows of ``images`` for each batch of indices in ``batches``, in order: a uint8 (B, 3, H, W)
    tensor, or a list of (3, H_i, W_i) tensors for images of varying size.

    ``workers=0`` fetches in this process; ``workers > 0`` through a DataLoader whose ``workers``
    processes fetch ``prefetch`` batches each ahead; ``pin_memory`` hands them over in page-locked
    memory (for ``.to("cuda", non_blocking=True)``)."""
    if workers < 0:
        raise ValueError(f"workers must be 0 (fetch in this process) or more, not {workers}")
    batches = [[int(i) for i in (b.tolist() if isinstance(b, torch.Tensor) else b)] for b in batches]
    if workers == 0 and not pin_memory:
        return (_Rows(images).__getitems__(b) for b in batches)
    loader = DataLoader(_Rows(images), batch_sampler=batches, collate_fn=_as_is, num_workers=workers,
                        pin_memory=pin_memory, prefetch_factor=prefetch if workers else None)
    return iter(loader)
