"""FNA -- Furthest-Negative Attack (Bouniot, Audigier, Loesch, CVPR Workshops 2020)."""

from __future__ import annotations

import torch

from .. import rng
from ..registry import ATTACKS
from .base import MetricAttack, gather_guides

__all__ = ["FNA", "FNAPull"]


@ATTACKS.register("fna", aliases=("furthest-negative",), paper="Bouniot et al., CVPRW 2020 (arXiv 2004.07618)",
                  threat_model="white-box; needs a labelled image set (the attacker's own)")
class FNA(MetricAttack):
    """Furthest-Negative Attack: push the query's feature away from every image of its identity in
    a labelled set the attacker holds, and pull it towards the centroid of the identity whose
    centroid is furthest from the clean feature.

    Objective (maximised): ``sum_p ||phi(x') - p||^2 - ||phi(x') - c*||^2`` with ``p`` the
    same-identity features of ``context.attacker_set`` and ``c* = argmax_{k != y} ||phi(x) - c_k||``
    over the identity centroids ``c_k`` of that set. eps=5/255, alpha=1/255, 15 steps, no random
    start (as CEA's code). The CLI gives the query set as the attacker's set, as the reference code
    does -- say so when reporting: it means the attacker holds other queries of the same person.

    Args (besides :class:`MetricAttack`'s):
        pull_only: only the pulling term (``FNA-pull``).
        random_pull: pull towards a random other identity's centroid instead of the furthest.
    """

    name = "fna"
    title, order, context, in_all = "FNA", 40, "attacker-set", True

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=15, pull_only: bool = False,
                 random_pull: bool = False, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, **kw)
        self.pull_only = pull_only
        self.random_pull = random_pull

    def prepare(self, x, pids, camids, context):
        if context is None or context.attacker_set is None:
            raise ValueError("FNA needs context=AttackContext(attacker_set=FeatureBank(features, pids)): a "
                             "labelled feature set the attacker holds (the CLI passes the query set)")
        bank = context.attacker_set
        with torch.no_grad():
            clean = self.features(x)
        ids, inverse = torch.unique(bank.pids, return_inverse=True)
        sums = torch.zeros(len(ids), bank.features.shape[1], device=bank.features.device).index_add_(0, inverse, bank.features)
        centroids = sums / torch.bincount(inverse, minlength=len(ids)).clamp(min=1)[:, None].to(sums.dtype)
        if pids is None:
            raise ValueError("FNA needs the pids of the attacked images")
        own = ids[None] == pids.to(ids.device)[:, None]
        if self.random_pull:
            score = rng.uniform(self.draws("pull", own.shape[0]), *own.shape).to(own.device)
        else:
            score = torch.cdist(clean.to(centroids.dtype), centroids)
        pull = centroids[score.masked_fill(own, float("-inf")).argmax(1)]
        push, valid = gather_guides(bank, pids)
        return {"pull": pull.detach(), "push": push.detach(), "valid": valid.float()}

    def loss(self, x_adv, state, step):
        f = self.features(x_adv)
        pull = (f - state["pull"]).pow(2).sum(1)
        if self.pull_only:
            return -pull
        push = ((f[:, None] - state["push"]).pow(2).sum(-1) * state["valid"]).sum(1)
        return push - pull

    def extra_hyperparameters(self):
        return {"pull_only": self.pull_only, "random_pull": self.random_pull}


@ATTACKS.register("fna-pull", aliases=("fnapull",), paper="Bouniot et al., CVPRW 2020",
                  threat_model="white-box; needs a labelled image set (the attacker's own)")
class FNAPull(FNA):
    """FNA-pull (Bouniot et al., CVPRW 2020): :class:`FNA` with only the pulling term, towards
    the centroid of the furthest identity. Threat model: white-box; the attacker holds a labelled
    image set."""

    name = "fna-pull"
    title, order, in_all = "FNA-pull", 41, False

    def __init__(self, model, **kw) -> None:
        kw.setdefault("pull_only", True)
        super().__init__(model, **kw)
