"""Adapters that bring models from other ReID code bases under the :class:`Embedder` contract.

* :func:`from_torchreid`: a torchreid (deep-person-reid) model -- ImageNet-normalised input, eval
  mode returns (N, D) features, train mode returns logits or ``(logits, features)``.
* :func:`from_fastreid`: a fast-reid meta-architecture -- input is a dict ``{"images": x}`` in
  [0, 255], normalised *in place* inside the model, eval mode returns features.
* :class:`ModuleEmbedder`: anything else, by saying how to feed it and what to take from it.

The adapter owns the pixel scaling and normalisation, and never hands the caller's tensor to code
that might write into it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Embedder

__all__ = ["ModuleEmbedder", "from_torchreid", "from_fastreid"]


class ModuleEmbedder(Embedder):
    """Wrap ``module`` as an Embedder.

    Args:
        module: the model.
        input_size: (H, W) it expects.
        mean, std: normalisation in [0, 1] pixel units applied before ``module`` (None: none, for
            models that normalise themselves).
        input_scale: multiply the (normalised) input by this, e.g. 255 for models expecting [0, 255].
        feed: how to call the module, ``lambda module, x: module(x)`` by default (fast-reid: a dict).
        pick_feature / pick_logits: what to take from the module's eval / train outputs.
    """

    def __init__(self, module: nn.Module, input_size=(256, 128), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 input_scale: float = 1.0, feed: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                 pick_feature: Callable[[Any], torch.Tensor] | None = None,
                 pick_logits: Callable[[Any], torch.Tensor | None] | None = None, **kw) -> None:
        self._normalise = mean is not None
        super().__init__(input_size, mean=mean if mean is not None else (0.0, 0.0, 0.0),
                         std=std if std is not None else (1.0, 1.0, 1.0), **kw)
        self.module = module
        self.input_scale = float(input_scale)
        self._feed = feed or (lambda m, x: m(x))
        self._pick_feature = pick_feature or _first_tensor
        self._pick_logits = pick_logits or (lambda out: None)

    def head(self, x: torch.Tensor):
        # x is already a fresh tensor made by normalize(); scaling makes another; clone when neither
        # happened so that in-place preprocessing inside the module cannot reach the caller's input.
        if self.input_scale != 1.0:
            x = x * self.input_scale
        elif not self._normalise:
            x = x.clone()
        out = self._feed(self.module, x)
        if self.module.training:
            logits = self._pick_logits(out)
            return self._pick_feature(out), self._pick_feature(out), logits
        f = self._pick_feature(out)
        return f, f, None

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError("run a batch through the model to learn its feature dimension")


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        for key in ("features", "feat", "embedding", "feature"):
            if key in out:
                return out[key]
    if isinstance(out, (tuple, list)):
        tensors = [o for o in out if isinstance(o, torch.Tensor) and o.ndim == 2]
        if tensors:
            return tensors[-1]
    raise TypeError(f"cannot find a (N, D) feature tensor in a model output of type {type(out).__name__}")


def from_torchreid(model: nn.Module, input_size=(256, 128), **kw) -> ModuleEmbedder:
    """Wrap a torchreid model (``torchreid.models.build_model(...)``). The evaluation feature is
    what the model returns in eval mode; flip-TTA and L2 normalisation follow ``kw``
    (defaults: on, as reidbench's own models)."""

    def logits(out):
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, (tuple, list)):
            return out[0]
        return None

    def feature(out):
        if isinstance(out, (tuple, list)) and len(out) > 1:
            return out[1]
        return out

    return ModuleEmbedder(model, input_size, pick_feature=feature, pick_logits=logits, **kw)


def from_fastreid(model: nn.Module, input_size=(256, 128), **kw) -> ModuleEmbedder:
    """Wrap a fast-reid meta-architecture: images go in as ``{"images": x * 255}`` (fast-reid
    normalises with ``PIXEL_MEAN``/``PIXEL_STD`` in [0, 255] units inside, in place), features come out
    in eval mode."""
    return ModuleEmbedder(model, input_size, mean=None, std=None, input_scale=255.0,
                          feed=lambda m, x: m({"images": x}), **kw)
