"""ReID models: the :class:`Embedder` contract, architectures, presets, adapters and checkpoints."""

from .architectures import BNNeckResNet50, FtNet, FtNetDense, SmallResNet, build_architecture
from .adapters import ModuleEmbedder, from_fastreid, from_torchreid
from .base import IMAGENET_MEAN, IMAGENET_STD, Embedder, EmbedderContractError, TrainOutput, validate_embedder
from .checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint, sha256_file
from .defended import DefendedModel
from .presets import ModelPreset, get_preset, is_synthetic

__all__ = [
    "Embedder", "TrainOutput", "validate_embedder", "EmbedderContractError", "IMAGENET_MEAN", "IMAGENET_STD",
    "FtNet", "FtNetDense", "BNNeckResNet50", "SmallResNet", "build_architecture", "ModelPreset", "get_preset",
    "is_synthetic", "ModuleEmbedder", "from_torchreid", "from_fastreid", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_state", "sha256_file", "DefendedModel",
]
