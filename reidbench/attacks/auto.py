"""``auto``: one fixed, parameter-free ensemble of metric attacks whose number a board reports --
reidbench's answer to AutoAttack (Croce & Hein, ICML 2020) for ReID rankings.

The configuration is fixed and versioned (:data:`AUTO_VERSION`); change it only with a new version.
``auto-v1`` runs three APGD attacks (step-size schedule, momentum 0.75, best iterate per query,
100 iterations each, random start) on every query, each with a different objective:

==========  =============================================================  =========================
component   objective (maximised)                                          what the attacker needs
==========  =============================================================  =========================
``sd``      self-distance ``||f(x') - f(x)||^2`` (SMA's)                    nothing
``margin``  rank-1 margin: nearest true match minus nearest negative       the gallery's features
``ap``      AP surrogate: every true match against the 20 nearest          the gallery's features
            negatives
==========  =============================================================  =========================

Per query, ``auto`` returns the component's image that ranks worst *as the attacker sees it*:
the lowest average precision against the gallery it holds (then rank-1 broken, then the first true
match's rank) through its own view of the model -- the bare model (white-box, oblivious) or the
model behind the defense's attack transform (adaptive; EOT draws of a randomised defense come with
the ``eot_samples`` the protocol gives). Without gallery features only ``sd`` runs.

Early stopping: a query whose rank-1 is already lost and whose AP (attacker's view) is below
:data:`AUTO_AP_FLOOR` (0.5 %) skips the remaining components -- on an undefended model most
queries stop after ``sd``. It can overstate the attacker-view mAP by at most 0.5 points.

Evaluation code (``reidbench attack``, ``reidbench matrix``) also records each component's
result, so a board can show which objective did the damage.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import rng
from ..evaluation.distance import compute_distance
from ..evaluation.rank import evaluate_rank
from ..registry import ATTACKS
from .base import AttackContext, MetricAttack, quantize_to_uint8_grid
from .ranking import RankAP, RankMargin
from .sma import SMA

__all__ = ["AutoAttack", "AUTO_VERSION", "AUTO_COMPONENTS", "AUTO_AP_FLOOR"]

#: the ensemble's configuration version: part of every record of ``auto``
AUTO_VERSION = "auto-v1"
#: an image whose rank-1 is lost and whose AP (attacker's view) is below this skips the remaining
#: components: early stopping that can overstate the ensemble's mAP by at most this much (0.5 points)
AUTO_AP_FLOOR = 0.005
#: ``(component name, attack class, needs the gallery)`` in run order
AUTO_COMPONENTS: tuple[tuple[str, type[MetricAttack], bool], ...] = (
    ("sd", SMA, False),
    ("margin", RankMargin, True),
    ("ap", RankAP, True),
)


@ATTACKS.register("auto", aliases=("aa", "autoattack", "auto-reid"),
                  paper="reidbench's parameter-free ensemble after AutoAttack (Croce & Hein, ICML 2020)",
                  threat_model="white-box; needs the gallery's features and labels for its ranking components "
                               "(without them, its self-distance component only)")
class AutoAttack(MetricAttack):
    """The ``auto`` ensemble (version auto-v1): APGD with the self-distance, rank-1 margin and
    AP losses, 100 iterations each, random start; per query the worst image as the attacker sees it.

    Args:
        model: ``nn.Module`` mapping images in [0, 1] to features.
        eps: L-infinity budget (default 5/255).
        steps: iterations per component (default 100; the unconverged check runs 4x).
        restarts: APGD restarts per component (default 1).
        transform, eot_samples: a test-time defense in the attacker's forward path and EOT draws
            through it (given by the protocol for adaptive attacks on randomised defenses).
        quantize: every component's images on the 8-bit grid before the choice.
        seed: keys every random draw.

    Threat model: white-box; the ranking components need ``context.gallery`` (features, pids,
    camids), as M-IFGSM does.
    """

    name = "auto"
    title, order, context, randomised, in_all = "auto", 5, "gallery", True, True
    version = AUTO_VERSION

    def __init__(self, model, *, eps=5 / 255, steps: int = 100, restarts: int = 1, seed: int = 0, transform=None,
                 eot_samples: int = 1, quantize: bool = False, **kw) -> None:
        if kw:
            raise TypeError(f"auto has a fixed configuration ({AUTO_VERSION}): {', '.join(sorted(kw))} cannot be set")
        super().__init__(model, eps=eps, steps=steps, seed=seed, transform=transform, eot_samples=eot_samples,
                         quantize=quantize, schedule="apgd", restarts=restarts, random_start=True)
        self.components: dict[str, MetricAttack] = {
            name: cls(model, eps=self.eps, steps=self.steps, restarts=self.restarts, seed=self.seed,
                      transform=transform, eot_samples=self.eot_samples, schedule="apgd", random_start=True)
            for name, cls, _ in AUTO_COMPONENTS}

    def runnable(self, context: AttackContext | None) -> list[str]:
        """The components this context allows (all with gallery features, else ``sd`` only)."""
        has_gallery = context is not None and context.gallery is not None
        return [name for name, _, needs in AUTO_COMPONENTS if has_gallery or not needs]

    def perturb(self, images, pids=None, camids=None, context=None) -> torch.Tensor:
        return self.perturb_components(images, pids, camids, context)[0]

    def perturb_components(self, images, pids=None, camids=None, context: AttackContext | None = None
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(chosen images, {component: its images})``. Components run in order; per image the
        ensemble keeps the one that ranks worst in the attacker's view. An image already broken --
        rank-1 lost and AP below :data:`AUTO_AP_FLOOR` in the attacker's view -- skips the remaining
        components, which then carry the ensemble's image for it."""
        x, pids, camids = self.check_inputs(images, pids, camids)
        n = len(x)
        self.last_diagnostics = {}
        outs: dict[str, torch.Tensor] = {}
        best = x.clone()
        best_keys: list[tuple] = [(float("inf"),)] * n
        choice = torch.zeros(n, dtype=torch.int64)
        active = list(range(n))
        with rng.batch_scope(n) as batch:
            ids = batch.indices
            for c, name in enumerate(self.runnable(context)):
                images_c = best.clone()
                if active:
                    sel = torch.tensor(active, device=x.device)
                    sub = (x[sel], None if pids is None else pids[sel], None if camids is None else camids[sel])
                    atk = self.components[name]
                    with rng.scope(indices=[ids[i] for i in active]):
                        adv = atk(*sub, context)
                        if self.quantize:
                            adv = quantize_to_uint8_grid(adv, sub[0], self.eps)
                        with self._attack_mode(), rng.scope(step=f"select:{name}"):
                            keys = self.rank_keys(sub[0], adv, sub[1], sub[2], context)
                    if c == 0 and "zero_grad" in atk.last_diagnostics:
                        self.last_diagnostics["zero_grad"] = atk.last_diagnostics["zero_grad"]
                    images_c[sel] = adv
                    for j, i in enumerate(active):
                        if keys[j] < best_keys[i]:
                            best_keys[i], choice[i] = keys[j], c
                            best[i] = adv[j]
                    active = [i for i in active if not self.broken(best_keys[i])]
                outs[name] = images_c
        self.last_diagnostics["choice"] = choice
        return best.to(images.dtype), {k: v.to(images.dtype) for k, v in outs.items()}

    @torch.no_grad()
    def objective(self, images, x_adv, pids=None, camids=None, context=None, step: int = 0) -> torch.Tensor:
        """What the ensemble lowers, as a per-image value to maximise: minus the AP against the
        context's gallery in the attacker's view (the self-distance without a gallery)."""
        x, pids, camids = self.check_inputs(images, pids, camids)
        with self._attack_mode(), rng.batch_scope(len(x)), rng.scope(step="objective"):
            keys = self.rank_keys(x, x_adv.to(x.dtype), pids, camids, context)
        return torch.tensor([-k[0] for k in keys], dtype=x.dtype)

    @staticmethod
    def broken(key: tuple) -> bool:
        """Whether an image with this attacker-view key needs no further component: rank-1 lost and
        AP below :data:`AUTO_AP_FLOOR` (keys without a gallery never are)."""
        return len(key) == 3 and not key[1] and key[0] < AUTO_AP_FLOOR

    @torch.no_grad()
    def rank_keys(self, x: torch.Tensor, adv: torch.Tensor, pids, camids, context) -> list[tuple]:
        """Per image, how well it still ranks in the attacker's view (lower = worse for the model):
        ``(AP, rank-1 kept, -rank of the first true match)`` against the context's gallery through
        the attacker's model; without a gallery, ``(-self-distance,)``."""
        f = self.features(adv)
        if context is None or context.gallery is None or pids is None:
            return [(-float(v),) for v in (f - self.features(x)).pow(2).sum(1)]
        bank = context.gallery
        dist = compute_distance(f, bank.features.to(f.dtype), "cosine")
        known = camids is not None and bank.camids is not None
        res = evaluate_rank(dist, pids, bank.pids, camids if known else torch.full_like(pids, -1),
                            bank.camids if known else torch.full_like(bank.pids, -2))
        ap = torch.as_tensor(res["ap_per_query"], dtype=torch.float64).nan_to_num(1.0).tolist()
        return [(a, int(r) == 0, -int(r)) for a, r in zip(ap, res["first_match_rank"])]

    def hyperparameters(self) -> dict[str, Any]:
        hp = {"version": AUTO_VERSION, "eps": self.eps, "steps": self.steps, "restarts": self.restarts,
              "seed": self.seed, "components": [n for n, _, _ in AUTO_COMPONENTS]}
        if self.transform is not None:
            hp["transform"] = getattr(self.transform, "__name__", type(self.transform).__name__)
            hp["eot_samples"] = self.eot_samples
        if self.quantize:
            hp["quantize"] = True
        return hp
