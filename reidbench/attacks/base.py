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

``schedule="apgd"`` replaces the fixed step by APGD's (Croce & Hein, ICML 2020): step size 2 eps,
halved per sample at checkpoints where the loss stalled (and the iterate reset to the sample's best),
momentum 0.75, and the best iterate per sample returned. ``restarts`` repeats the run from random
starts and keeps, per sample, the run with the highest loss. Both work with every loss, through a
test-time transform and with EOT.

Randomness is keyed (:mod:`reidbench.rng`): the random start, random references and the draws of a
randomised defense in the forward path derive from the sample's index, the step and the EOT sample,
never from a generator shared across calls.

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

from .. import rng
from ..registry import format_eps
from ..utils import model_mode, parse_fraction

log = logging.getLogger(__name__)

__all__ = ["MetricAttack", "AttackContext", "FeatureBank", "bpda", "quantize_to_uint8_grid", "format_eps",
           "SCHEDULES", "apgd_checkpoints"]

#: step-size schedules of the engine: the literature's fixed sign step, and APGD's
SCHEDULES = ("fixed", "apgd")


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD checks progress (Croce & Hein 2020): the first after 22 % of the
    budget, then at shrinking intervals (down by 3 % each, at least 6 %)."""
    first = max(int(0.22 * steps), 1)
    shrink, least = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, height, k = [], first, first
    while k < steps:
        out.append(k)
        height = max(height - shrink, least)
        k += height
    return out

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
        schedule: ``"fixed"`` (``alpha`` per step, the literature's protocol) or ``"apgd"`` (APGD's
            step-size schedule, momentum 0.75 and best iterate; ``alpha`` and ``momentum`` unused).
        restarts: runs per batch (restarts after the first start at random); per sample, the run
            with the highest final loss (APGD: best loss) is returned.
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
    #: version of this attack's numerics: bump it when a change alters the attack's output (a golden
    #: test pins the output per version; the version is part of every matrix cell's key)
    numerics = "1"

    def __init__(self, model: nn.Module, *, eps: float | str = 5 / 255, alpha: float | str = 1 / 255,
                 steps: int = 15, random_start: bool = False, momentum: float | None = None,
                 grad_norm: str = "l1", transform: Transform | None = None, eot_samples: int = 1,
                 quantize: bool = False, seed: int = 0, schedule: str = "fixed", restarts: int = 1) -> None:
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
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.schedule = schedule
        self.restarts = int(restarts)
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        #: what the last call measured per sample: ``zero_grad`` (the input gradient at the first step
        #: was exactly zero), ``loss`` (the objective of the returned images)
        self.last_diagnostics: dict[str, torch.Tensor] = {}
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

    def init(self, x: torch.Tensor, random: bool | None = None) -> torch.Tensor:
        """The first iterate: ``x`` or, with a random start, ``clamp(x + U(-eps, eps))`` drawn per
        sample (keyed: the same for a query whatever its batch)."""
        if not (self.random_start if random is None else random):
            return x.clone()
        b = self.budget(x)
        # drawn on the CPU so that a seed gives the same start on every device
        u = rng.uniform(self.draws("start", x.shape[0]), x.shape[0], *x.shape[1:], low=-1.0, high=1.0).to(x.device, x.dtype)
        return (x + u * b).clamp(0, 1)

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
        """One generator for the call (seeded by ``seed``): draws from it depend on the batch a sample
        is in; prefer :meth:`draws`."""
        if self._generator is None:
            raise RuntimeError("the attack's generator exists only while an attack runs")
        return self._generator

    def draws(self, tag: str, n: int) -> list[torch.Generator]:
        """Per-sample generators for a batch of ``n``, keyed by the sample's index, the step and EOT
        sample, this attack and its seed and ``tag`` (:mod:`reidbench.rng`); outside a run (a part
        of the engine called by hand), by the sample's position."""
        full = f"{self.name}:{self.seed}:{tag}"
        gens = rng.sample_generators(n, full)
        if gens is None:
            gens = [torch.Generator().manual_seed(rng.derive_seed(full, j)) for j in range(n)]
        return gens

    # ------------------------------------------------------------------ the engine
    def __call__(self, images: torch.Tensor, pids: torch.Tensor | None = None, camids: torch.Tensor | None = None,
                 context: AttackContext | None = None) -> torch.Tensor:
        """Adversarial versions of ``images`` ((N, 3, H, W) in [0, 1]; dtype and shape kept)."""
        return self.perturb(images, pids, camids, context)

    forward = __call__  # torchattacks' spelling

    def check_inputs(self, images, pids=None, camids=None):
        """``(x, pids, camids)`` checked (a 4-D float tensor in [0, 1] on the model's device), detached,
        labels as tensors on its device."""
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
        return x, pids, camids

    def perturb(self, images, pids=None, camids=None, context=None) -> torch.Tensor:
        x, pids, camids = self.check_inputs(images, pids, camids)
        self.last_diagnostics = {}
        with self._attack_mode(), rng.batch_scope(len(x)):
            self._generator = torch.Generator().manual_seed(self.seed)  # CPU: device-independent draws
            try:
                with rng.scope(step="prepare"):
                    state = self.prepare(x, pids, camids, context)
                x_adv = self.run_steps(x, state)
            finally:
                self._generator = None
        if self.quantize:
            x_adv = quantize_to_uint8_grid(x_adv, x, self.eps)
        return x_adv.to(images.dtype)

    @torch.no_grad()
    def objective(self, images: torch.Tensor, x_adv: torch.Tensor, pids=None, camids=None, context=None,
                  step: int = 0) -> torch.Tensor:
        """The attack's loss (B,) at ``x_adv`` for the clean ``images`` -- what the attack maximises;
        keyed draws (a random reference is the same for two calls on the same batch)."""
        x, pids, camids = self.check_inputs(images, pids, camids)
        with self._attack_mode(), rng.batch_scope(len(x)):
            self._generator = torch.Generator().manual_seed(self.seed)
            try:
                with rng.scope(step="prepare"):
                    state = self.prepare(x, pids, camids, context)
                with rng.scope(step=step, eot=0):
                    return self.loss(x_adv.to(x.dtype), state, step)
            finally:
                self._generator = None

    def run_steps(self, x: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Every restart of the schedule; per sample the run with the highest loss."""
        best_x, best_l = None, None
        for r in range(self.restarts):
            run = self._apgd if self.schedule == "apgd" else self._fixed
            x_r, l_r = run(x, state, r)
            if best_x is None:
                best_x, best_l = x_r, l_r
            elif l_r is not None:
                better = l_r > best_l
                best_x = torch.where(better.view(-1, *[1] * (x.ndim - 1)), x_r, best_x)
                best_l = torch.maximum(best_l, l_r)
        if best_l is not None:
            self.last_diagnostics["loss"] = best_l.detach()
        return best_x

    def _fixed(self, x: torch.Tensor, state: dict[str, Any], restart: int):
        """The literature's schedule: ``steps`` sign steps of ``alpha`` (MI-FGSM momentum if set);
        the last iterate, and its loss when restarts compare runs."""
        x_adv = self.init(x, random=True if restart else None)
        g_mom = torch.zeros_like(x) if self.momentum is not None else None
        for t in range(self.steps):
            grad, _ = self.grad_and_loss(x_adv, state, (restart, t) if restart else t)
            if t == 0 and restart == 0:
                self._record_zero_grad(grad)
            if g_mom is not None:
                dims = tuple(range(1, grad.ndim))
                norm = grad.abs().sum(dims, keepdim=True) if self.grad_norm == "l1" else grad.abs().mean(dims, keepdim=True)
                g_mom = self.momentum * g_mom + grad / norm.clamp(min=1e-12)
                direction = g_mom.sign()
            else:
                direction = grad.sign()
            x_adv = self.project(x_adv + self.step_size(x) * direction, x)
        loss = self.loss_value(x_adv, state, (restart, "final")) if self.restarts > 1 else None
        return x_adv, loss

    def _apgd(self, x: torch.Tensor, state: dict[str, Any], restart: int):
        """APGD (Croce & Hein 2020, Alg. 1) per sample: step 2 eps, halved at a checkpoint where fewer
        than 75 % of the steps since the last one raised the loss, or where neither the step nor the
        best loss changed; the iterate then restarts from the sample's best. Momentum 0.75.
        Returns the best iterate and its loss."""
        shape = (-1, *[1] * (x.ndim - 1))
        x_adv = self.init(x, random=True if restart else None)
        b = self.budget(x)
        scale = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        grad, loss = self.grad_and_loss(x_adv, state, (restart, 0))
        if restart == 0:
            self._record_zero_grad(grad)
        best_x, best_l, best_g = x_adv.clone(), loss.clone(), grad.clone()
        if self.steps <= 1:
            if self.steps == 1:
                x_one = self.project(x_adv + 2 * b * grad.sign(), x)
                l_one = self.loss_value(x_one, state, (restart, "final"))
                better = l_one > best_l
                best_x = torch.where(better.view(shape), x_one, best_x)
                best_l = torch.maximum(best_l, l_one)
            return best_x, best_l
        checkpoints = set(apgd_checkpoints(self.steps))
        x_prev = x_adv
        x_next = self.project(x_adv + 2 * b * grad.sign(), x)
        successes = torch.zeros_like(loss)
        last_check, scale_at_check, best_at_check = 0, scale.clone(), best_l.clone()
        prev_loss = loss
        for k in range(1, self.steps):
            x_prev, x_adv = x_adv, x_next
            grad, loss = self.grad_and_loss(x_adv, state, (restart, k))
            improved = loss > best_l
            best_x = torch.where(improved.view(shape), x_adv, best_x)
            best_g = torch.where(improved.view(shape), grad, best_g)
            best_l = torch.where(improved, loss, best_l)
            successes += (loss > prev_loss).to(successes.dtype)
            prev_loss = loss
            if k in checkpoints:
                stalled = successes < 0.75 * (k - last_check)
                stuck = (scale == scale_at_check) & (best_l <= best_at_check)
                reduce = stalled | stuck
                scale_at_check, best_at_check = scale.clone(), best_l.clone()
                scale = torch.where(reduce, scale / 2, scale)
                x_adv = torch.where(reduce.view(shape), best_x, x_adv)
                grad = torch.where(reduce.view(shape), best_g, grad)
                successes.zero_()
                last_check = k
            eta = 2 * b * scale.view(shape)
            z = self.project(x_adv + eta * grad.sign(), x)
            x_next = self.project(x_adv + 0.75 * (z - x_adv) + 0.25 * (x_adv - x_prev), x)
        loss = self.loss_value(x_next, state, (restart, self.steps))
        improved = loss > best_l
        best_x = torch.where(improved.view(shape), x_next, best_x)
        return best_x, torch.maximum(best_l, loss)

    def _record_zero_grad(self, grad: torch.Tensor) -> None:
        self.last_diagnostics["zero_grad"] = (grad.flatten(1).abs().amax(1) == 0).detach().cpu()

    def step_size(self, x: torch.Tensor) -> float | torch.Tensor:
        """The step of one iteration: ``alpha`` (a subclass may return a per-channel tensor, as ``budget``)."""
        return self.alpha

    def grad_and_loss(self, x_adv: torch.Tensor, state: dict[str, Any], step: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The input gradient of the loss and the loss (B,), each the mean over ``eot_samples``
        draws; every draw in its own keyed scope (step, EOT sample)."""
        total, total_loss = None, None
        t = step[1] if isinstance(step, tuple) else step
        for j in range(self.eot_samples):
            with rng.scope(step=step, eot=j):
                xa = x_adv.detach().requires_grad_(True)
                loss = self.loss(xa, state, t)
                if loss.ndim != 1 or loss.shape[0] != x_adv.shape[0]:
                    raise RuntimeError(f"{type(self).__name__}.loss must return one value per sample, got {tuple(loss.shape)}")
                (g,) = torch.autograd.grad(loss.sum(), xa)
            total = g if total is None else total + g
            total_loss = loss.detach() if total_loss is None else total_loss + loss.detach()
        if self.eot_samples > 1:
            return total / self.eot_samples, total_loss / self.eot_samples
        return total, total_loss

    def gradient(self, x_adv: torch.Tensor, state: dict[str, Any], step: int) -> torch.Tensor:
        """The input gradient of the loss (mean over EOT draws)."""
        return self.grad_and_loss(x_adv, state, step)[0]

    @torch.no_grad()
    def loss_value(self, x_adv: torch.Tensor, state: dict[str, Any], step: Any) -> torch.Tensor:
        """The loss (B,) without gradient, the mean over ``eot_samples`` keyed draws."""
        t = step[1] if isinstance(step, tuple) else step
        total = None
        for j in range(self.eot_samples):
            with rng.scope(step=step, eot=j):
                v = self.loss(x_adv, state, t if isinstance(t, int) else self.steps)
            total = v if total is None else total + v
        return total / self.eot_samples

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
        if self.schedule != "fixed":
            hp["schedule"] = self.schedule
        if self.restarts > 1:
            hp["restarts"] = self.restarts
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
