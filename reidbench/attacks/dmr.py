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
import math
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm
from tqdm.auto import tqdm

from ..registry import ATTACKS
from .generative import GenerativeAttack

log = logging.getLogger(__name__)

__all__ = ["DMR", "ResnetGenerator", "MultiScaleDiscriminator", "ms_ssim", "misranking_triplet_loss",
           "least_likely_cross_entropy"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------- networks
def _sn(conv: nn.Module, use: bool) -> nn.Module:
    return spectral_norm(conv) if use else conv


class _ResBlock(nn.Module):
    def __init__(self, ch: int, sn: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), _sn(nn.Conv2d(ch, ch, 3, bias=False), sn), nn.BatchNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), _sn(nn.Conv2d(ch, ch, 3, bias=False), sn), nn.BatchNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN-style ResNet generator (DMR's ``GD.py``): 7x7 conv, two stride-2 downsamplings,
    ``n_blocks`` residual blocks, two transposed-conv upsamplings, 7x7 conv, tanh. Spectral norm on
    every conv but the last. Input height and width must be multiples of 4."""

    def __init__(self, ngf: int = 32, n_blocks: int = 6, spectral: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), _sn(nn.Conv2d(3, ngf, 7, bias=False), spectral),
                                   nn.BatchNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [_sn(nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=False), spectral),
                       nn.BatchNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [_ResBlock(ch, spectral) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [_sn(nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                           spectral), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"the DMR generator needs height and width divisible by 4, got {tuple(x.shape[-2:])}")
        return self.net(x)


class _SamePad(nn.Module):
    """TensorFlow-style SAME padding for a k x k convolution of stride s."""

    def __init__(self, k: int, s: int) -> None:
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x):
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max(self.k - (size % self.s if size % self.s else self.s), 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


class _PatchD(nn.Module):
    def __init__(self, in_ch: int = 6, ndf: int = 64, spectral: bool = True) -> None:
        super().__init__()
        chans = [in_ch, ndf, ndf * 2, ndf * 4, ndf * 8]
        strides = [2, 2, 2, 1]
        layers: list[nn.Module] = []
        for i, s in enumerate(strides):
            layers += [_SamePad(4, s), _sn(nn.Conv2d(chans[i], chans[i + 1], 4, stride=s), spectral)]
            if i > 0:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.LeakyReLU(0.2, True))
        layers += [_SamePad(4, 1), nn.Conv2d(chans[-1], 1, 4)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """DMR's conditional discriminator: three patch discriminators on the full, 1/2 and 1/4 scale of
    the 6-channel pair (condition image, judged image)."""

    def __init__(self, ndf: int = 64, scales: int = 3, spectral: bool = True) -> None:
        super().__init__()
        self.ds = nn.ModuleList(_PatchD(6, ndf, spectral) for _ in range(scales))

    def forward(self, cond: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        h = torch.cat([cond, x], 1)
        outs = []
        for i, d in enumerate(self.ds):
            if i:
                h = F.avg_pool2d(_SamePad(3, 2)(h), 3, stride=2, count_include_pad=False)
            outs.append(d(h))
        return outs


class MaskHead(nn.Module):
    """Scores every pixel of the clean image; the "controllable" variant perturbs the top ``tau``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(True),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True), nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor, tau: int) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = self.net(x).flatten(1)
        k = min(int(tau), h * w)
        soft = torch.softmax(logits, 1) * k
        hard = torch.zeros_like(logits).scatter_(1, logits.topk(k, dim=1).indices, 1.0)
        return (hard + soft - soft.detach()).view(b, 1, h, w)  # hard forward, soft backward


