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
    """The defense registered as ``name``; ``"pd+cs"`` composes registered defenses, and each part
    may carry arguments: ``"cs(sizes=P1)"``, ``"cs+jpeg(quality=50)"`` (see :func:`~reidbench.utils.parse_spec`)."""
    from ..registry import DEFENSES
    from ..utils import parse_spec

    def make(base: str, kw: dict) -> Defense:
        entry = DEFENSES.entry(base)
        try:
            return entry.obj(**kw)
        except TypeError as e:
            raise ValueError(f"defense {entry.name!r}: {e}; it accepts "
                             f"{', '.join(entry.defaults) or 'no arguments'}") from None

    parts = [parse_spec(n) for n in name.split("+")]
    if len(parts) == 1:
        return make(parts[0][0], {**parts[0][1], **kwargs})
    if kwargs:
        raise ValueError("keyword arguments apply to a single defense, not to a composition; write "
                         "them in the name, e.g. 'cs+jpeg(quality=50)'")
    return ComposedDefense([make(base, own) for base, own in parts])
