"""What a training-time defense hands the training engine, declared once.

The engine (:mod:`reidbench.train`) never imports a defense and a defense never imports the engine:
both import this module. A defense built from the registry offers

* ``training_hooks(images, pids, seed) -> TrainingHooks``: what the main training runs with, a
  ``batch_train_transform`` of each batch (the proactive defense PD; with the per-image
  ``train_transform`` it must equal) and/or a ``batch_hook`` that replaces each batch (online
  adversarial training, GOAT);
* ``finetune_stage(model, images, pids, camids, *, seed, device, progress) -> FineTuneStage | None``:
  the data of a stage the engine runs on the trained model (offline AT: clean plus adversarial
  training images; ``goat-ft``: online adversarial fine-tuning). The engine runs it like any
  training, with its own training-state checkpoint, so it resumes;
* ``override_epochs(epochs)``: ``--epochs`` sets the length of that stage too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn as nn

__all__ = ["TrainTransform", "BatchTrainTransform", "per_image", "BatchHook", "TrainingHooks", "FineTuneStage", "TrainingDefense"]

#: ``(image (3, H, W) float in [0, 1], generator) -> image``, after the standard pad/crop/flip
TrainTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: ``(images (N, 3, H, W) float in [0, 1], generator) -> images``: a train transform of a whole batch,
#: on the images' device, with the draws of the per-image transform applied image after image
BatchTrainTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: ``(model, images, pids, step) -> (images, pids)``: replaces a whole batch
BatchHook = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


def per_image(transform: TrainTransform) -> BatchTrainTransform:
    """A per-image train transform as a batch one: image after image, each drawing in turn."""
    return lambda images, generator: torch.stack([transform(img, generator) for img in images])


@dataclass
class TrainingHooks:
    """What the main training runs with (None: nothing)."""

    train_transform: TrainTransform | None = None
    batch_hook: BatchHook | None = None
    batch_train_transform: BatchTrainTransform | None = None


@dataclass
class FineTuneStage:
    """A training stage on the trained model: its images (uint8) and labels, its length, an optional
    batch hook, and what it adds to the stage's ``config.json``."""

    name: str
    images: torch.Tensor | Sequence[torch.Tensor]
    pids: torch.Tensor
    epochs: int
    batch_hook: BatchHook | None = None
    config: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TrainingDefense(Protocol):
    def training_hooks(self, images, pids: torch.Tensor, seed: int = 0) -> TrainingHooks: ...

    def finetune_stage(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                       seed: int = 0, device: str | torch.device = "cpu",
                       progress: bool = False) -> FineTuneStage | None: ...

    def override_epochs(self, epochs: int) -> None: ...
