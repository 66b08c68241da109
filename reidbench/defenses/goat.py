"""Online adversarial training, GOAT (Bouniot et al., CVPRW 2020): every training batch is replaced by
PGD-7 adversarial examples made with the current model, pushed away from 4 random same-identity
training images and pulled towards the furthest in-batch image of another identity. Generation runs
with BatchNorm in eval mode, so the attack's forward passes do not touch the running statistics.
The defense hands the engine a batch hook (or a fine-tuning stage, goat-ft):
:mod:`reidbench.training_protocol`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..attacks.base import MetricAttack, squared_distance
from ..data.transforms import select_rows, to_model_input
from ..models.base import IMAGENET_STD
from ..registry import DEFENSES, format_eps
from ..training_protocol import FineTuneStage, TrainingHooks
from ..utils import model_mode
from .base import Defense

log = logging.getLogger(__name__)

__all__ = ["GOAT", "GOATAttack", "GOATGuides"]


@dataclass
class GOATGuides:
    """Per-sample guides of a GOAT batch: ``push`` (B, P, D) same-identity features, ``pull`` (B, D)."""

    push: torch.Tensor
    pull: torch.Tensor


class GOATAttack(MetricAttack):
    """The PGD that GOAT trains on: maximise ``sum_p ||phi(x') - p||^2 - ||phi(x') - pull||^2``
    (Bouniot et al.), pixel-space eps 5/255, alpha 1/255, 7 steps, random start.

    ``channel_scale`` (3 values) multiplies eps and alpha per channel: with the normalisation's std it
    reproduces CEA's budget in normalised units (``eps_space="normalized"`` of :class:`GOAT`).
    ``keep_mode=True`` runs in the model's current mode instead of eval mode (CEA's train-mode
    BatchNorm: batch statistics, running statistics updated by every forward pass).
    A ``pull`` of None drops the pulling term (SMA-guided GOAT: the push guide is the clean feature)."""

    name = "goat-pgd"

    def __init__(self, model, *, eps=5 / 255, alpha=1 / 255, steps=7, random_start=True,
                 channel_scale=None, keep_mode: bool = False, **kw) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, **kw)
        self.channel_scale = None if channel_scale is None else torch.as_tensor(channel_scale, dtype=torch.float32)
        self.keep_mode = keep_mode

    def _scale(self, x: torch.Tensor) -> torch.Tensor | float:
        return 1.0 if self.channel_scale is None else self.channel_scale.to(x.device, x.dtype).view(1, -1, 1, 1)

    def prepare(self, x, pids, camids, context):
        if not isinstance(context, GOATGuides):
            raise ValueError("GOATAttack needs context=GOATGuides(push, pull)")
        return {"push": context.push, "pull": context.pull}

    def budget(self, x):
        return self.eps * self._scale(x)

    def step_size(self, x):
        return self.alpha * self._scale(x)

    def loss(self, x_adv, state, step):
        f = self.features(x_adv)
        push = (f[:, None] - state["push"]).pow(2).sum(-1).sum(1)
        return push if state["pull"] is None else push - squared_distance(f, state["pull"])


@DEFENSES.register("goat", aliases=("online-at",), paper="Bouniot et al., CVPRW 2020 (arXiv 2004.07618)",
                   kind="training")
class GOAT(Defense):
    """Guide-based online adversarial training: each training batch is replaced by PGD-7 adversarial
    examples (pixel space, eps 5/255, alpha 1/255, random start) made with the current model, pushed
    from ``num_push`` random same-identity training images and pulled towards the furthest in-batch
    image of another identity; guide features come from the current model. Generation runs with
    BatchNorm in eval mode (running statistics untouched) on the training-time feature (no flip-TTA).
    ``clean_fraction`` keeps a share of clean images in each batch (0 = adversarial only, as CEA's code).

    Deviations from CEA's code on purpose (spec section 3.2), each with its switch:

    * ``eps_space="pixel"``: eps and alpha in pixel units. CEA attacks normalised tensors, so its
      5/255 is 5/255 of a normalised unit, about 1.1/255 in pixels (``"normalized"``).
    * ``bn_mode="eval"``: BatchNorm uses and keeps its running statistics during generation. CEA
      generates in train mode: batch statistics, and the 1 + 7 forward passes update the running
      statistics (``"train"``; dropout is active as well).
    * ``pull="other-identity"``: the pulling guide is the furthest in-batch image of another identity.
      CEA takes the furthest other image whatever its identity (``"any"``).
    * ``cea_faithful=True`` sets all three to CEA's choice.

    ``guides="sma"`` is CEA's SMA-guided variant (``--adv --sma``, checkpoint ``*_goat_classif_sma``):
    the only guide is the sample's own clean feature, pushed away from; no pulling guide.

    ``finetune_epochs=None`` (canonical) trains online from the start, with the preset's recipe, as
    CEA does from ImageNet weights. An integer ``n`` first trains the model normally with the recipe,
    then fine-tunes it online for ``n`` epochs (a ``fit`` side): the protocol the seed gives its own
    method and AT ("20 training epochs" on a normally trained model, section 4.1), so that GOAT is
    compared with them at the same training budget (preset ``goat-ft``)."""

    name = "goat"
    deterministic = True
    differentiable = True

    def __init__(self, eps: float = 5 / 255, alpha: float = 1 / 255, steps: int = 7, num_push: int = 4,
                 clean_fraction: float = 0.0, guides: str = "fna", eps_space: str | None = None,
                 bn_mode: str | None = None, pull: str | None = None, cea_faithful: bool = False,
                 finetune_epochs: int | None = None) -> None:
        if finetune_epochs is not None and int(finetune_epochs) < 1:
            raise ValueError(f"GOAT finetune_epochs must be None (train online from the start) or at least 1; "
                             f"got {finetune_epochs!r}")
        self.finetune_epochs = None if finetune_epochs is None else int(finetune_epochs)
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.num_push = num_push
        self.clean_fraction = clean_fraction
        self.guides = _choice("guides", guides, ("fna", "sma"))
        self.eps_space = _choice("eps_space", eps_space or ("normalized" if cea_faithful else "pixel"),
                                 ("pixel", "normalized"))
        self.bn_mode = _choice("bn_mode", bn_mode or ("train" if cea_faithful else "eval"), ("eval", "train"))
        self.pull = _choice("pull", pull or ("any" if cea_faithful else "other-identity"), ("other-identity", "any"))

    def config(self):
        cfg = {"eps": format_eps(self.eps), "alpha": format_eps(self.alpha), "steps": self.steps,
               "num_push": self.num_push, "clean_fraction": self.clean_fraction}
        # the switches enter the record (and the checkpoint key) only when they leave the canonical
        # choice, so that canonical GOAT checkpoints keep their key
        for k, canonical in (("guides", "fna"), ("eps_space", "pixel"), ("bn_mode", "eval"), ("pull", "other-identity")):
            if getattr(self, k) != canonical:
                cfg[k] = getattr(self, k)
        if self.finetune_epochs is not None:
            cfg["finetune_epochs"] = self.finetune_epochs
        return cfg

    @property
    def has_fit_side(self) -> bool:
        """Fine-tuning (``finetune_epochs``): the batch hook runs in :meth:`finetune_stage`; else the engine runs it
        from the first epoch."""
        return self.finetune_epochs is not None

    def override_epochs(self, epochs: int) -> None:
        if self.finetune_epochs is not None:  # canonical GOAT has no stage of its own
            self.finetune_epochs = int(epochs)

    def training_hooks(self, images, pids: torch.Tensor, seed: int = 0) -> TrainingHooks:
        """Canonical GOAT replaces every batch of the main training; goat-ft trains normally first."""
        return TrainingHooks(batch_hook=None if self.has_fit_side else self.batch_hook(images, pids, seed))

    def finetune_stage(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                       seed: int = 0, device="cpu", progress: bool = False) -> FineTuneStage | None:
        """goat-ft: fine-tune the normally trained ``model`` online for ``finetune_epochs`` epochs."""
        if self.finetune_epochs is None:
            return None
        return FineTuneStage("GOAT fine-tuning", images, pids, self.finetune_epochs,
                             batch_hook=self.batch_hook(images, pids, seed), config={"defense": self.describe()})

    def push_indices(self, y: torch.Tensor, members: dict[int, torch.Tensor], g: torch.Generator) -> torch.Tensor:
        """``num_push`` random training images of each sample's identity (flattened, (B * P,))."""
        return torch.cat([members[p][torch.randint(0, len(members[p]), (self.num_push,), generator=g)]
                          for p in y.tolist()])

    def _channel_scale(self, model: nn.Module):
        if self.eps_space == "pixel":
            return None
        std = getattr(model, "pixel_std", None)
        return (std.flatten().tolist() if isinstance(std, torch.Tensor) else list(IMAGENET_STD))

    def batch_hook(self, images, pids: torch.Tensor, seed: int = 0):
        """The engine's ``batch_hook`` for a training set (``images`` uint8, ``pids`` labels)."""
        members = {int(p): torch.nonzero(pids == p).flatten() for p in torch.unique(pids)}

        def hook(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            size = tuple(model.input_size)
            # generate on the training-time feature: flip-TTA would double every forward pass
            flip = getattr(model, "flip_tta", None)
            if flip is not None:
                model.flip_tta = False
            # eval: BatchNorm statistics stay untouched by guide and attack forward passes;
            # train (CEA): batch statistics, running statistics updated by every pass
            try:
                with model_mode(model, training=self.bn_mode == "train"):
                    with torch.no_grad():
                        if self.guides == "sma":
                            push, pull = model(x)[:, None], None
                        else:
                            idx = self.push_indices(y, members, g)
                            guides = select_rows(images, idx)
                            push = model(to_model_input(guides, size, x.device)).view(len(y), self.num_push, -1)
                            f = model(x)
                            d = torch.cdist(f, f)
                            d = (d.masked_fill(y[:, None] == y[None], float("-inf")) if self.pull == "other-identity"
                                 else d.fill_diagonal_(float("-inf")))
                            pull = f[d.argmax(1)]
                    atk = GOATAttack(model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                     seed=seed * 1_000_003 + step, channel_scale=self._channel_scale(model),
                                     keep_mode=self.bn_mode == "train")
                    adv = atk(x.clamp(0, 1), y, None, GOATGuides(push, pull))
            finally:
                if flip is not None:
                    model.flip_tta = flip
            if self.clean_fraction > 0:
                keep = torch.rand(len(y), generator=g).to(x.device) < self.clean_fraction
                adv = torch.where(keep[:, None, None, None], x, adv)
            return adv, y

        return hook


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"GOAT {name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
