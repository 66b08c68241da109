"""The Defense interface.

A defense has up to three sides, each optional:

* ``train_transform(image, generator) -> image``: augmentation during training (PD), or more
  generally ``training_hooks(...)``: what the main training runs with (GOAT's batch hook);
* ``finetune_stage(model, ...) -> FineTuneStage``: a training stage on the trained model
  (adversarial training AT, goat-ft), which the engine runs (:mod:`reidbench.training_protocol`:
  defenses and the training engine do not import each other);
* ``test_transform(x) -> x``: an input transform at inference, on query and gallery (CS, JPEG, ...).

It declares ``deterministic`` (same input -> same output) and ``differentiable`` (its test-time
transform has useful gradients), and offers :meth:`Defense.attack_transform`, the version of its
test-time transform that an adaptive attacker puts in the forward path (the transform itself when
differentiable, else a BPDA surrogate). Defenses compose: ``PD + CS`` is the seed's JAD.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..models.defended import DefendedModel  # lives with the models: attacks use it without importing defenses
from ..training_protocol import FineTuneStage, TrainingHooks, per_image

__all__ = ["Defense", "ComposedDefense", "DefendedModel"]


class Defense:
    """Base class; subclasses override the sides they have."""

    name = "defense"
    deterministic = True
    differentiable = False
    #: version of this defense's numerics (its transforms' outputs, its training stage): bump it when
    #: a change alters them; part of every matrix cell's and checkpoint's key, pinned by a golden test
    numerics = "1"

    # -- sides ---------------------------------------------------------------------------------
    def train_transform(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return img

    def batch_train_transform(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """:meth:`train_transform` of a (N, 3, H, W) float batch, with its draws image after image (so
        the same images). This default loops; a defense batches its pixel work by overriding it."""
        return per_image(self.train_transform)(images, generator)

    def training_hooks(self, images, pids: torch.Tensor, seed: int = 0) -> TrainingHooks:
        """What the main training runs with (:mod:`reidbench.training_protocol`): the
        ``train_transform`` (and its batched form) when this defense has one."""
        if not self.has_train_side:
            return TrainingHooks()
        return TrainingHooks(train_transform=self.train_transform, batch_train_transform=self.batch_train_transform)

    def finetune_stage(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                       seed: int = 0, device: str | torch.device = "cpu", progress: bool = False) -> FineTuneStage | None:
        """The fine-tuning stage this defense runs on the trained model (AT, goat-ft); None: none."""
        return None

    def test_transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def override_epochs(self, epochs: int) -> None:
        """``--epochs``: set the length of this defense's own training stage, if it has one (AT's and
        goat-ft's fine-tuning); the default has none."""

    def attack_transform(self, x: torch.Tensor) -> torch.Tensor:
        """What an adaptive attacker differentiates through: by default the test-time transform
        in the forward pass and the identity in the backward pass (BPDA)."""
        if self.differentiable:
            return self.test_transform(x)
        with torch.no_grad():
            y = self.test_transform(x)
        return x + (y - x).detach()

    # -- which sides exist ------------------------------------------------------------------------
    @property
    def has_train_side(self) -> bool:
        return type(self).train_transform is not Defense.train_transform

    @property
    def has_fit_side(self) -> bool:
        """Whether this defense fine-tunes the trained model (:meth:`finetune_stage`)."""
        return type(self).finetune_stage is not Defense.finetune_stage

    @property
    def has_test_side(self) -> bool:
        return type(self).test_transform is not Defense.test_transform

    def config(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "deterministic": self.deterministic, "differentiable": self.differentiable,
                **self.config()}

    def __add__(self, other: "Defense") -> "ComposedDefense":
        return ComposedDefense([self, other])

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg})"


class ComposedDefense(Defense):
    """Defenses applied in order (``PD + CS``): train transforms chained, test transforms chained."""

    def __init__(self, parts: list[Defense]) -> None:
        flat: list[Defense] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, ComposedDefense) else [p])
        self.parts = flat
        self.name = "+".join(p.name for p in flat)
        self.deterministic = all(p.deterministic for p in flat)
        self.differentiable = all(p.differentiable for p in flat)

    def train_transform(self, img, generator):
        for p in self.parts:
            img = p.train_transform(img, generator)
        return img

    def batch_train_transform(self, images, generator):
        """The one part with a train side batches (PD in JAD); several parts draw image after image,
        each part's draws before the next part's for every image, as :meth:`train_transform` does."""
        sides = [p for p in self.parts if p.has_train_side]
        if len(sides) == 1:
            return sides[0].batch_train_transform(images, generator)
        return super().batch_train_transform(images, generator)

    def training_hooks(self, images, pids, seed=0):
        """The parts' hooks; where one part has a train side (PD in JAD), its own transforms, as the
        engine would get them from that part alone (PD's writes into the engine's batch)."""
        parts = [p.training_hooks(images, pids, seed) for p in self.parts]
        hooks = [h.batch_hook for h in parts if h.batch_hook is not None]
        if len(hooks) > 1:
            raise ValueError(f"{self.name}: at most one part may replace the training batches")
        sides = [h for p, h in zip(self.parts, parts) if p.has_train_side]
        if len(sides) == 1:
            train, batch = sides[0].train_transform, sides[0].batch_train_transform
        elif sides:
            train, batch = self.train_transform, self.batch_train_transform
        else:
            train = batch = None
        return TrainingHooks(train_transform=train, batch_train_transform=batch,
                             batch_hook=hooks[0] if hooks else None)

    def finetune_stage(self, model, images, pids, camids=None, **kwargs):
        stages = [p for p in self.parts if p.has_fit_side]
        if len(stages) > 1:
            raise ValueError(f"{self.name}: at most one part may fine-tune the trained model "
                             f"({', '.join(p.name for p in stages)} each do)")
        return stages[0].finetune_stage(model, images, pids, camids, **kwargs) if stages else None

    def override_epochs(self, epochs):
        for p in self.parts:
            p.override_epochs(epochs)

    def test_transform(self, x):
        for p in self.parts:
            x = p.test_transform(x)
        return x

    def attack_transform(self, x):
        for p in self.parts:
            x = p.attack_transform(x)
        return x

    @property
    def has_train_side(self) -> bool:
        return any(p.has_train_side for p in self.parts)

    @property
    def has_fit_side(self) -> bool:
        return any(p.has_fit_side for p in self.parts)

    @property
    def has_test_side(self) -> bool:
        return any(p.has_test_side for p in self.parts)

    def describe(self):
        return {"name": self.name, "parts": [p.describe() for p in self.parts]}

    def __add__(self, other):
        return ComposedDefense([*self.parts, other])

    def __repr__(self):
        return " + ".join(repr(p) for p in self.parts)
