"""SMA -- Self Metric Attack (Bouniot, Audigier, Loesch, "Vulnerability of Person Re-Identification
Models to Metric Adversarial Attacks", CVPR Workshops 2020)."""

from __future__ import annotations


from ..registry import ATTACKS
from .base import MetricAttack, squared_distance

__all__ = ["SMA"]


@ATTACKS.register("sma", aliases=("self-metric",), paper="Bouniot et al., CVPRW 2020 (arXiv 2004.07618)",
                  threat_model="white-box; needs only the attacked image")
class SMA(MetricAttack):
    """Self Metric Attack: push the feature of the perturbed query away from its own clean feature.

    Objective (maximised): ``||phi(x') - phi(x)||^2`` with ``phi`` the evaluation feature (flip-TTA,
    L2-normalised for reidbench's models). At ``x' = x`` the gradient is exactly zero, so the attack
    starts from ``clamp(x + U(-eps, eps))`` (random start on by default); the reference stays the
    *clean* feature. L-infinity PGD, eps=5/255, alpha=1/255, 15 steps (the seed's protocol).

    Threat model: white-box access to the model; needs nothing but the query image.

    Example::

        atk = SMA(model, eps=5/255, steps=15)
        adv = atk(queries)            # (N, 3, H, W) in [0, 1]

    Deviations from the reference code on purpose: the seed's code clamps to [-1, 1] and U-turn's
    re-centres the ball at the noisy start; reidbench clamps to [0, 1] around the clean image.
    """

    name = "sma"
    title, order, randomised, in_all = "SMA", 10, True, True

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=15, random_start=True, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, **kw)

    def loss(self, x_adv, state, step):
        return squared_distance(self.features(x_adv), state["clean"])
