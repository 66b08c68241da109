"""Checkpoints: a state dict (``.pt``) plus a JSON sidecar (``.json``) that says how to rebuild the
model and where its weights came from. Loading never runs code from the file (``weights_only=True``)
and checks the weights' SHA-256 against the sidecar."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..utils import atomic_torch_save, atomic_write_text
from ..registry import ARCHITECTURES
from .architectures import build_architecture
from .base import Embedder

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_state", "sha256_file", "sidecar_path"]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded into the requested model (wrong architecture, class count,
    damaged file)."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def _strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel / DDP save keys as ``module.xxx``."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def save_checkpoint(model: Embedder, path: str | os.PathLike, *, arch: str, arch_kwargs: dict[str, Any],
                    num_classes: int, **meta: Any) -> dict[str, Any]:
    """Write ``path`` (state dict) and its sidecar atomically; return the sidecar dict.

    ``meta`` is recorded as given (dataset and fingerprint, recipe, seed, preset, defense, ...)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # channels-last trained: the usual layout
    atomic_torch_save(state, path)
    card = {
        "format": "reidbench-checkpoint-v1",
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": int(num_classes),
        "reidbench_version": __version__,
        "torch_version": torch.__version__,
        "weights_file": path.name,
        "sha256": sha256_file(path),
        **meta,
    }
    atomic_write_text(sidecar_path(path), json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly, with an error that says what does not fit."""
    state = _strip_module_prefix(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}), {len(unexpected)} unexpected keys "
            f"({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''}); it was saved from another "
            "architecture"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            what = "class count" if "classifier" in k else "shape"
            raise CheckpointError(
                f"{source} does not fit {type(model).__name__}: {what} differs at {k}: checkpoint "
                f"{tuple(v.shape)}, model {tuple(own[k].shape)}"
                + (f" (the checkpoint has {v.shape[0]} identities, the model {own[k].shape[0]})"
                   if what == "class count" else "")
            )
    model.load_state_dict(state, strict=True)


def read_state(path: str | os.PathLike, map_location="cpu") -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises many types on damaged files; all mean the same here
        raise CheckpointError(f"cannot read checkpoint {path}: {e}. The file is damaged or not a torch state dict.") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", arch: str | None = None,
                    verify: bool = True) -> tuple[Embedder, dict[str, Any]]:
    """Rebuild the model recorded in ``path``'s sidecar and load its weights (eval mode).

    ``arch``: the architecture the caller expects; a checkpoint of another one is an error that
    names both. ``verify``: check the SHA-256 of the weights against the sidecar."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"{path} has no sidecar {side.name}: reidbench cannot tell which architecture it holds. "
            "Build the model yourself and use reidbench.models.load_state(model, torch.load(path, weights_only=True))."
        )
    card = json.loads(side.read_text())
    if arch is not None and ARCHITECTURES.entry(card["arch"]).name != ARCHITECTURES.entry(arch).name:
        raise CheckpointError(f"{path} holds a {card['arch']!r} model, not {arch!r}")
    if verify and card.get("sha256") and sha256_file(path) != card["sha256"]:
        raise CheckpointError(
            f"{path} does not match the SHA-256 in {side.name}: the weights were changed or damaged after saving"
        )
    model = build_architecture(card["arch"], card["num_classes"], **card.get("arch_kwargs", {}))
    load_state(model, read_state(path), source=str(path))
    model.to(device).eval()
    return model, card
