"""The L-infinity metric-attack engine (template method, after foolbox's gradient_descent_base).

Every gradient attack of the ReID literature is one loop:

    x'_0 = clamp(x + U(-eps, eps)) if random_start else x
    repeat steps times:
        g = grad of loss(x'_t) w.r.t. x'_t          (mean over eot_samples draws of the transform)
        with momentum mu: g = mu * g_prev + g / ||g||_1
        x'_{t+1} = clamp(x + clamp(x'_t + alpha * sign(g) - x, -eps, eps), 0, 1)

Attacks differ in :meth:`MetricAttack.prepare` (references computed once per batch: the clean
feature, guides, ...) and :meth:`MetricAttack.loss` (a per-sample objective to maximise), and in
their defaults. Each sample is paired with its own references only.

The model is any ``nn.Module`` mapping images in [0, 1] to (N, D) features -- reidbench's Embedder
or a model from another project. During an attack it is put in eval mode and its parameters stop
requiring gradients (both restored afterwards); nothing is moved between devices.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from ..registry import format_eps
from ..utils import model_mode, parse_fraction

log = logging.getLogger(__name__)

__all__ = ["MetricAttack", "AttackContext", "FeatureBank", "bpda", "quantize_to_uint8_grid", "format_eps"]

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FeatureBank:
    """Features of a labelled image set (e.g. the gallery) an attacker may use as guides."""

    features: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.pids = torch.as_tensor(self.pids, dtype=torch.int64, device=self.features.device)
        if self.camids is not None:
            self.camids = torch.as_tensor(self.camids, dtype=torch.int64, device=self.features.device)
        if len(self.pids) != len(self.features):
            raise ValueError(f"FeatureBank: {len(self.features)} features but {len(self.pids)} pids")


@dataclass
class AttackContext:
    """What a threat model grants the attacker besides the images themselves.

    ``gallery``: features of the gallery (M-IFGSM guides: same-identity gallery images).
    ``attacker_set``: a labelled set the attacker holds (FNA guides; by default the query set).
    """

    gallery: FeatureBank | None = None
    attacker_set: FeatureBank | None = None


def bpda(transform: Transform) -> Transform:
    """Backward-pass differentiable approximation (Athalye et al. 2018): the forward pass applies
    ``transform``, the backward pass treats it as the identity. For non-differentiable test-time
    defenses (JPEG, bit-depth reduction, quantisation)."""

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = transform(x)
        return x + (y - x).detach()

    wrapped.__name__ = f"bpda({getattr(transform, '__name__', type(transform).__name__)})"
    return wrapped


def quantize_to_uint8_grid(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Round adversarial images to the 8-bit grid (k/255) while staying inside the budget, so that a
    saved uint8 file evaluates to exactly the returned tensor."""
    q = torch.round(x_adv * 255)
    lo = torch.ceil(((x - eps) * 255).clamp(min=0) - 1e-4)
    hi = torch.floor(((x + eps) * 255).clamp(max=255) + 1e-4)
    return (torch.minimum(torch.maximum(q, lo), hi) / 255).clamp(0, 1)


