"""Bridge to torchattacks: run any torchattacks attack against an Embedder's identity head.

``build_attack("ta:PGD", model, eps=8/255)`` wraps ``torchattacks.PGD`` around ``model.logits``.
ReID test identities are not classes of the training head, so the label attacked is the identity
the head predicts for the clean image (an untargeted attack on the classifier), not the test pid.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..registry import format_eps
from ..utils import model_mode
from .base import AttackContext

__all__ = ["LogitsHead", "TorchattacksAttack", "TA_PREFIX"]

TA_PREFIX = "ta:"


class LogitsHead(nn.Module):
    """``model.logits`` as a plain classifier module (what torchattacks expects)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "logits"):
            raise TypeError(f"{type(model).__name__} has no logits(x) method: torchattacks attacks need an identity head")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


class TorchattacksAttack:
    """A torchattacks attack on the identity head, with reidbench's call shape."""

    # -- registry metadata (see reidbench.registry.AttackSpec) --------------------------------------
    title = ""
    order = 90
    kind = "classifier"        # attacks the identity head, not the embedding
    context = "none"
    randomised = True          # torchattacks' attacks may draw from torch's generator (seeded here)
    in_all = False
    supports_eot = False       # torchattacks has its own EOT attack; no eot_samples / transform
    supports_quantize = False
    numerics = "1"             # the bridge's own numerics; torchattacks' version is in the provenance

    def __init__(self, model: nn.Module, attack: str, seed: int = 0, **kwargs: Any) -> None:
        import torchattacks

        cls = getattr(torchattacks, attack, None)
        if cls is None or not isinstance(cls, type):
            known = sorted(n for n in dir(torchattacks) if isinstance(getattr(torchattacks, n), type) and n[0].isupper())
            raise KeyError(f"torchattacks has no attack {attack!r}; known: {', '.join(known)}")
        self.model = model
        self.name = f"{TA_PREFIX}{attack}"
        self.head = LogitsHead(model)
        self.kwargs = kwargs
        self.seed = int(seed)
        self.attack = cls(self.head, **kwargs)

    def __call__(self, images: torch.Tensor, pids=None, camids=None, context: AttackContext | None = None) -> torch.Tensor:
        devices = [images.device] if images.device.type == "cuda" else []
        with model_mode(self.model):
            # torchattacks draws from torch's global generator: fork it so a seed repeats a run
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                with torch.no_grad():
                    labels = self.head(images).argmax(1)
                return self.attack(images, labels)

    def hyperparameters(self) -> dict[str, Any]:
        return {**self.kwargs, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={format_eps(v) if k in ('eps', 'alpha') else v}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"
