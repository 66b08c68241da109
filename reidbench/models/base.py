"""The Embedder contract: what every attack, defense and evaluation in reidbench relies on.

An :class:`Embedder` maps images in [0, 1] of shape (N, 3, H, W) at its ``input_size`` to (N, D)
features. ImageNet normalisation lives inside as buffers; the input is never modified in place. In
eval mode ``forward`` returns the *evaluation feature* (flip-TTA sum and L2 normalisation as
configured), so an attack optimises exactly what is evaluated. ``logits(x)`` gives identity logits
where a classifier exists; ``forward_train(x)`` gives what the training losses need.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import model_mode

log = logging.getLogger(__name__)

__all__ = ["Embedder", "TrainOutput", "IMAGENET_MEAN", "IMAGENET_STD", "validate_embedder", "EmbedderContractError"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrainOutput(NamedTuple):
    """``feature``: the feature the metric (triplet) loss sees; ``logits``: identity logits."""

    feature: torch.Tensor
    logits: torch.Tensor | None


class EmbedderContractError(ValueError):
    """A model does not satisfy the Embedder contract (see :func:`validate_embedder`)."""


class Embedder(nn.Module):
    """Base class of reidbench's ReID models.

    Subclasses implement :meth:`head` (normalised images -> ``(metric feature, eval feature,
    logits)``). Args:
        input_size: (H, W) the model expects; callers resize to it.
        flip_tta: evaluation feature = f(x) + f(flip(x)) (the seed's and Zheng's convention).
        normalize_feature: L2-normalise the evaluation feature (cosine retrieval).
        mean, std: input normalisation, applied inside.
    """

    arch_name = "embedder"

    def __init__(self, input_size: tuple[int, int], flip_tta: bool = True, normalize_feature: bool = True,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.input_size = tuple(int(v) for v in input_size)
        self.flip_tta = flip_tta
        self.normalize_feature = normalize_feature
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # -- to implement ---------------------------------------------------------------------------
    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Normalised images -> (metric feature, evaluation feature before TTA/L2, logits or None)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.pixel_mean) / self.pixel_std  # a new tensor: the input is never written

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation feature of images ``x`` in [0, 1]: (N, D)."""
        if self.flip_tta:
            n = x.shape[0]
            both = self.head(self.normalize(torch.cat([x, x.flip(3)], 0)))[1]
            feat = both[:n] + both[n:]
        else:
            feat = self.head(self.normalize(x))[1]
        return F.normalize(feat, dim=1) if self.normalize_feature else feat

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        metric, _, logits = self.head(self.normalize(x))
        return TrainOutput(metric, logits)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Identity logits of images ``x`` in [0, 1] (no flip-TTA)."""
        out = self.head(self.normalize(x))[2]
        if out is None:
            raise NotImplementedError(f"{type(self).__name__} has no classifier head")
        return out

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, flip_tta={self.flip_tta}, normalize_feature={self.normalize_feature}"


def validate_embedder(model: nn.Module, input_size: tuple[int, int] | None = None, batch_size: int = 2,
                      device: torch.device | str | None = None) -> int:
    """Check that ``model`` maps (N, 3, H, W) images in [0, 1] to finite (N, D) float features
    without writing to its input, and return D. Raises :class:`EmbedderContractError` saying what is
    wrong. The model's train/eval mode is restored."""
    size = input_size or getattr(model, "input_size", None)
    if size is None:
        raise EmbedderContractError("give input_size=(H, W): the model has no input_size attribute")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    x = torch.rand(batch_size, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    x_copy = x.clone()
    with model_mode(model), torch.no_grad():
        out = model(x)
    name = type(model).__name__
    if isinstance(out, (tuple, list, dict)):
        raise EmbedderContractError(
            f"{name} returned a {type(out).__name__}; an Embedder returns one (N, D) feature tensor. "
            "Wrap it (reidbench.models.adapters) or pick the feature output."
        )
    if not isinstance(out, torch.Tensor):
        raise EmbedderContractError(f"{name} returned {type(out).__name__}, not a tensor")
    if out.ndim != 2:
        raise EmbedderContractError(f"{name} returned shape {tuple(out.shape)}; expected 2-D (N, D) features")
    if out.shape[0] != batch_size:
        raise EmbedderContractError(f"{name} returned {out.shape[0]} rows for a batch of {batch_size}")
    if not out.is_floating_point():
        raise EmbedderContractError(f"{name} returned dtype {out.dtype}; expected floating-point features")
    if not torch.isfinite(out).all():
        raise EmbedderContractError(f"{name} returned NaN or inf features on random images in [0, 1]")
    if not torch.equal(x, x_copy):
        raise EmbedderContractError(
            f"{name} modified its input in place; an attack would corrupt its own iterate. Clone the input first."
        )
    return int(out.shape[1])
