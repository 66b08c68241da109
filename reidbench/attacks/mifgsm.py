"""Metric FGSM / I-FGSM / MI-FGSM (Bai, Li, Yang, Xu, Tian, "Adversarial Metric Attack and Defense
for Person Re-identification", arXiv 1901.10650; TPAMI 2020)."""

from __future__ import annotations


from ..registry import ATTACKS
from .base import MetricAttack, gather_guides

__all__ = ["MFGSM", "MIFGSM", "MMIFGSM"]

_PAPER = "Bai et al., arXiv 1901.10650 (TPAMI 2020)"


@ATTACKS.register("mifgsm", aliases=("m-ifgsm", "ifgsm", "i-fgsm", "metric-ifgsm"), paper=_PAPER,
                  threat_model="white-box; needs the gallery images of the query's identity")
class MIFGSM(MetricAttack):
    """Metric I-FGSM ("M-IFGSM" in the seed's tables): push the query's feature away from the
    features of its true matches.

    Objective (maximised): ``mean_g ||phi(x') - g||^2`` over the guide features ``g`` of the query's
    identity, taken from ``context.gallery`` (a :class:`FeatureBank` of gallery features, pids and
    camids). Query side, eps=5/255, alpha=1/255, 15 steps, no random start; ``momentum=1`` gives
    metric MI-FGSM (:class:`MMIFGSM`).

    Args (besides :class:`MetricAttack`'s):
        cross_camera: use only guides from other cameras (default True: same-camera gallery images
            are junk in the Market protocol); False uses every same-identity gallery image. Needs
            the attacked images' camids; without them every same-identity guide is used.
        gong_faithful: the seed code's effective behaviour: a single guide, the last gallery image
            of the identity in file-name order (its loop restarts the attack per guide and keeps the
            last run).

    Threat model: white-box, and the attacker knows the gallery images of the query's identity --
    a strong assumption. Gallery-side attacks (Bai et al.'s default) are this class applied to
    gallery images with the query features as the guide bank.
    """

    name = "mifgsm"
    title, order, context, in_all = "M-IFGSM", 30, "gallery", True

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=15, momentum=None, cross_camera: bool = True,
                 gong_faithful: bool = False, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, momentum=momentum, **kw)
        self.cross_camera = cross_camera and not gong_faithful
        self.gong_faithful = gong_faithful

    def prepare(self, x, pids, camids, context):
        if context is None or context.gallery is None:
            raise ValueError(f"{type(self).__name__} needs context=AttackContext(gallery=FeatureBank(features, "
                             "pids, camids)): the guide features of the query's identity")
        cross = self.cross_camera and camids is not None
        guides, valid = gather_guides(context.gallery, pids, camids, cross, self.gong_faithful)
        weights = valid.float() / valid.sum(1, keepdim=True).clamp(min=1)
        return {"guides": guides.detach(), "weights": weights}

    def loss(self, x_adv, state, step):
        f = self.features(x_adv)
        d = (f[:, None] - state["guides"]).pow(2).sum(-1)
        return (d * state["weights"]).sum(1)

    def extra_hyperparameters(self):
        return {"cross_camera": self.cross_camera, "gong_faithful": self.gong_faithful}


@ATTACKS.register("mmifgsm", aliases=("m-mi-fgsm", "mi-fgsm", "m-mifgsm"), paper=_PAPER,
                  threat_model="white-box; needs the gallery images of the query's identity")
class MMIFGSM(MIFGSM):
    """Metric MI-FGSM (Bai et al., arXiv 1901.10650): :class:`MIFGSM` with momentum mu = 1 on
    L1-normalised gradients. Threat model: white-box; the attacker knows the gallery images of the
    query's identity."""

    name = "mmifgsm"
    title, order, in_all = "M-MI-FGSM", 31, False

    def __init__(self, model, *, momentum=1.0, **kw) -> None:
        super().__init__(model, momentum=momentum, **kw)


@ATTACKS.register("mfgsm", aliases=("m-fgsm", "fgsm", "metric-fgsm"), paper=_PAPER,
                  threat_model="white-box; needs the gallery images of the query's identity")
class MFGSM(MIFGSM):
    """Metric FGSM (Bai et al., arXiv 1901.10650): one step of size eps along the sign of the
    gradient of the guide objective of :class:`MIFGSM`. Threat model: white-box; the attacker
    knows the gallery images of the query's identity."""

    name = "mfgsm"
    title, order, in_all = "M-FGSM", 32, False

    def __init__(self, model, *, eps=5 / 255, steps=1, alpha=None, **kw) -> None:
        super().__init__(model, eps=eps, steps=steps, alpha=eps if alpha is None else alpha, **kw)
