"""ODFA -- Opposite-Direction Feature Attack (Zheng et al., "Open Set Adversarial Examples",
arXiv 1809.02681; IJCV version "U-turn")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import ATTACKS
from .base import MetricAttack, squared_distance

__all__ = ["ODFA"]


@ATTACKS.register("odfa", aliases=("u-turn", "uturn"), paper="Zheng et al., arXiv 1809.02681 (U-turn)",
                  threat_model="white-box; needs only the attacked image")
class ODFA(MetricAttack):
    """Drive the query feature towards the opposite of its clean direction.

    Objective: minimise ``||phi^(x') + phi^(x)||^2`` (``phi^`` L2-normalised), i.e. maximise its
    negative -- equivalently lower ``cos(phi(x'), phi(x))``.

    Random start on by default, a deliberate deviation: at ``x' = x`` the difference
    ``phi^(x') + phi^(x) = 2 phi^(x)`` is radial and the normalisation's Jacobian removes it, so the
    exact gradient is zero there (U-turn's code starts at ``x`` and moves only through
    floating-point noise). ``random_start=False`` gives the reference behaviour. The U-turn code uses
    ``steps = min(eps + 4, 1.25 eps)`` (eps in grey levels); reidbench defaults to 15 steps so that
    every attack of the leaderboard runs the same protocol (pass ``steps`` to change it).

    On L2-normalised features (reidbench's models) this objective equals SMA's up to sign and a
    constant (``||f' + f||^2 = 2 + 2 cos`` vs ``||f' - f||^2 = 2 - 2 cos``): from the same start the
    two attacks take the same steps. They differ on unnormalised features.

    Threat model: white-box; needs only the attacked image. The sign follows the U-turn code
    (minimisation); CEA's re-implementation maximises the distance to ``-f`` (wrong sign).
    """

    name = "odfa"
    title, order, randomised, in_all = "ODFA", 50, True, True

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=15, random_start=True, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, **kw)

    def prepare(self, x, pids, camids, context):
        with torch.no_grad():
            return {"target": -F.normalize(self.features(x), dim=1)}

    def loss(self, x_adv, state, step):
        return -squared_distance(F.normalize(self.features(x_adv), dim=1), state["target"])
