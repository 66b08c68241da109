"""Defenses: the Defense interface, the seed's joint defense (PD + CS = JAD), input transforms.

``DEFENSES.get("pd")()``, ``CircuitousScaling()``, ``ProactiveDefense() + CircuitousScaling()``.
"""

from ..registry import DEFENSES, DefenseSpec, parse_defense
from .at import AT
from .goat import GOAT, GOATAttack, GOATGuides
from .base import ComposedDefense, DefendedModel, Defense
from .cs import PATTERNS, SEED_SIZES, CircuitousScaling, CircuitousScalingRandom, circuitous_scaling
from .input_transforms import JPEG, RRP, BitDepth
from .pd import (PD_CODE, PD_PAPER, ProactiveDefense, autoaugment, channel_fusion, grayscale, lgt, lht,
                 sample_rectangles, sketch)

__all__ = [
    "Defense", "ComposedDefense", "DefendedModel", "ProactiveDefense", "CircuitousScaling", "CircuitousScalingRandom",
    "circuitous_scaling", "JPEG", "BitDepth", "RRP", "grayscale", "sketch", "channel_fusion", "autoaugment", "lgt",
    "lht", "sample_rectangles", "PD_CODE", "PD_PAPER", "PATTERNS", "SEED_SIZES", "build_defense", "AT", "GOAT",
    "GOATAttack", "GOATGuides",
]


DEFENSES.compose = ComposedDefense


def build_defense(name: "str | DefenseSpec", **kwargs) -> Defense:
    """The defense registered as ``name``; ``"pd+cs"`` composes registered defenses, and each part
    may carry arguments: ``"cs(sizes=P1)"``, ``"cs+jpeg(quality=50)"`` (the registry's spec grammar,
    :func:`~reidbench.registry.parse_defense`)."""
    spec = parse_defense(name)
    if spec.is_none:
        raise ValueError(f"{name!r} names no defense; give a defense name (`reidbench list defenses`)")
    return spec.with_kwargs(**kwargs).build()
