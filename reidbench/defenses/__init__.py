"""Defenses: the Defense interface, the seed's joint defense (PD + CS = JAD), input transforms.

``DEFENSES.get("pd")()``, ``CircuitousScaling()``, ``ProactiveDefense() + CircuitousScaling()``.
"""

from .adversarial_training import AT, GOAT, GOATAttack, GOATGuides
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


def build_defense(name: str, **kwargs) -> Defense:
    """The defense registered as ``name``; ``"pd+cs"`` composes registered defenses."""
    from ..registry import DEFENSES

    names = [n.strip() for n in name.split("+")]
    if len(names) == 1:
        return DEFENSES.get(names[0])(**kwargs)
    if kwargs:
        raise ValueError("keyword arguments apply to a single defense, not to a composition")
    return ComposedDefense([DEFENSES.get(n)() for n in names])
