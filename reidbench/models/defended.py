"""A model behind a test-time defense: what the defender evaluates and what an adaptive attacker
differentiates. It needs only the defense's ``test_transform`` and ``attack_transform``
(:class:`~reidbench.defenses.Defense`), so attacks and evaluation use it without importing the
defenses."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["DefendedModel"]


class DefendedModel(nn.Module):
    """``model`` behind a test-time transform: ``forward(x) = model(transform(x))``.

    ``adaptive=False`` uses the defense's evaluation transform (what the defender runs);
    ``adaptive=True`` its attack transform (differentiable or BPDA), for the attacker's forward path.
    Attribute access falls through to the wrapped model (``input_size``, ``logits``, ...).
    """

    def __init__(self, model: nn.Module, defense, adaptive: bool = False) -> None:
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
