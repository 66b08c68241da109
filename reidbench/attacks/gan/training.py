"""The fitting loop of the mis-ranking generator (DMR): the surrogate frozen, generator and
discriminator steps alternating, a history per epoch."""

from __future__ import annotations

import logging
import math
import time

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ...data.transforms import pk_batches, random_pad_crop_flip, select_rows, to_model_input
from ...utils import model_mode
from .losses import least_likely_cross_entropy, lsgan_loss, misranking_triplet_loss, ms_ssim
from .networks import MultiScaleDiscriminator

log = logging.getLogger(__name__)

__all__ = ["fit_misranking_generator"]


def fit_misranking_generator(attack, surrogate: nn.Module | None, images, pids, *, epochs: int | None,
                             device, progress: bool, input_size: tuple[int, int] | None):
    """Fit ``attack``'s generator (and mask head) against the frozen ``surrogate``: PK batches of
    the training images, random pad-crop-flip, the mis-ranking GAN objective
    ``L_G = L_GAN + w (log L_trip + log L_xent) + v (1 - MS-SSIM)`` with a conditional multi-scale
    discriminator. ``attack`` provides ``cfg``, ``seed``, ``perturbation`` and the networks; on return
    it holds ``fitted`` and ``fit_info``. The caller forks the RNG (this seeds the global one)."""
    surrogate = surrogate if surrogate is not None else attack.model
    if surrogate is None:
        raise ValueError(f"{attack.name} needs a surrogate model to fit on")
    attack.model = surrogate
    cfg = attack.cfg
    epochs = cfg["epochs"] if epochs is None else int(epochs)
    size = tuple(input_size or getattr(surrogate, "input_size", None) or tuple(images[0].shape[-2:]))
    pad = cfg["pad"] if cfg["pad"] is not None else max(1, size[0] // 32)
    pids_t = torch.as_tensor(pids, dtype=torch.int64)
    g = torch.Generator().manual_seed(attack.seed)
    torch.manual_seed(attack.seed)
    disc = MultiScaleDiscriminator(cfg["ndf"]).to(device)
    attack.to(device)
    gen_params = list(attack.generator_net.parameters()) + (list(attack.mask_net.parameters()) if attack.mask_net else [])
    opt_g = torch.optim.Adam(gen_params, lr=cfg["lr"], betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
    has_logits = cfg["xent"] and callable(getattr(surrogate, "logits", None))
    if cfg["xent"] and not has_logits:
        log.warning("the surrogate has no identity head (.logits): DMR trains without the adversarial CE term")
    n_batches = max(1, len(pids_t) // cfg["batch_size"])
    history, t0 = [], time.perf_counter()
    attack.generator_net.train()
    if attack.mask_net is not None:
        attack.mask_net.train()
    with model_mode(surrogate, frozen=True):  # the surrogate stays fixed: eval mode, no gradients to its weights
        for ep in range(epochs):
            batches = pk_batches(pids_t, cfg["batch_size"], cfg["num_instances"], n_batches, g)
            sums = {"G": 0.0, "D": 0.0, "trip": 0.0, "xent": 0.0, "ssim": 0.0}
            bar = tqdm(batches, desc=f"DMR epoch {ep + 1}/{epochs}", unit="batch", disable=not progress, leave=False)
            for idx in bar:
                sel = select_rows(images, idx)
                x = random_pad_crop_flip(to_model_input(sel, size, device), pad, True, g)
                y = pids_t[idx].to(device)
                x_adv = (x + attack.perturbation(x)).clamp(0, 1)
                # generator step
                feats = surrogate(x_adv)
                l_trip = misranking_triplet_loss(feats, y, cfg["margin"], cfg["self_positive"])
                l_reid = torch.log(l_trip.clamp(min=1e-4))
                l_x = torch.zeros((), device=x.device)
                if has_logits:
                    l_x = least_likely_cross_entropy(surrogate.logits(x_adv), y)
                    l_reid = l_reid + torch.log(l_x.clamp(min=1e-4))
                l_ssim = 1 - ms_ssim(x, x_adv).mean()
                l_gan = lsgan_loss(disc(x, x_adv), 1.0, cfg["gan_last_scale_only"])
                loss_g = l_gan + cfg["reid_weight"] * l_reid + cfg["ssim_weight"] * l_ssim
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                # discriminator step: real = two different clean images, fake = (clean, adversarial)
                half = len(x) // 2
                fake = lsgan_loss(disc(x, x_adv.detach()), 0.0, cfg["gan_last_scale_only"])
                real = lsgan_loss(disc(x[:half], x[half:2 * half]), 1.0, cfg["gan_last_scale_only"])
                loss_d = 0.5 * (fake + real)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                for k, v in (("G", loss_g), ("D", loss_d), ("trip", l_trip), ("xent", l_x), ("ssim", l_ssim)):
                    sums[k] += float(v.detach())
                if not math.isfinite(float(loss_g.detach())):
                    raise FloatingPointError(f"DMR generator loss became {float(loss_g.detach())} at epoch {ep + 1}; "
                                             "lower lr or check the surrogate's features")
            history.append({"epoch": ep + 1, **{k: round(v / n_batches, 5) for k, v in sums.items()},
                            "seconds": round(time.perf_counter() - t0, 2)})
            log.info("DMR epoch %d/%d: %s", ep + 1, epochs, history[-1])
    attack.generator_net.eval()
    attack.fitted = True
    attack.fit_info = {"epochs": epochs, "input_size": list(size), "train_images": len(pids_t),
                     "seconds": round(time.perf_counter() - t0, 2), "history": history,
                     "selection": "last epoch (no selection on the test set)"}
    return attack
