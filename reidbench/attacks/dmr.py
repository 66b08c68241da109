"""DMR -- Deep Mis-Ranking (Wang, Wang, Li, Zhang, Lin, "Transferable, Controllable, and
Inconspicuous Adversarial Attacks on Person Re-identification With Deep Mis-Ranking", CVPR 2020).

A ResNet generator learns, against a frozen surrogate ReID model, to map a query to an L-inf bounded
perturbation that mis-ranks it; at test time every query is perturbed by one forward pass, and the
perturbations transfer to other models (the seed paper's Table 8 attacks a DenseNet with DMR
examples generated on a ResNet-50).

Losses (generator): ``L_G = L_GAN + 10 (log L_xent + log L_trip) + 0.1 (1 - MS-SSIM)``

* mis-ranking triplet: on the adversarial batch, pull every sample's furthest other-identity
  sample closer than its nearest same-identity one (margin 0.3);
* adversarial cross-entropy towards the *least likely* identity, label-smoothed over the identities
  absent from the batch (needs the surrogate's identity head; skipped without one);
* MS-SSIM between clean and adversarial images (perceptual term);
* LSGAN with a conditional multi-scale discriminator (real pair: two different clean images; fake:
  clean and its adversarial version).

Deliberate differences from the released code (each documented; the faithful variant is an option):

* the perturbation is bounded in *pixel* space and the adversarial image clamped to [0, 1] and put on
  the 8-bit grid (the code does not clip to the image range);
* the triplet's nearest positive excludes the sample itself (``self_positive=True``: the code's mask
  includes it, which makes the "push positives away" term inert);
* the GAN loss sums the three discriminator scales (``gan_last_scale_only=True``: the code's
  ``GANLoss`` effectively uses the coarsest scale only);
* no model selection on the test set (the code keeps the epoch with the worst test-set ranking):
  the last epoch is used;
* the optional "controllable" mask (``mask_pixels=tau``: only the tau top-scored pixels are
  perturbed) is scored by a small convolutional head on the clean image, not by the code's decoder
  over discriminator features; top-tau is hard in the forward pass with straight-through gradients.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from ..registry import ATTACKS
from .gan.losses import least_likely_cross_entropy, misranking_triplet_loss, ms_ssim
from .gan.networks import IMAGENET_MEAN, IMAGENET_STD, MaskHead, MultiScaleDiscriminator, ResnetGenerator
from .gan.training import fit_misranking_generator
from .generative import GenerativeAttack

log = logging.getLogger(__name__)

__all__ = ["DMR", "ResnetGenerator", "MultiScaleDiscriminator", "ms_ssim", "misranking_triplet_loss",
           "least_likely_cross_entropy"]


# ---------------------------------------------------------------------------------------- the attack
@ATTACKS.register("dmr", aliases=("deep-mis-ranking", "misranking"),
                  paper="Wang et al., CVPR 2020 (arXiv 2004.04199)",
                  threat_model="transfer / black-box: generator fitted on a surrogate, one forward pass per query")
class DMR(GenerativeAttack):
    """Deep Mis-Ranking: a generator fitted on a surrogate, then one forward pass per query.

    Args:
        model: the surrogate (a frozen ReID model mapping [0, 1] images to features) it will be fitted on.
        eps: L-inf budget in pixel units. Default 16/255, the reference code's ``--mag_in 16``.
        ngf, n_blocks: generator width and residual blocks (reference 32 and 6).
        ndf: discriminator width (reference 64).
        margin: mis-ranking triplet margin (0.3). reid_weight: 10 (2 for PCB in the reference).
        ssim_weight: 0.1. xent: use the adversarial cross-entropy when the surrogate has an identity head.
        self_positive, gan_last_scale_only: the reference code's quirks (off by default).
        mask_pixels: perturb only the top-``mask_pixels`` pixels ("controllable"; None: every pixel).
        epochs, batch_size, num_instances, lr: training (reference: 50 epochs, batch 32 = 8 x 4, Adam 2e-4,
            betas (0.5, 0.999)).
        seed: seeds initialisation and batch sampling.

    Example::

        dmr = DMR(surrogate, eps=16/255, epochs=10).fit(surrogate, train_images, train_pids)
        adv = dmr(queries)                     # then evaluate ``adv`` on any target model
        dmr.save("dmr.pt"); dmr = DMR.load("dmr.pt")
    """

    name = "dmr"
    title, order, in_all = "DMR", 60, True
    paper = "Wang et al., CVPR 2020"
    #: on the embedded synthreid (128x64 persons, CPU): half-width generator and discriminator and 3
    #: epochs (about 2.5 minutes on 2 cores); the reference configuration on real datasets
    synthetic_config = {"ngf": 16, "ndf": 32, "epochs": 3}
    real_config = {"ngf": 32, "ndf": 64, "epochs": 50}

    def __init__(self, model: nn.Module | None = None, *, eps=16 / 255, seed: int = 0, quantize: bool = True,
                 ngf: int = 32, n_blocks: int = 6, ndf: int = 64, margin: float = 0.3, reid_weight: float = 10.0,
                 ssim_weight: float = 0.1, xent: bool = True, self_positive: bool = False,
                 gan_last_scale_only: bool = False, mask_pixels: int | None = None, epochs: int = 50,
                 batch_size: int = 32, num_instances: int = 4, lr: float = 2e-4, pad: int | None = None,
                 steps: int | None = None, alpha=None) -> None:
        super().__init__(model, eps=eps, seed=seed, quantize=quantize)
        if steps is not None or alpha is not None:
            log.info("DMR ignores steps/alpha: it perturbs in one forward pass")
        self.cfg = dict(ngf=int(ngf), n_blocks=int(n_blocks), ndf=int(ndf), margin=float(margin),
                        reid_weight=float(reid_weight), ssim_weight=float(ssim_weight), xent=bool(xent),
                        self_positive=bool(self_positive), gan_last_scale_only=bool(gan_last_scale_only),
                        mask_pixels=None if mask_pixels is None else int(mask_pixels), epochs=int(epochs),
                        batch_size=int(batch_size), num_instances=int(num_instances), lr=float(lr),
                        pad=None if pad is None else int(pad))
        if self.cfg["batch_size"] % self.cfg["num_instances"] or self.cfg["batch_size"] < 2 * self.cfg["num_instances"]:
            raise ValueError("batch_size must be a multiple of num_instances covering at least two identities")
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left as it was
            torch.manual_seed(self.seed)
            self.generator_net = ResnetGenerator(self.cfg["ngf"], self.cfg["n_blocks"])
            self.mask_net = MaskHead() if self.cfg["mask_pixels"] else None
        self.register_norm()

    def register_norm(self) -> None:
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def networks(self) -> dict[str, nn.Module]:
        nets = {"generator": self.generator_net}
        if self.mask_net is not None:
            nets["mask"] = self.mask_net
        return nets

    def config(self) -> dict[str, Any]:
        return dict(self.cfg)

    # ------------------------------------------------------------------ perturbation
    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        """delta = eps-rescaled generator output (per sample and channel, scale not differentiated,
        as the reference's rescaling on ``.data``), times the mask when one is used."""
        mean, std = self._mean.to(x.device, x.dtype), self._std.to(x.device, x.dtype)
        u = self.generator_net((x - mean) / std)
        peak = u.detach().abs().amax((2, 3), keepdim=True).clamp(min=1e-12)
        delta = u * (self.eps / peak).clamp(max=1.0)
        if self.mask_net is not None:
            delta = delta * self.mask_net(x, self.cfg["mask_pixels"])
        return delta

    # ------------------------------------------------------------------ fitting
    def fit(self, surrogate: nn.Module | None, images, pids, *, epochs: int | None = None,
            device: str | torch.device = "cpu", progress: bool = True, input_size: tuple[int, int] | None = None,
            **_: Any) -> "DMR":
        """Train the generator against the frozen ``surrogate`` on training images (uint8 (N, 3, H, W)
        tensor or list) with their identity labels; PK batches, the surrogate's input size, random
        pad-crop-flip. Returns ``self``. Seeded by ``seed``; torch's global generators are left as
        they were."""
        dev = torch.device(device)
        cuda = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            return fit_misranking_generator(self, surrogate, images, pids, epochs=epochs, device=device,
                                            progress=progress, input_size=input_size)
