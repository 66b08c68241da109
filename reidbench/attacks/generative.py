"""Generative attacks: a network learns, once, to map an image to its adversarial perturbation.

Unlike :class:`~reidbench.attacks.base.MetricAttack` (an optimisation per image), a
:class:`GenerativeAttack` is fitted on a *surrogate* model and a training set, then perturbs a
whole batch in one forward pass -- and can be applied to any other model (transfer / black-box).
It has the same call as every attack, ``attack(images, pids, camids, context) -> images``, so the
evaluation code does not care which kind it runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..utils import atomic_torch_save, atomic_write_text, parse_fraction
from ..registry import format_eps
from .base import quantize_to_uint8_grid

__all__ = ["GenerativeAttack", "GeneratorCheckpointError"]


class GeneratorCheckpointError(RuntimeError):
    """A generator checkpoint cannot be used (missing sidecar, wrong attack, damaged weights)."""


class GenerativeAttack:
    """Base class: ``fit(surrogate, images, pids, ...)``, then ``attack(images)``.

    Subclasses implement :meth:`build_networks`, :meth:`fit` and :meth:`perturbation`
    (clean images in [0, 1] -> delta with ``|delta| <= eps``)."""

    name = "generative-attack"
    numerics = "1"  # version of the generator's numerics (fitting and application); see MetricAttack.numerics
    paper = ""
    threat_model = "transfer: fitted on a surrogate, applied to any model in one forward pass"
    transferable = True
    # -- registry metadata (see reidbench.registry.AttackSpec) --------------------------------------
    title = ""
    order = 100
    kind = "transfer"          # fitted once on a surrogate, then applied to every model
    context = "none"
    randomised = False
    in_all = False
    supports_eot = False
    supports_quantize = False  # quantises by itself
    #: fitting configuration on a synthetic dataset (small CPU models) and on real ones; the
    #: constructor's defaults are the reference configuration
    synthetic_config: dict[str, Any] = {}
    real_config: dict[str, Any] = {}

    @classmethod
    def fit_config(cls, synthetic: bool) -> dict[str, Any]:
        """The constructor arguments reidbench fits this attack with on a synthetic or a real dataset."""
        return dict(cls.synthetic_config if synthetic else cls.real_config)

    def __init__(self, model: nn.Module | None = None, *, eps: float | str = 16 / 255, seed: int = 0,
                 quantize: bool = True) -> None:
        self.model = model          # the surrogate it is (or will be) fitted on
        self.eps = parse_fraction(eps)
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must lie in (0, 1] (pixel units; e.g. 16/255), got {eps}")
        self.seed = int(seed)
        self.quantize = bool(quantize)
        self.fitted = False
        self.fit_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ to implement
    def networks(self) -> dict[str, nn.Module]:
        """The modules saved in a checkpoint (name -> module)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild the networks (JSON-serialisable)."""
        raise NotImplementedError

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, surrogate: nn.Module, images, pids, **kwargs) -> "GenerativeAttack":
        raise NotImplementedError

    # ------------------------------------------------------------------ the call
    def __call__(self, images: torch.Tensor, pids=None, camids=None, context=None) -> torch.Tensor:
        """Adversarial versions of ``images`` ((N, 3, H, W) in [0, 1]): one forward pass."""
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted: call .fit(surrogate, train_images, train_pids) "
                               f"or load a generator with {type(self).__name__}.load(path)")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype == torch.uint8:
            raise ValueError("images must be a float (N, 3, H, W) tensor in [0, 1]")
        x = images.detach()
        nets = self.networks()
        modes = {k: m.training for k, m in nets.items()}
        for m in nets.values():
            m.eval()
        try:
            with torch.no_grad():
                x_adv = (x + self.perturbation(x)).clamp(0, 1)
        finally:
            for k, m in nets.items():
                m.train(modes[k])
        if self.quantize:
            x_adv = quantize_to_uint8_grid(x_adv, x, self.eps)
        return x_adv.to(images.dtype)

    forward = __call__

    def to(self, device) -> "GenerativeAttack":
        for m in self.networks().values():
            m.to(device)
        return self

    # ------------------------------------------------------------------ description
    def hyperparameters(self) -> dict[str, Any]:
        hp = {"eps": self.eps, "seed": self.seed}
        hp.update(self.config())
        return hp

    def __repr__(self) -> str:
        parts = [f"{k}={format_eps(v) if k == 'eps' else v}" for k, v in self.hyperparameters().items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike, **meta: Any) -> dict[str, Any]:
        """Write the networks' weights (``path``) and a JSON sidecar (configuration, eps, seed, fit
        information such as the surrogate's SHA-256, the dataset and epochs, plus ``meta``)."""
        from .. import __version__
        from ..models.checkpoint import sha256_file, sidecar_path

        if not self.fitted:
            raise RuntimeError("nothing to save: the generator is not fitted")
        path = Path(path)
        state = {f"{name}.{k}": v.detach().cpu() for name, m in self.networks().items()
                 for k, v in m.state_dict().items()}
        atomic_torch_save(state, path)
        card = {"format": "reidbench-generator-v1", "attack": self.name, "config": self.config(), "eps": self.eps,
                "seed": self.seed, "reidbench_version": __version__, "torch_version": torch.__version__,
                "weights_file": path.name, "sha256": sha256_file(path), "fit": self.fit_info, **meta}
        atomic_write_text(sidecar_path(path), json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
        return card

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module | None = None, device="cpu") -> "GenerativeAttack":
        """Rebuild a fitted attack from ``path`` and its sidecar (``weights_only`` load, SHA-256 checked)."""
        from ..models.checkpoint import sha256_file, sidecar_path

        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file() or not side.is_file():
            raise GeneratorCheckpointError(f"generator checkpoint {path} or its sidecar {side.name} is missing")
        card = json.loads(side.read_text())
        if card.get("format") != "reidbench-generator-v1" or card.get("attack") != cls.name:
            raise GeneratorCheckpointError(f"{path} holds a {card.get('attack', 'unknown')!r} generator "
                                           f"({card.get('format')}), not a {cls.name!r} one")
        if card.get("sha256") and sha256_file(path) != card["sha256"]:
            raise GeneratorCheckpointError(f"{path} does not match the SHA-256 in {side.name}: damaged or changed")
        atk = cls(model, eps=card["eps"], seed=card["seed"], **card["config"])
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise GeneratorCheckpointError(f"cannot read generator checkpoint {path}: {e}") from e
        for name, m in atk.networks().items():
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            try:
                m.load_state_dict(sub, strict=True)
            except RuntimeError as e:
                raise GeneratorCheckpointError(f"{path}: the {name} weights do not fit the configuration in "
                                               f"{side.name}: {e}") from e
        atk.to(device)
        atk.fitted = True
        atk.fit_info = card.get("fit", {})
        atk.card = card
        return atk
