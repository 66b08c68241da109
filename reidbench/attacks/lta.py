"""LTA -- Local Transformation Attack, the seed paper's colour attack (Gong, Huang, Chen,
"Person Re-identification Method Based on Color Attack and Joint Defence", CVPR 2022)."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..data.imageops import lgt
from ..registry import ATTACKS
from .base import MetricAttack, squared_distance

__all__ = ["LTA", "LTAStar"]


@ATTACKS.register("lta", aliases=("local-transformation",), paper="Gong et al., CVPR 2022 (the seed paper)",
                  threat_model="white-box; needs only the attacked image")
class LTA(MetricAttack):
    """Local Transformation Attack: like SMA guide-free, but the reference is a freshly drawn
    *locally grayscaled* copy of the clean image at every step, so the perturbation attacks the
    colour cues and survives local colour changes.

    Objective at step n (maximised): ``||phi(x') - phi(LGT_n(x))||^2``, ``LGT_n`` a new local
    grayscale transformation (p = 1, area 2-40 %, aspect 0.3-3.3) of the clean image per sample
    and per step. MI-FGSM momentum mu = 1 with L1-normalised gradients, no random start,
    eps=5/255, alpha=1/255, 15 steps (seed Eqs. 1-6; the code enforces L-infinity, the text says L1).

    Args (besides :class:`MetricAttack`'s):
        fixed_reference: draw one LGT reference and keep it for all steps (``LTA*``, seed Table 1).
        swapped_geometry: the seed code's LGT rectangle sampler with height and width exchanged.
        quantize_reference: 8-bit round trip of the reference through PIL, as the seed's code.
        gong_faithful: all of the seed code's choices: swapped geometry, quantised references and
            the attack feature without flip-TTA (the seed attacks the non-flipped feature but
            evaluates the flipped one). JPEG-75 I/O is chosen when saving (``io="jpeg75"``).

    Threat model: white-box; needs only the attacked image.
    """

    name = "lta"
    title, order, randomised, in_all = "LTA", 20, True, True

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=15, momentum=1.0, random_start=False,
                 fixed_reference: bool = False, swapped_geometry: bool = False, quantize_reference: bool = False,
                 gong_faithful: bool = False, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, momentum=momentum, random_start=random_start, **kw)
        self.fixed_reference = fixed_reference
        self.gong_faithful = gong_faithful
        self.swapped_geometry = swapped_geometry or gong_faithful
        self.quantize_reference = quantize_reference or gong_faithful

    def prepare(self, x, pids, camids, context):
        state = {"x": x, "ref_step": None}
        if self.fixed_reference:
            state["ref"] = self._reference(x)
            state["ref_step"] = "fixed"
        return state

    def _reference(self, x):
        with torch.no_grad():
            r = lgt(x, self.draws("reference", len(x)), p=1.0, swapped_geometry=self.swapped_geometry, quantize=self.quantize_reference)
            return self.features(r)

    def loss(self, x_adv, state, step):
        if state["ref_step"] not in ("fixed", step):
            state["ref"] = self._reference(state["x"])
            state["ref_step"] = step
        return squared_distance(self.features(x_adv), state["ref"])

    def perturb(self, images, pids=None, camids=None, context=None):
        with self._seed_feature():
            return super().perturb(images, pids, camids, context)

    @contextmanager
    def _seed_feature(self):
        """gong_faithful: attack the feature without flip-TTA, as the seed's attack scripts."""
        flip = getattr(self.model, "flip_tta", None)
        if self.gong_faithful and flip is not None:
            self.model.flip_tta = False
        try:
            yield
        finally:
            if self.gong_faithful and flip is not None:
                self.model.flip_tta = flip

    def extra_hyperparameters(self):
        out = {"fixed_reference": self.fixed_reference}
        if self.gong_faithful:
            out["gong_faithful"] = True
        return out


@ATTACKS.register("lta-star", aliases=("lta*", "ltastar"), paper="Gong et al., CVPR 2022, Table 1",
                  threat_model="white-box; needs only the attacked image")
class LTAStar(LTA):
    """LTA* (Gong et al., CVPR 2022, Table 1): :class:`LTA` with one local-grayscale reference drawn
    once and reused for every step. Threat model: white-box; needs only the attacked image."""

    name = "lta-star"
    title, order, in_all = "LTA*", 21, False

    def __init__(self, model, **kw) -> None:
        kw.setdefault("fixed_reference", True)
        super().__init__(model, **kw)
