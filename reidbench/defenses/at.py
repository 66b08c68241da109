"""Offline adversarial training (Bai et al., as the seed uses it): a frozen, normally trained model
attacks the whole training set once (the adversarial set is cached per model, attack and dataset);
the model is then fine-tuned on clean and adversarial images -- a fine-tuning stage the training
engine runs (:mod:`reidbench.training_protocol`)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..attacks.base import AttackContext, FeatureBank
from ..data.base import default_data_home
from ..data.transforms import to_model_input, to_uint8
from ..protocol import Threat, attack_kwargs, make_attack
from ..registry import DEFENSES, format_eps, parse_attack
from ..training_protocol import FineTuneStage
from ..utils import atomic_torch_save, state_digest
from .base import Defense

log = logging.getLogger(__name__)

__all__ = ["AT"]


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
        """The attack on the frozen model, through the attack protocol: white-box, the seed, the
        budget, and ``quantize`` (the adversarial set is stored as 8-bit images)."""
        kw = attack_kwargs(self.attack_name, Threat.WHITE_BOX, None, seed=self.seed, eps=self.eps, alpha=self.alpha,
                           steps=self.steps, io="png")
        return make_attack(model, self.attack_name, None, Threat.WHITE_BOX, kw)

    def adversarial_set(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                        batch_size: int = 64, device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                        progress: bool = False) -> tuple[torch.Tensor, bool]:
        """uint8 adversarial training images at the model's input size, and whether they came from
        the cache."""
        from ..evaluation import extract_features

        size = tuple(model.input_size)
        h = hashlib.sha256(state_digest(model).encode())
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

    def finetune_stage(self, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
                       seed: int = 0, device="cpu", progress: bool = False) -> FineTuneStage:
        """Clean plus adversarial training images (the adversarial set made once by the frozen,
        normally trained ``model``), fine-tuned on for ``epochs``."""
        adv, cached = self.adversarial_set(model, images, pids, camids, device=device, progress=progress)
        log.info("AT: adversarial training set %s (%d images)", "from the cache" if cached else "generated", len(adv))
        size = tuple(model.input_size)  # the clean set at the model's input size, as uint8, a chunk at a time
        clean = torch.cat([to_uint8(to_model_input(images[s:s + 512], size, "cpu")) for s in range(0, len(pids), 512)])
        n_adv = min(len(adv), int(round(self.ratio * len(clean))))
        sel = torch.randperm(len(adv), generator=torch.Generator().manual_seed(seed))[:n_adv]
        return FineTuneStage("AT fine-tuning", torch.cat([clean, adv[sel]]), torch.cat([pids, pids[sel]]), self.epochs,
                             config={"defense": self.describe(), "adversarial_set_cached": cached})
