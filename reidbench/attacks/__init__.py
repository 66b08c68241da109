"""Metric attacks on ReID models, with a torchattacks-like call::

    from reidbench.attacks import LTA
    adv = LTA(model, eps=5/255, steps=15)(queries)      # queries: (N, 3, H, W) in [0, 1]

Every attack is registered (``reidbench list attacks``); :func:`build_attack` builds one by name,
including any torchattacks attack on the identity head as ``"ta:<Name>"``.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..registry import ATTACKS, AttackSpec, parse_attack
from .auto import AUTO_VERSION, AutoAttack
from .base import AttackContext, FeatureBank, MetricAttack, bpda, format_eps, gather_guides, quantize_to_uint8_grid
from .bridge import TA_PREFIX, LogitsHead, TorchattacksAttack
from .dmr import DMR
from .fna import FNA, FNAPull
from .generative import GenerativeAttack, GeneratorCheckpointError
from .io import IO_MODES, jpeg_roundtrip, load_adversarial, save_adversarial
from .lta import LTA, LTAStar
from .mifgsm import MFGSM, MIFGSM, MMIFGSM
from .odfa import ODFA
from .ranking import RankAP, RankMargin
from .sma import SMA

__all__ = [
    "MetricAttack", "GenerativeAttack", "GeneratorCheckpointError", "DMR", "AttackContext", "FeatureBank", "bpda", "build_attack", "format_eps",
    "SMA", "LTA", "LTAStar", "MFGSM", "MIFGSM", "MMIFGSM", "FNA", "FNAPull", "ODFA", "RankMargin", "RankAP",
    "AutoAttack", "AUTO_VERSION",
    "TorchattacksAttack", "LogitsHead", "save_adversarial", "load_adversarial", "jpeg_roundtrip", "IO_MODES",
    "gather_guides", "quantize_to_uint8_grid",
]


def _torchattacks_factory(attack: str) -> type:
    """``ta:<attack>``: a :class:`TorchattacksAttack` subclass bound to torchattacks' ``attack``, so
    that the registry reads its metadata (title, kind) like any attack class's."""

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        TorchattacksAttack.__init__(self, model, attack, **kwargs)

    return type(f"TA_{attack}", (TorchattacksAttack,), {
        "__init__": __init__, "title": f"{TA_PREFIX}{attack}",
        "__doc__": f"torchattacks.{attack} on the model's identity head", "__module__": __name__})


ATTACKS.register_prefix(TA_PREFIX, _torchattacks_factory, paper="torchattacks (Kim, arXiv 2010.01950)")


def build_attack(name: "str | AttackSpec", model: nn.Module, **kwargs: Any):
    """The attack ``name`` (a spec: ``"mifgsm(gong_faithful=true)"``, aliases, any case) built on
    ``model``; ``"ta:PGD"`` and friends wrap a torchattacks attack around the identity head."""
    return parse_attack(name).build(model, **kwargs)