# ---------------------------------------------------------------------------------------- losses
def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    c = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_cs(x, y, win_size: int, sigma: float, data_range: float):
    ch = x.shape[1]
    g = _gaussian_window(win_size, sigma, x.device, x.dtype)
    wx = g.view(1, 1, 1, -1).repeat(ch, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(ch, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
            weights=MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) per sample, ``(N,)``. At scales smaller than the window
    (a 128x64 person has a 8x4 fifth scale) the window shrinks to the image; negative contrast terms
    are clamped at 0 so the power stays defined."""
    levels = len(weights)
    w = torch.tensor(weights, device=x.device, dtype=x.dtype)
    vals = []
    for i in range(levels):
        k = min(win_size, x.shape[-2], x.shape[-1])
        ssim, cs = _ssim_cs(x, y, k, sigma * k / win_size, data_range)
        vals.append(ssim.relu() if i == levels - 1 else cs.relu())
        if i < levels - 1:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    v = torch.stack(vals, 1).clamp(min=1e-8)
    return torch.prod(v ** w[None], 1)


def misranking_triplet_loss(feats: torch.Tensor, pids: torch.Tensor, margin: float = 0.3,
                            self_positive: bool = False) -> torch.Tensor:
    """Mean over samples of ``[d(furthest negative) - d(nearest positive) + margin]_+``: minimising
    it ranks other identities above the sample's own. ``self_positive`` reproduces the code's mask
    (the sample is its own nearest positive, d = 0)."""
    d = torch.cdist(feats, feats).clamp(min=1e-6)
    same = pids[:, None] == pids[None]
    if not self_positive:
        same = same & ~torch.eye(len(pids), dtype=torch.bool, device=feats.device)
    big = d.detach().max() + 1
    pos_min = torch.where(same, d, big).min(1).values
    other = pids[:, None] != pids[None]
    neg_max = torch.where(other, d, torch.zeros_like(d)).max(1).values
    has = same.any(1) & other.any(1)
    if not bool(has.any()):
        raise ValueError("the mis-ranking triplet needs batches with several images per identity (PK batches)")
    return F.relu(neg_max - pos_min + margin)[has].mean()


def least_likely_cross_entropy(logits: torch.Tensor, pids: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy towards each sample's least-likely identity, label-smoothed over the identities
    absent from the batch (DMR's ``adv_CrossEntropyLabelSmooth``)."""
    k = logits.shape[1]
    target_cls = logits.detach().argmin(1)
    allowed = torch.ones(k, dtype=logits.dtype, device=logits.device)
    present = pids[(pids >= 0) & (pids < k)]
    allowed[present] = 0
    smooth = allowed / allowed.sum().clamp(min=1)
    t = smoothing * smooth[None].expand_as(logits).clone()
    t.scatter_add_(1, target_cls[:, None], torch.full_like(logits[:, :1], 1 - smoothing))
    return -(t * F.log_softmax(logits, 1)).sum(1).mean()


def _lsgan(outs: list[torch.Tensor], target: float, last_only: bool) -> torch.Tensor:
    outs = outs[-1:] if last_only else outs
    return sum(F.mse_loss(o, torch.full_like(o, target)) for o in outs) / len(outs)


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
            return self._fit(surrogate, images, pids, epochs=epochs, device=device, progress=progress,
                             input_size=input_size)

    def _fit(self, surrogate, images, pids, *, epochs, device, progress, input_size) -> "DMR":
        from ..data.transforms import pk_batches, random_pad_crop_flip, to_model_input

        surrogate = surrogate if surrogate is not None else self.model
        if surrogate is None:
            raise ValueError("DMR.fit needs a surrogate model")
        self.model = surrogate
        cfg = self.cfg
        epochs = cfg["epochs"] if epochs is None else int(epochs)
        size = tuple(input_size or getattr(surrogate, "input_size", None) or tuple(images[0].shape[-2:]))
        pad = cfg["pad"] if cfg["pad"] is not None else max(1, size[0] // 32)
        pids_t = torch.as_tensor(pids, dtype=torch.int64)
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        disc = MultiScaleDiscriminator(cfg["ndf"]).to(device)
        self.to(device)
        gen_params = list(self.generator_net.parameters()) + (list(self.mask_net.parameters()) if self.mask_net else [])
        opt_g = torch.optim.Adam(gen_params, lr=cfg["lr"], betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
        has_logits = cfg["xent"] and callable(getattr(surrogate, "logits", None))
        if cfg["xent"] and not has_logits:
            log.warning("the surrogate has no identity head (.logits): DMR trains without the adversarial CE term")
        flags = [(p, p.requires_grad) for p in surrogate.parameters()]
        was_training = surrogate.training
        surrogate.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        n_batches = max(1, len(pids_t) // cfg["batch_size"])
        history, t0 = [], time.perf_counter()
        self.generator_net.train()
        if self.mask_net is not None:
            self.mask_net.train()
        try:
            for ep in range(epochs):
                batches = pk_batches(pids_t, cfg["batch_size"], cfg["num_instances"], n_batches, g)
                sums = {"G": 0.0, "D": 0.0, "trip": 0.0, "xent": 0.0, "ssim": 0.0}
                bar = tqdm(batches, desc=f"DMR epoch {ep + 1}/{epochs}", unit="batch", disable=not progress, leave=False)
                for idx in bar:
                    sel = images[idx] if isinstance(images, torch.Tensor) else [images[i] for i in idx.tolist()]
                    x = random_pad_crop_flip(to_model_input(sel, size, device), pad, True, g)
                    y = pids_t[idx].to(device)
                    x_adv = (x + self.perturbation(x)).clamp(0, 1)
                    # generator step
                    feats = surrogate(x_adv)
                    l_trip = misranking_triplet_loss(feats, y, cfg["margin"], cfg["self_positive"])
                    l_reid = torch.log(l_trip.clamp(min=1e-4))
                    l_x = torch.zeros((), device=x.device)
                    if has_logits:
                        l_x = least_likely_cross_entropy(surrogate.logits(x_adv), y)
                        l_reid = l_reid + torch.log(l_x.clamp(min=1e-4))
                    l_ssim = 1 - ms_ssim(x, x_adv).mean()
                    l_gan = _lsgan(disc(x, x_adv), 1.0, cfg["gan_last_scale_only"])
                    loss_g = l_gan + cfg["reid_weight"] * l_reid + cfg["ssim_weight"] * l_ssim
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    # discriminator step: real = two different clean images, fake = (clean, adversarial)
                    half = len(x) // 2
                    fake = _lsgan(disc(x, x_adv.detach()), 0.0, cfg["gan_last_scale_only"])
                    real = _lsgan(disc(x[:half], x[half:2 * half]), 1.0, cfg["gan_last_scale_only"])
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
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            surrogate.train(was_training)
        self.generator_net.eval()
        self.fitted = True
        self.fit_info = {"epochs": epochs, "input_size": list(size), "train_images": len(pids_t),
                         "seconds": round(time.perf_counter() - t0, 2), "history": history,
                         "selection": "last epoch (no selection on the test set)"}
        return self
