"""Training recipes: optimiser, schedule, losses, sampling and augmentation in one record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Recipe", "RECIPES", "get_recipe", "PRECISIONS"]

#: mixed-precision modes of ``Recipe.amp`` (``True`` is ``"fp16"``, ``False`` ``"off"``)
PRECISIONS = ("off", "fp16", "bf16")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines training besides the architecture, the data and the seed.

    ``backbone_lr_mult`` scales the learning rate of ``model.backbone`` (the seed's code trains the
    ImageNet backbone at 0.1x the head's rate). ``schedule``: ``"step"`` (x``gamma`` at each of
    ``milestones``) or ``"cosine"``. ``sampler``: ``"random"`` (shuffled batches) or ``"pk"``
    (``batch_size / num_instances`` identities x ``num_instances`` images, needed by the triplet loss).
    """

    name: str = "custom"
    optimizer: str = "adam"
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    epochs: int = 30
    batch_size: int = 64
    sampler: str = "pk"
    num_instances: int = 4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = (40,)
    gamma: float = 0.1
    warmup_epochs: int = 0
    ce_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    margin: float = 0.3
    pad: int = 10
    flip: bool = True
    amp: bool | str = False
    drop_last: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @property
    def precision(self) -> str:
        """``amp`` as one of :data:`PRECISIONS`."""
        return {False: "off", True: "fp16"}.get(self.amp, self.amp) if isinstance(self.amp, bool) else str(self.amp)

    def replace(self, **changes: Any) -> "Recipe":
        return replace(self, **changes)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")
        if self.sampler not in ("random", "pk"):
            raise ValueError(f"sampler must be 'random' or 'pk', got {self.sampler!r}")
        if self.sampler == "pk" and self.batch_size % self.num_instances:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of num_instances {self.num_instances}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"amp must be one of {', '.join(PRECISIONS)} (or a bool), got {self.amp!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")


_CPU = Recipe(name="cpu", optimizer="adam", lr=1e-3, epochs=30, batch_size=64, sampler="pk", schedule="cosine",
              pad=4)

RECIPES: dict[str, Recipe] = {
    # the seed's code (Gong, LTA_and_joint-defence train.py): SGD nesterov, lr 0.05 head / 0.005
    # backbone, step decay x0.1 every 40 epochs, 60 epochs, batch 32, CE only.
    "seed": Recipe(name="seed", optimizer="sgd", lr=0.05, backbone_lr_mult=0.1, epochs=60, batch_size=32,
                   sampler="random", schedule="step", milestones=(40,), label_smoothing=0.0, triplet_weight=0.0),
    # Luo et al.'s strong baseline (BNNeck): Adam 3.5e-4, warm-up 10, x0.1 at 40 and 70, 120 epochs,
    # label-smoothed CE + triplet with PK batches of 16 x 4.
    "strong": Recipe(name="strong", optimizer="adam", lr=3.5e-4, epochs=120, batch_size=64, sampler="pk",
                     schedule="step", milestones=(40, 70), warmup_epochs=10),
    # the small CPU model on synthreid: Adam 1e-3 with cosine decay, CE-LS + triplet, 30 epochs.
    "cpu": _CPU,
    # synthreid's default model, EfficientNet-Lite0 from ImageNet weights: the cpu recipe for 8 epochs
    # (issue 21: 8-9 minutes on 2 cores, 73.5 rank-1; benchmarks/RESULTS.md)
    "cpu-imagenet": _CPU.replace(name="cpu-imagenet", epochs=8),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
