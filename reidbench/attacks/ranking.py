"""Losses that aim at the ranking itself: a rank-1 margin and an AP-oriented loss.

SMA, LTA and ODFA move the query's feature away from where it was; M-IFGSM away from its true
matches. Neither looks at what the evaluation counts -- whether a negative overtakes the true
matches. These two losses do, and so need more of the attacker: the gallery's features and labels
(``context.gallery``, the threat model M-IFGSM already assumes). Distances are cosine distances
``1 - cos`` (the evaluation's metric); the Market-1501 junk rule is respected: gallery images of the
query's identity taken by the query's camera, and images labelled -1, are neither true matches nor
negatives. Both run APGD for 100 iterations from a random start by default -- they are the ranking
components of ``auto`` (:mod:`reidbench.attacks.auto`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import ATTACKS
from .base import AttackContext, FeatureBank, MetricAttack

__all__ = ["RankMargin", "RankAP", "ranking_masks"]

_THREAT = "white-box; needs the gallery's features and labels (to rank the query against)"


def ranking_masks(bank: FeatureBank, pids: torch.Tensor | None, camids: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive (B, G), negative (B, G))`` boolean masks of the gallery under the Market-1501 rule:
    true matches are same-identity images from another camera (any camera when camids are
    missing), negatives are other identities (distractors, pid 0, included); same-identity
    same-camera images and images labelled -1 are junk (in neither)."""
    if pids is None:
        raise ValueError("a ranking loss needs the pids of the attacked images (to know their true matches)")
    pids = pids.to(bank.features.device)
    same = bank.pids[None] == pids[:, None]
    junk_label = (bank.pids == -1)[None]
    positive = same & ~junk_label
    if camids is not None and bank.camids is not None:
        positive &= bank.camids[None] != camids.to(bank.features.device)[:, None]
    negative = ~same & ~junk_label
    return positive, negative


class _RankingAttack(MetricAttack):
    """Shared parts: the gallery bank (L2-normalised once per batch) and the masks."""

    context = "gallery"
    randomised = True  # random start

    def __init__(self, model, *, eps=5 / 255, steps=100, schedule="apgd", random_start=True, **kw) -> None:
        super().__init__(model, eps=eps, steps=steps, schedule=schedule, random_start=random_start, **kw)

    def prepare(self, x, pids, camids, context: AttackContext | None):
        if context is None or context.gallery is None:
            raise ValueError(f"{type(self).__name__} needs context=AttackContext(gallery=FeatureBank(features, pids, "
                             "camids)): the gallery it ranks the query against")
        bank = context.gallery
        positive, negative = ranking_masks(bank, pids, camids)
        return {"gallery": F.normalize(bank.features.detach(), dim=1), "positive": positive, "negative": negative}

    @staticmethod
    def distances(f: torch.Tensor, state) -> torch.Tensor:
        """Cosine distances (B, G) of the attacked features to the gallery."""
        return 1.0 - F.normalize(f, dim=1) @ state["gallery"].to(f.dtype).T


@ATTACKS.register("rank-margin", aliases=("r1-margin", "rank1-margin"),
                  paper="reidbench (a CW-style margin on the ranking; Carlini & Wagner 2017, Croce & Hein 2020)",
                  threat_model=_THREAT)
class RankMargin(_RankingAttack):
    """Rank-1 margin: the distance to the nearest true match minus the distance to the nearest
    negative, maximised. Positive once a negative ranks first (rank-1 broken); it keeps growing as
    the true matches fall further behind.

    Threat model: white-box, and the attacker holds the gallery's features, pids and camids
    (``context.gallery``). Defaults: eps 5/255, APGD, 100 iterations, random start. A query
    without a true match in the gallery has a constant loss (it is not evaluated either).
    """

    name = "rank-margin"
    title, order = "R1-margin", 70

    def loss(self, x_adv, state, step):
        d = self.distances(self.features(x_adv), state)
        inf = torch.finfo(d.dtype).max
        nearest_pos = d.masked_fill(~state["positive"], inf).min(1).values
        nearest_neg = d.masked_fill(~state["negative"], inf).min(1).values
        has = state["positive"].any(1) & state["negative"].any(1)
        return torch.where(has, nearest_pos - nearest_neg, torch.zeros_like(nearest_pos))


@ATTACKS.register("rank-ap", aliases=("ap-loss", "ap-rank"),
                  paper="reidbench (a smooth AP surrogate on the ranking)", threat_model=_THREAT)
class RankAP(_RankingAttack):
    """AP-oriented loss: every true match against the ``negatives`` nearest negatives,
    ``mean_{p, n} log sigmoid((d_p - d_n) / temperature)``, maximised. Each pair where the true match
    still ranks before the negative pulls with a gradient near 1, a pair already swapped with one
    that fades -- so the attack spends its budget on the true matches that still hold AP up.

    Threat model: white-box, and the attacker holds the gallery's features, pids and camids
    (``context.gallery``). Defaults: eps 5/255, APGD, 100 iterations, random start, 20 negatives,
    temperature 0.05 (cosine distances lie in [0, 2]).
    """

    name = "rank-ap"
    title, order = "AP-rank", 71

    def __init__(self, model, *, negatives: int = 20, temperature: float = 0.05, **kw) -> None:
        super().__init__(model, **kw)
        if negatives < 1 or temperature <= 0:
            raise ValueError(f"need negatives >= 1 and temperature > 0; got {negatives}, {temperature}")
        self.negatives = int(negatives)
        self.temperature = float(temperature)

    def loss(self, x_adv, state, step):
        d = self.distances(self.features(x_adv), state)
        inf = torch.finfo(d.dtype).max
        k = min(self.negatives, d.shape[1])
        near_neg, _ = d.masked_fill(~state["negative"], inf).topk(k, dim=1, largest=False)   # (B, K)
        neg_ok = near_neg < inf
        d_pos = d.gather(1, state["pos_index"])                                               # (B, P)
        z = (d_pos[:, :, None] - near_neg.masked_fill(~neg_ok, 0)[:, None, :]) / self.temperature  # (B, P, K)
        pair = state["pos_valid"][:, :, None] & neg_ok[:, None, :]
        terms = F.logsigmoid(z) * pair
        return terms.sum((1, 2)) / pair.sum((1, 2)).clamp(min=1)

    def prepare(self, x, pids, camids, context):
        state = super().prepare(x, pids, camids, context)
        pos = state["positive"]
        counts = pos.sum(1)
        m = max(1, int(counts.max()) if len(counts) else 1)
        state["pos_index"] = torch.sort(pos.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :m]
        state["pos_valid"] = torch.arange(m, device=pos.device)[None] < counts[:, None]
        return state

    def extra_hyperparameters(self):
        return {"negatives": self.negatives, "temperature": self.temperature}
