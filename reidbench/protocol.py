"""The attack protocol: from (model, attack spec, test-time defense, threat) to a ready attack and
the context its threat model grants.

Every command that attacks -- ``reidbench attack``, ``reidbench matrix`` (and so ``reproduce``),
``viz`` -- and adversarial training go through these functions, so that the rules below are written
once:

* **threats**: a model without a test-time defense is attacked white-box; with one, obliviously
  (the attacker differentiates the bare model) and adaptively (through the defense's
  differentiable twin or BPDA); a transfer attack (a generator fitted on a surrogate, DMR) has its
  own threat. :func:`threats_for`.
* **arguments** beyond the attack's spec: the seed, the budget and steps when given, ``quantize``
  when the adversarial images are written to files, EOT samples when an adaptive attack meets a
  randomised defense -- each only where the attack's class declares it supports it
  (``supports_quantize``, ``supports_eot``). :func:`attack_kwargs`; they are part of a cell's key.
* **context**: gallery features for M-IFGSM's guides, the query set as FNA's labelled set; an
  oblivious attacker computes them without the defense, an adaptive one through it.
  :func:`prepare_attack`.
* **the generative branch**: a transfer attack is fitted once per surrogate, dataset and
  configuration into the store and loaded from there. :func:`fitted_generator`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from . import __version__
from .registry import AttackSpec, DefenseSpec, parse_attack, parse_defense

log = logging.getLogger(__name__)

__all__ = ["Threat", "CLEAN", "threat_of", "threats_for", "attack_kwargs", "make_attack", "prepare_attack",
           "PreparedAttack", "Surrogate", "fitted_generator", "generator_config", "generator_info"]


class Threat(str, Enum):
    """What the attacker knows of the test-time defense (or of the model)."""

    CLEAN = "clean"            # no attack: the clean cell of a row
    WHITE_BOX = "white-box"    # a model without test-time defense, attacked with its gradients
    OBLIVIOUS = "oblivious"    # a defended model, attacked through the bare model (the seed's protocol)
    ADAPTIVE = "adaptive"      # through the defense: its differentiable twin or BPDA, EOT if randomised
    TRANSFER = "transfer"      # a generator fitted on a surrogate, applied in one forward pass

    def __str__(self) -> str:
        return self.value


#: the attack label of a row's clean cell
CLEAN = Threat.CLEAN.value


def threat_of(defended: bool, adaptive: bool) -> Threat:
    """The threat of one gradient attack: white-box on a bare model; on a defended one, adaptive
    (through the defense) or oblivious of it."""
    if not defended:
        return Threat.WHITE_BOX
    return Threat.ADAPTIVE if adaptive else Threat.OBLIVIOUS


def threats_for(attack: AttackSpec | str, defense: DefenseSpec | str | None, adaptive: bool = True) -> tuple[Threat, ...]:
    """The threats under which ``attack`` meets a row whose test-time defense is ``defense`` (the
    matrix runs the oblivious and the adaptive twin of each attack on a defended row)."""
    attack, defense = parse_attack(attack), parse_defense(defense)
    if attack.is_transfer:
        return (Threat.TRANSFER,)
    if defense.is_none or not adaptive:
        return (threat_of(not defense.is_none, False),)
    return (Threat.OBLIVIOUS, Threat.ADAPTIVE)


def _randomised(defense) -> bool:
    """Whether a test-time defense (a spec, its text, or a built Defense) draws random numbers."""
    if defense is None or isinstance(defense, (str, DefenseSpec)):
        return parse_defense(defense).randomised
    return not defense.deterministic


def attack_kwargs(attack: AttackSpec | str, threat: Threat | str, defense, *, seed: int,
                  eps: float | None = None, steps: int | None = None, alpha: float | None = None,
                  io: str = "memory", eot: int = 10) -> dict[str, Any]:
    """The arguments ``attack`` is built with: its spec's, the seed, the budget, steps and step size
    when given (else the attack's defaults), ``quantize`` when the images go through a file
    (``io`` other than memory), and ``eot_samples`` for an adaptive attack on a randomised defense."""
    attack = parse_attack(attack)
    kw: dict[str, Any] = {**attack.kwargs, "seed": seed}
    if eps is not None:
        kw["eps"] = eps
    if steps is not None:
        kw["steps"] = steps
    if alpha is not None:
        kw["alpha"] = alpha
    if io != "memory" and attack.attr("supports_quantize", True):
        kw["quantize"] = True
    if Threat(threat) is Threat.ADAPTIVE and _randomised(defense):
        if attack.attr("supports_eot", True):
            kw.setdefault("eot_samples", eot)
        else:
            log.warning("%s has no EOT: it attacks the randomised defense %s with one sample per step (the "
                        "board flags the cell no-eot)", attack.text, getattr(defense, "name", defense))
    return kw


def make_attack(model: nn.Module, attack: AttackSpec | str, defense, threat: Threat | str,
                kwargs: dict[str, Any] | None = None):
    """The attack object: built on the bare model (white-box, oblivious) or on the model behind the
    defense's attack transform (adaptive). ``defense``: the built test-time defense (or None)."""
    from .models.defended import DefendedModel

    attack = parse_attack(attack)
    threat = Threat(threat)
    if threat is Threat.TRANSFER:
        raise ValueError(f"{attack.text} is a transfer attack: get it from fitted_generator (or prepare_attack "
                         "with a surrogate)")
    if threat is Threat.ADAPTIVE:
        if defense is None:
            raise ValueError("an adaptive attack goes through a test-time defense: give one (e.g. --defense cs)")
        model = DefendedModel(model, defense, adaptive=True)
    return attack.build(model, **(kwargs or {}))


@dataclass
class Surrogate:
    """Where a transfer attack is fitted: a checkpoint and the dataset whose training split it uses."""

    checkpoint: str | os.PathLike
    dataset: Any
    device: str = "cpu"
    store: str | os.PathLike | None = None
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    on_fit: Callable[[float], None] | None = None   # called with the fitting time when a fit ran


@dataclass
class PreparedAttack:
    """A ready attack and the context its threat model grants."""

    attack: Any
    context: Any
    generator: dict[str, Any] | None = None  # transfer: the generator's provenance (generator_info)


def prepare_attack(model: nn.Module, attack: AttackSpec | str, defense, threat: Threat | str, evalset, *,
                   kwargs: dict[str, Any] | None = None, surrogate: Surrogate | None = None,
                   fitted: tuple[Any, Path] | None = None) -> PreparedAttack:
    """The one entry point: the ready attack on ``model`` (adaptive wrapping, EOT and quantisation
    through ``kwargs`` from :func:`attack_kwargs`) and its context from ``evalset`` (guides without
    the defense for an oblivious attacker, through it for an adaptive one). A transfer attack is
    loaded or fitted on ``surrogate`` (or given as ``fitted``: ``(attack, generator path)``)."""
    spec = parse_attack(attack)
    threat = Threat(threat)
    kwargs = dict(kwargs or {})
    if threat is Threat.TRANSFER:
        if fitted is None:
            if surrogate is None:
                raise ValueError(f"{spec.text} is fitted on a surrogate: give surrogate=Surrogate(checkpoint, dataset)")
            fitted = fitted_generator(spec, surrogate, eps=kwargs.get("eps"), seed=int(kwargs.get("seed", 0)))
        return PreparedAttack(fitted[0], evalset.context(), generator_info(*fitted))
    atk = make_attack(model, spec, defense, threat, kwargs)
    return PreparedAttack(atk, evalset.context(adaptive=threat is Threat.ADAPTIVE))


def generator_info(attack, path: str | os.PathLike) -> dict[str, Any]:
    """Provenance of a fitted generator: its weights' SHA-256 and its file."""
    return {"generator_sha256": attack.card["sha256"], "generator": str(path)}


def generator_config(attack: AttackSpec | str, dataset, *, eps: float | None = None, seed: int = 0,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor arguments of a transfer attack for ``dataset``: the class's fitting
    configuration for a synthetic or a real dataset, the spec's arguments, ``overrides`` (None
    values ignored), the seed and the budget."""
    spec = parse_attack(attack)
    cls = spec.entry.obj
    kw = dict(cls.fit_config(bool(getattr(dataset, "synthetic", False))))
    kw.update(spec.kwargs)
    kw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    kw["seed"] = seed
    if eps is not None:
        kw["eps"] = eps
    return kw


def fitted_generator(attack: AttackSpec | str, surrogate: Surrogate, *, eps: float | None = None,
                     seed: int = 0) -> tuple[Any, Path]:
    """A transfer attack fitted on ``surrogate``'s checkpoint with its dataset's training split:
    loaded from the store when this (surrogate, dataset, configuration, seed) was fitted before,
    fitted and saved otherwise (once across processes sharing the store; under torchrun by rank 0,
    which sends the file to the other ranks). Returns ``(attack, generator path)``; no model selection
    on the test set."""
    from . import distributed
    from .data import load_images
    from .models import load_checkpoint
    from .store import checkpoint_store, content_key, produce_once
    from .utils import atomic_path

    spec = parse_attack(attack)
    cls = spec.entry.obj
    dataset = surrogate.dataset
    store = Path(surrogate.store) if surrogate.store is not None else checkpoint_store()
    card = json.loads(Path(surrogate.checkpoint).with_suffix(".json").read_text())
    probe = cls(None, **generator_config(spec, dataset, eps=eps, seed=seed, overrides=surrogate.overrides))
    key = content_key({"surrogate": card["sha256"], "dataset": dataset.fingerprint(), "attack": probe.hyperparameters(),
                 "reidbench": __version__})
    path = store / spec.name / f"{spec.name}-{card.get('preset', 'model')}-{key[:12]}" / "generator.pt"

    def fit() -> None:
        t0 = time.perf_counter()
        model, _ = load_checkpoint(surrogate.checkpoint, device=surrogate.device)
        train = load_images(dataset.train, progress=surrogate.progress, desc="decoding train")
        probe.fit(model, train.images, train.pids, device=surrogate.device, progress=surrogate.progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.save(path, surrogate={"preset": card.get("preset"), "sha256": card["sha256"],
                                    "checkpoint": str(surrogate.checkpoint)},
                   dataset={"name": dataset.name, "fingerprint": dataset.fingerprint()})
        if surrogate.on_fit is not None:
            surrogate.on_fit(time.perf_counter() - t0)

    world = distributed.current()
    if world.distributed:  # torchrun: rank 0 fits (or finds) it and sends the file; no shared store needed
        blob = distributed.on_main(lambda: (produce_once(path, store, f"{spec.name}-" + key, f"{spec.title} fitting", fit),
                                            path.read_bytes())[1], world)
        if not path.is_file():
            with atomic_path(path) as tmp:
                tmp.write_bytes(blob)
    else:
        produce_once(path, store, f"{spec.name}-" + key, f"{spec.title} fitting", fit)
    return cls.load(path, device=surrogate.device), path
