"""Metric attacks on ReID models, with a torchattacks-like call::

    from reidbench.attacks import LTA
    adv = LTA(model, eps=5/255, steps=15)(queries)      # queries: (N, 3, H, W) in [0, 1]

Every attack is registered (``reidbench list attacks``); :func:`build_attack` builds one by name,
including any torchattacks attack on the identity head as ``"ta:<Name>"``.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..registry import ATTACKS
from .base import AttackContext, FeatureBank, MetricAttack, bpda, format_eps, gather_guides, quantize_to_uint8_grid
from .bridge import TA_PREFIX, LogitsHead, TorchattacksAttack
from .dmr import DMR
from .fna import FNA, FNAPull
from .generative import GenerativeAttack, GeneratorCheckpointError
from .io import IO_MODES, jpeg_roundtrip, load_adversarial, save_adversarial
from .lta import LTA, LTAStar
from .mifgsm import MFGSM, MIFGSM, MMIFGSM
from .odfa import ODFA
from .sma import SMA

__all__ = [
    "MetricAttack", "GenerativeAttack", "GeneratorCheckpointError", "DMR", "AttackContext", "FeatureBank", "bpda", "build_attack", "format_eps",
    "SMA", "LTA", "LTAStar", "MFGSM", "MIFGSM", "MMIFGSM", "FNA", "FNAPull", "ODFA",
    "TorchattacksAttack", "LogitsHead", "save_adversarial", "load_adversarial", "jpeg_roundtrip", "IO_MODES",
    "gather_guides", "quantize_to_uint8_grid",
]


def _torchattacks_factory(attack: str):
    def factory(model: nn.Module, **kwargs: Any) -> TorchattacksAttack:
        return TorchattacksAttack(model, attack, **kwargs)

    factory.__doc__ = f"torchattacks.{attack} on the model's identity head"
    return factory


ATTACKS.register_prefix(TA_PREFIX, _torchattacks_factory, paper="torchattacks (Kim, arXiv 2010.01950)")


def build_attack(name: str, model: nn.Module, **kwargs: Any):
    """The attack registered as ``name`` (aliases, any case) built on ``model``; ``"ta:PGD"`` and
    friends wrap a torchattacks attack around the model's identity head."""
    return ATTACKS.get(name)(model, **kwargs)
