"""The Defense interface.

A defense has up to three sides, each optional:

* ``train_transform(image, generator) -> image``: augmentation during training (PD);
* ``fit(model, ...) -> model``: a training procedure (adversarial training, GOAT);
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

__all__ = ["Defense", "ComposedDefense", "DefendedModel"]


class Defense:
    """Base class; subclasses override the sides they have."""

    name = "defense"
    deterministic = True
    differentiable = False

    # -- sides ---------------------------------------------------------------------------------
    def train_transform(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return img

    def fit(self, model: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
        return model

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
        return type(self).fit is not Defense.fit

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

    def fit(self, model, *args, **kwargs):
        for p in self.parts:
            model = p.fit(model, *args, **kwargs)
        return model

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


class DefendedModel(nn.Module):
    """``model`` behind a test-time transform: ``forward(x) = model(transform(x))``.

    ``adaptive=False`` uses the defense's evaluation transform (what the defender runs);
    ``adaptive=True`` its attack transform (differentiable or BPDA), for the attacker's forward path.
    Attribute access falls through to the wrapped model (``input_size``, ``logits``, ...).
    """

    def __init__(self, model: nn.Module, defense: Defense, adaptive: bool = False) -> None:
        super().__init__()
        self.defense = defense  # the wrapper's own attributes first: later writes fall through to the model
        self.adaptive = adaptive
        self.model = model
        self.train(model.training)  # mirror the wrapped model's mode (a new Module starts in train mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.defense.attack_transform if self.adaptive else self.defense.test_transform
        return self.model(t(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        t = self.defense.attack_transform if self.adaptive else self.defense.test_transform
        return self.model.logits(t(x))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def __setattr__(self, name: str, value) -> None:
        # writes fall through like reads: an attribute of the wrapped model (flip_tta, switched by
        # LTA's gong_faithful) is set on it, not shadowed on the wrapper
        inner = self.__dict__.get("_modules", {}).get("model")
        if inner is not None and name not in self.__dict__ and not hasattr(type(self), name) \
                and not isinstance(value, (nn.Module, nn.Parameter)) and hasattr(inner, name):
            setattr(inner, name, value)
        else:
            super().__setattr__(name, value)
