"""The parts of a generative (GAN-trained) attack, apart from the attack that uses them: the
networks (:mod:`.networks`), the losses (:mod:`.losses`) and the fitting loop (:mod:`.training`).
:class:`~reidbench.attacks.dmr.DMR` is assembled from them."""

from .losses import least_likely_cross_entropy, lsgan_loss, misranking_triplet_loss, ms_ssim
from .networks import MaskHead, MultiScaleDiscriminator, ResnetGenerator
from .training import fit_misranking_generator

__all__ = ["ResnetGenerator", "MultiScaleDiscriminator", "MaskHead", "ms_ssim", "misranking_triplet_loss",
           "least_likely_cross_entropy", "lsgan_loss", "fit_misranking_generator"]
