"""Small shared helpers: atomic file writes, seeding, parsing of pixel budgets."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .registry import parse_spec, split_specs  # noqa: F401  (the spec grammar lives in the registry)

__all__ = ["atomic_path", "atomic_write_text", "atomic_torch_save", "model_mode", "seed_everything", "parse_fraction",
           "state_digest", "parse_spec", "split_specs"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (atomic on
    POSIX), on error it is removed, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` written atomically, and byte-reproducible: torch names the archive's inner
    folder after the file it writes, so saving into a temporary file would put that file's random
    name into the bytes (and into the checkpoint's SHA-256, which keys every cell). The archive is
    built in memory, under torch's fixed name for streams, and then written."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


@contextmanager
def model_mode(model: torch.nn.Module, training: bool = False, frozen: bool = False) -> Iterator[torch.nn.Module]:
    """Run ``model`` in eval mode (``training=True``: train mode) and, with ``frozen``, with its
    parameters' ``requires_grad`` off; both are restored on exit, whatever happens inside."""
    was = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()] if frozen else []
    model.train(training)
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def parse_fraction(text: str | float | int, option: str | None = None) -> float:
    """``"5/255"`` -> 0.0196..., ``"0.03"`` -> 0.03; how the CLI reads pixel budgets. ``option``
    (``"--eps"``) is named in the error."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        where = f"{option}: " if option else ""
        raise ValueError(f"{where}cannot read {text!r} as a number or a fraction like 5/255"
                         + (f"; {option} takes a pixel budget in [0, 1] units, e.g. 5/255 or 0.0196" if option else "")
                         ) from None


def state_digest(model: "torch.nn.Module") -> str:
    """SHA-256 of a model's state dict (names and values, in order): its weights' identity in memory
    (the AT adversarial set's cache key, a resumed evaluation's model). Values are hashed as their raw
    bytes, so dtypes NumPy lacks (bfloat16) are hashed too."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
