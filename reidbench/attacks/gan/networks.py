"""Networks of the generative attacks: DMR's ResNet generator, its conditional multi-scale
PatchGAN discriminator and the "controllable" mask head."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["ResnetGenerator", "MultiScaleDiscriminator", "MaskHead", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
