"""Adversarial examples on disk: uint8 ``.pt`` tensors, PNG folders, or JPEG-75 (seed-faithful).

Attacks run with ``quantize=True`` return images on the 8-bit grid, so a ``.pt`` or PNG file
evaluates to exactly the in-memory numbers. JPEG-75 is what the seed's code did implicitly (it
saved adversarial queries under their ``.jpg`` names); it re-encodes the perturbation, so the
budget no longer holds -- use it only to reproduce the seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.transforms import jpeg_roundtrip, to_uint8
from ..utils import atomic_path, atomic_torch_save, atomic_write_text

__all__ = ["IO_MODES", "JPEG75", "to_uint8", "jpeg_roundtrip", "save_adversarial", "load_adversarial"]

#: the seed's implicit I/O: adversarial images saved as JPEG-75 files and read back
JPEG75 = "jpeg75"
IO_MODES = ("memory", "pt", "png", JPEG75)


def save_adversarial(images: torch.Tensor, path: str | os.PathLike, *, fmt: str | None = None,
                     names: Sequence[str] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Save adversarial images.

    ``fmt``: ``"pt"`` (one file: uint8 tensor + metadata), ``"png"`` or ``"jpeg75"`` (a folder of
    images named after ``names`` plus ``meta.json``); by default from the path's suffix (``.pt``
    -> pt, otherwise a PNG folder)."""
    path = Path(path)
    fmt = fmt or ("pt" if path.suffix == ".pt" else "png")
    if fmt not in IO_MODES[1:]:
        raise ValueError(f"unknown format {fmt!r}; use pt, png or jpeg75")
    u8 = to_uint8(images)
    meta = dict(meta or {})
    meta["format"] = fmt
    if fmt == "pt":
        atomic_torch_save({"images": u8, "names": list(names or []), "meta": json.dumps(meta, default=str)}, path)
        return path
    path.mkdir(parents=True, exist_ok=True)
    ext = ".png" if fmt == "png" else ".jpg"
    files = []
    for i, img in enumerate(u8):
        stem = Path(names[i]).stem if names is not None else f"{i:06d}"
        target = path / f"{stem}{ext}"
        with atomic_path(target) as tmp:
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(
                tmp, format="PNG" if fmt == "png" else "JPEG", **({"quality": 75} if fmt == JPEG75 else {}))
        files.append(target.name)
    meta["files"] = files
    atomic_write_text(path / "meta.json", json.dumps(meta, indent=2, default=str) + "\n")
    return path


def load_adversarial(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    """(float images in [0, 1], metadata) from :func:`save_adversarial` output; the metadata's
    ``names`` name the queries in their saved order (a folder's: its files)."""
    path = Path(path)
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["images"].float() / 255, {**json.loads(blob["meta"]), "names": list(blob.get("names") or [])}
    meta = json.loads((path / "meta.json").read_text())
    imgs = [torch.from_numpy(np.asarray(Image.open(path / f).convert("RGB")).copy()).permute(2, 0, 1)
            for f in meta["files"]]
    return torch.stack(imgs).float() / 255, {**meta, "names": list(meta["files"])}