class MetricAttack:
    """Base class of the L-infinity gradient attacks on ReID embeddings.

    Args:
        model: ``nn.Module`` mapping (N, 3, H, W) images in [0, 1] to (N, D) features.
        eps: L-infinity budget in [0, 1] pixel units (``"5/255"`` accepted). Default 5/255.
        alpha: step size, same units. Default 1/255.
        steps: iterations. Default 15 (the seed paper's protocol).
        random_start: start from ``clamp(x + U(-eps, eps))``.
        momentum: ``None`` (sign of the gradient) or the decay ``mu`` of MI-FGSM momentum.
        grad_norm: momentum normalisation, ``"l1"`` (per-sample L1 norm) or ``"mean_abs"``
            (per-sample mean |g|, the seed's code); they give identical steps.
        transform: a differentiable test-time defense put in the forward path (adaptive attack);
            wrap non-differentiable ones with :func:`bpda`.
        eot_samples: gradient samples per step through a randomised ``transform`` (EOT).
        quantize: return images on the 8-bit grid (exact when saved as uint8).
        seed: seeds the random start and any random reference; the same seed repeats a run.
    """

    name = "metric-attack"
    paper = ""
    threat_model = ""
    # -- registry metadata (see reidbench.registry.AttackSpec) --------------------------------------
    title = ""                 # the board's column title ("M-IFGSM"); the registry name when empty
    order = 100                # the column's place on the board (lower first)
    kind = "white-box"         # white-box | transfer | classifier
    context = "none"           # what the threat model grants: none | gallery | attacker-set
    randomised = False         # draws random numbers (random start, random references)
    in_all = False             # part of `--attacks all`
    supports_eot = True        # takes eot_samples / transform (adaptive attacks through a defense)
    supports_quantize = True   # takes quantize=True (8-bit grid output)
    keep_mode = False  # True: attack in the model's current train/eval mode instead of eval mode

    def __init__(self, model: nn.Module, *, eps: float | str = 5 / 255, alpha: float | str = 1 / 255,
                 steps: int = 15, random_start: bool = False, momentum: float | None = None,
                 grad_norm: str = "l1", transform: Transform | None = None, eot_samples: int = 1,
                 quantize: bool = False, seed: int = 0) -> None:
        self.model = model
        self.eps = parse_fraction(eps)
        self.alpha = parse_fraction(alpha)
        self.steps = int(steps)
        self.random_start = bool(random_start)
        self.momentum = None if momentum is None else float(momentum)
        if grad_norm not in ("l1", "mean_abs"):
            raise ValueError(f"grad_norm must be 'l1' or 'mean_abs', got {grad_norm!r}")
        self.grad_norm = grad_norm
        self.transform = transform
        self.eot_samples = max(1, int(eot_samples))
        self.quantize = bool(quantize)
        self.seed = int(seed)
        if not 0 <= self.eps <= 1 or self.alpha < 0 or self.steps < 0:
            raise ValueError(f"need 0 <= eps <= 1, alpha >= 0, steps >= 0; got eps={eps}, alpha={alpha}, steps={steps}")
        self._generator: torch.Generator | None = None

    # ------------------------------------------------------------------ the parts attacks override
    def prepare(self, x: torch.Tensor, pids: torch.Tensor | None, camids: torch.Tensor | None,
                context: AttackContext | None) -> dict[str, Any]:
        """References computed once per batch (no gradient). Default: the clean features."""
        with torch.no_grad():
            return {"clean": self.features(x)}

    def loss(self, x_adv: torch.Tensor, state: dict[str, Any], step: int) -> torch.Tensor:
        """Per-sample objective (B,) to maximise."""
        raise NotImplementedError

    def budget(self, x: torch.Tensor) -> float | torch.Tensor:
        """The L-infinity bound: ``eps`` (a subclass may return a per-channel (1, C, 1, 1) tensor)."""
        return self.eps

    def init(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        b = self.budget(x)
        # drawn on the CPU so that a seed gives the same start on every device
        if isinstance(b, torch.Tensor):
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-1, 1, generator=self.generator).to(x.device) * b
        else:
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-b, b, generator=self.generator).to(x.device)
        return (x + noise).clamp(0, 1)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b = self.budget(x)
        return (x + (x_adv - x).clamp(-b, b)).clamp(0, 1)

    # ------------------------------------------------------------------ helpers for subclasses
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ``x`` through the optional test-time transform (what the defense sees)."""
        if self.transform is not None:
            x = self.transform(x)
        return self.model(x)

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            raise RuntimeError("the attack's generator exists only while an attack runs")
        return self._generator

    # ------------------------------------------------------------------ the engine
    def __call__(self, images: torch.Tensor, pids: torch.Tensor | None = None, camids: torch.Tensor | None = None,
                 context: AttackContext | None = None) -> torch.Tensor:
        """Adversarial versions of ``images`` ((N, 3, H, W) in [0, 1]; dtype and shape kept)."""
        return self.perturb(images, pids, camids, context)

    forward = __call__  # torchattacks' spelling

    def perturb(self, images, pids=None, camids=None, context=None) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {type(images).__name__} "
                             f"{tuple(getattr(images, 'shape', ()))}")
        if images.dtype == torch.uint8:
            raise ValueError("images are uint8: pass floats in [0, 1] (images.float() / 255)")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError("images must lie in [0, 1] (pixel space); undo any normalisation first")
        self._check_device(images)
        x = images.detach()
        if pids is not None:
            pids = torch.as_tensor(pids, device=x.device)
        if camids is not None:
            camids = torch.as_tensor(camids, device=x.device)
        with self._attack_mode():
            self._generator = torch.Generator().manual_seed(self.seed)  # CPU: device-independent draws
            try:
                state = self.prepare(x, pids, camids, context)
                x_adv = self.run_steps(x, state)
            finally:
                self._generator = None
        if self.quantize:
            x_adv = quantize_to_uint8_grid(x_adv, x, self.eps)
        return x_adv.to(images.dtype)

    def run_steps(self, x: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        x_adv = self.init(x)
        g_mom = torch.zeros_like(x) if self.momentum is not None else None
        for t in range(self.steps):
            grad = self.gradient(x_adv, state, t)
            if g_mom is not None:
                dims = tuple(range(1, grad.ndim))
                norm = grad.abs().sum(dims, keepdim=True) if self.grad_norm == "l1" else grad.abs().mean(dims, keepdim=True)
                g_mom = self.momentum * g_mom + grad / norm.clamp(min=1e-12)
                direction = g_mom.sign()
            else:
                direction = grad.sign()
            x_adv = self.project(x_adv + self.step_size(x) * direction, x)
        return x_adv

    def step_size(self, x: torch.Tensor) -> float | torch.Tensor:
        """The step of one iteration: ``alpha`` (a subclass may return a per-channel tensor, as ``budget``)."""
        return self.alpha

    def gradient(self, x_adv: torch.Tensor, state: dict[str, Any], step: int) -> torch.Tensor:
        total = None
        for _ in range(self.eot_samples):
            xa = x_adv.detach().requires_grad_(True)
            loss = self.loss(xa, state, step)
            if loss.ndim != 1 or loss.shape[0] != x_adv.shape[0]:
                raise RuntimeError(f"{type(self).__name__}.loss must return one value per sample, got {tuple(loss.shape)}")
            (g,) = torch.autograd.grad(loss.sum(), xa)
            total = g if total is None else total + g
        return total / self.eot_samples if self.eot_samples > 1 else total

    @contextmanager
    def _attack_mode(self) -> Iterator[None]:
        model = self.model
        was_training = model.training
        keep = self.keep_mode  # a subclass that must run in the model's own mode (CEA's GOAT)
        if was_training and not keep:
            warnings.warn(f"{type(model).__name__} was in train mode; {self.name} attacks it in eval mode "
                          "(BatchNorm statistics frozen, no dropout) and restores train mode afterwards", stacklevel=4)
        with model_mode(model, training=was_training and keep, frozen=True):
            yield

    def _check_device(self, images: torch.Tensor) -> None:
        p = next(iter(self.model.parameters()), None)
        if p is not None and p.device != images.device:
            raise ValueError(f"images are on {images.device} but the model is on {p.device}; move one of them "
                             "(reidbench never moves tensors behind your back)")

    # ------------------------------------------------------------------ description
    def hyperparameters(self) -> dict[str, Any]:
        hp = {"eps": self.eps, "alpha": self.alpha, "steps": self.steps, "random_start": self.random_start,
              "momentum": self.momentum, "seed": self.seed}
        if self.transform is not None:
            hp["transform"] = getattr(self.transform, "__name__", type(self.transform).__name__)
            hp["eot_samples"] = self.eot_samples
        if self.quantize:
            hp["quantize"] = True
        hp.update(self.extra_hyperparameters())
        return hp

    def extra_hyperparameters(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        parts = []
        for k, v in self.hyperparameters().items():
            if k in ("eps", "alpha"):
                v = format_eps(v)
            parts.append(f"{k}={v}")
        return f"{type(self).__name__}({', '.join(parts)})"


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row squared L2 distance ((B, D), (B, D) -> (B,))."""
    return (a - b).pow(2).sum(1)


