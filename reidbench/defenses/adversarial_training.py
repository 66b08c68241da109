"""Adversarial-training defenses through the training engine: offline AT (Bai et al., as the seed
uses it) and online GOAT (Bouniot et al., CVPRW 2020).

* :class:`AT` (``fit`` side): a frozen, normally trained model attacks the whole training set once
  (the adversarial set is cached per model, attack and dataset); the model is then fine-tuned on
  clean and adversarial images.
* :class:`GOAT` (``batch_hook`` side): every training batch is replaced by PGD-7 adversarial examples
  made with the current model: pushed away from 4 random same-identity training images, pulled
  towards the furthest in-batch image of another identity. Generation runs with BatchNorm in eval
  mode, so the attack's forward passes do not touch the running statistics.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..attacks.base import AttackContext, FeatureBank, MetricAttack, format_eps, squared_distance
from ..data.base import default_data_home
from ..data.transforms import to_model_input
from ..models.base import IMAGENET_STD
from ..registry import DEFENSES, parse_attack
from ..utils import atomic_torch_save
from .base import Defense

log = logging.getLogger(__name__)

__all__ = ["AT", "GOAT", "GOATAttack", "GOATGuides"]


def _state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@DEFENSES.register("at", aliases=("adversarial-training", "offline-at"),
                   paper="Bai et al., arXiv 1901.10650 (as used by the seed, section 4.2)", kind="training")
class AT(Defense):
    """Offline adversarial training: a frozen copy of the trained model generates an adversarial
    version of the training set once with ``attack`` (``sma``, ``lta`` or ``mifgsm`` with
    same-identity training guides; eps 5/255, 15 steps), then the model is fine-tuned for
    ``epochs`` (20, the seed) on clean + adversarial images (``ratio`` adversarial per clean image).

    The adversarial set is cached under ``$REIDBENCH_HOME/cache/at`` keyed by the model's weights,
    the attack's configuration and the training images, so it is generated once per (model, attack).
    This is a reconstruction (spec section 3.1): Bai et al. released no defense code."""

    name = "at"
    deterministic = True
    differentiable = True

    def __init__(self, attack: str = "sma", eps: float = 5 / 255, alpha: float = 1 / 255, steps: int = 15,
                 ratio: float = 1.0, epochs: int = 20, seed: int = 0) -> None:
        self.attack_name = attack
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.ratio = float(ratio)
        self.epochs = int(epochs)
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {"attack": self.attack_name, "eps": format_eps(self.eps), "alpha": format_eps(self.alpha),
                "steps": self.steps, "ratio": self.ratio, "epochs": self.epochs}

    def override_epochs(self, epochs: int) -> None:
        self.epochs = int(epochs)

    def _attack(self, model):
        from ..attacks import build_attack

        return build_attack(self.attack_name, model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                            quantize=True, seed=self.seed)

    def adversarial_set(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                        batch_size: int = 64, device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                        progress: bool = False) -> tuple[torch.Tensor, bool]:
        """uint8 adversarial training images at the model's input size, and whether they came from
        the cache."""
        from ..evaluation import extract_features

        size = tuple(model.input_size)
        h = hashlib.sha256(_state_digest(model).encode())
        h.update(repr(self._attack(model)).encode())
        h.update(str(size).encode())
        h.update(pids.numpy().tobytes())
        first = images[0] if not isinstance(images, torch.Tensor) else images[: min(8, len(images))]
        h.update(torch.as_tensor(first).numpy().tobytes() if isinstance(first, torch.Tensor) else b"")
        h.update(str(len(images)).encode())
        cache = Path(cache_dir or default_data_home() / "cache" / "at") / f"{h.hexdigest()[:32]}.pt"
        if cache.is_file():
            return torch.load(cache, map_location="cpu", weights_only=True), True
        attack = self._attack(model)
        ctx = None
        if parse_attack(self.attack_name).context == "gallery":
            feats = extract_features(model, images, batch_size, device)
            cams = camids if camids is not None else torch.zeros_like(pids)
            ctx = AttackContext(gallery=FeatureBank(feats, pids, cams))  # same-identity training guides
        out = []
        for s in tqdm(range(0, len(pids), batch_size), desc=f"AT: attacking the training set ({self.attack_name})",
                      disable=not progress, leave=False):
            x = to_model_input(images[s:s + batch_size], size, device)
            adv = attack(x, pids[s:s + batch_size].to(x.device),
                         camids[s:s + batch_size].to(x.device) if camids is not None else None, ctx)
            out.append(torch.round(adv * 255).to(torch.uint8).cpu())
        adv_set = torch.cat(out)
        atomic_torch_save(adv_set, cache)
        return adv_set, False

    def fit(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *, recipe,
            seed: int = 0, out_dir=None, device="cpu", progress: bool = False, **kw) -> nn.Module:
        from ..train import train_model

        adv, cached = self.adversarial_set(model, images, pids, camids, device=device, progress=progress)
        log.info("AT: adversarial training set %s (%d images)", "from the cache" if cached else "generated", len(adv))
        clean = to_model_input(images, tuple(model.input_size), "cpu")
        clean = torch.round(clean * 255).to(torch.uint8)
        n_adv = min(len(adv), int(round(self.ratio * len(clean))))
        sel = torch.randperm(len(adv), generator=torch.Generator().manual_seed(seed))[:n_adv]
        all_images = torch.cat([clean, adv[sel]])
        all_pids = torch.cat([pids, pids[sel]])
        result = train_model(model, all_images, all_pids, recipe.replace(epochs=self.epochs), seed=seed,
                             out_dir=out_dir, device=device, progress=progress,
                             config={"defense": self.describe(), "adversarial_set_cached": cached})
        self.last_history = result.history
        return result.model


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
        """Fine-tuning (``finetune_epochs``): :meth:`fit` runs the batch hook; else the engine runs it
        from the first epoch."""
        return self.finetune_epochs is not None

    def override_epochs(self, epochs: int) -> None:
        if self.finetune_epochs is not None:  # canonical GOAT has no stage of its own
            self.finetune_epochs = int(epochs)

    def fit(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *, recipe,
            seed: int = 0, out_dir=None, device="cpu", progress: bool = False, **kw) -> nn.Module:
        """Fine-tune the normally trained ``model`` online for ``finetune_epochs`` epochs."""
        from ..train import train_model

        if self.finetune_epochs is None:
            raise RuntimeError("GOAT.fit fine-tunes a trained model; set finetune_epochs (or train with the "
                               "batch hook from the start)")
        result = train_model(model, images, pids, recipe.replace(epochs=self.finetune_epochs), seed=seed,
                             out_dir=out_dir, device=device, progress=progress,
                             batch_hook=self.batch_hook(images, pids, seed), config={"defense": self.describe()})
        self.last_history = result.history
        return result.model

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
            was_training = model.training
            # eval: BatchNorm statistics stay untouched by guide and attack forward passes;
            # train (CEA): batch statistics, running statistics updated by every pass
            model.train(self.bn_mode == "train")
            # generate on the training-time feature: flip-TTA would double every forward pass
            flip = getattr(model, "flip_tta", None)
            if flip is not None:
                model.flip_tta = False
            try:
                with torch.no_grad():
                    if self.guides == "sma":
                        push, pull = model(x)[:, None], None
                    else:
                        idx = self.push_indices(y, members, g)
                        guides = images[idx] if isinstance(images, torch.Tensor) else [images[i] for i in idx.tolist()]
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
                model.train(was_training)
            if self.clean_fraction > 0:
                keep = torch.rand(len(y), generator=g).to(x.device) < self.clean_fraction
                adv = torch.where(keep[:, None, None, None], x, adv)
            return adv, y

        return hook


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"GOAT {name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