def gather_guides(bank: FeatureBank, pids: torch.Tensor, camids: torch.Tensor | None = None,
                  cross_camera: bool = False, last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-identity guide features of each sample, padded: ``(guides (B, M, D), valid (B, M))``.

    ``cross_camera`` drops guides from the sample's own camera (junk in the Market protocol);
    ``last_only`` keeps only the last matching bank entry (the seed code's effective M-IFGSM guide)."""
    if pids is None:
        raise ValueError("this attack needs the pids of the attacked images to pick same-identity guides")
    pids = pids.to(bank.features.device)
    mask = bank.pids[None] == pids[:, None]
    if cross_camera:
        if camids is None or bank.camids is None:
            raise ValueError("cross-camera guides need the camids of the images and of the guide bank")
        mask &= bank.camids[None] != camids.to(bank.features.device)[:, None]
    if last_only:
        pos = torch.arange(mask.shape[1], device=mask.device)[None].expand_as(mask)
        last = torch.where(mask, pos, torch.full_like(pos, -1)).max(1).values
        mask = (pos == last[:, None]) & mask
    counts = mask.sum(1)
    m = max(1, int(counts.max()) if len(counts) else 1)
    order = torch.sort(mask.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :m]
    valid = torch.arange(m, device=mask.device)[None] < counts[:, None]
    return bank.features[order], valid
