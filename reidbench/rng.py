"""Keyed randomness: every random draw of an attack or a randomised defense derives from *where it
happens*, not from a generator shared across calls.

A draw's seed is the hash of the scope it happens in -- the run's key (a matrix cell's key), the
purpose (``attack``, ``query``, ``gallery``), the sample's index in its set, the attack's step and
EOT sample -- and of the drawing component's tag (``cs-r:0``, ``lta:0:reference``) and how many
times that tag drew in this scope. A matrix run in another order, resumed after a kill or restricted
to some cells, or a query attacked in another batch, therefore sees exactly the same draws.

The pipeline opens the scopes (:func:`reidbench.evaluation.extract_features`,
:func:`reidbench.attacks.evaluate.attack_queries`, the attack engine's steps, the matrix's cells);
components only ask for per-sample generators::

    gens = rng.sample_generators(len(x), "cs-r:0")   # None outside any scope with indices
    if gens is None:
        gens = [self.generator] * len(x)           # the component's own generator (order-dependent)

Outside every scope (a defense called by hand) a component falls back to its own generator, as
before; inside the library's pipeline, draws are keyed.
"""

from __future__ import annotations

import contextvars
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

import torch

__all__ = ["scope", "batch_scope", "current", "sample_generators", "derive_seed", "uniform", "Scope", "Generators"]

#: one generator for the whole batch, or one per sample (keyed draws)
Generators = "torch.Generator | list[torch.Generator]"


@dataclass(frozen=True)
class Scope:
    """Where draws happen now. ``indices``: the samples of the batch being processed, in batch
    order (their positions in the query or gallery set)."""

    key: str = ""
    purpose: str = ""
    indices: tuple[int, ...] | None = None
    step: Any = None
    eot: int | None = None
    counters: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("reidbench_rng_scope", default=None)


def current() -> Scope | None:
    """The innermost open scope (None outside every scope)."""
    return _CURRENT.get()


@contextmanager
def scope(*, key: str | None = None, purpose: str | None = None, indices: Iterable[int] | None = None,
          step: Any = None, eot: int | None = None) -> Iterator[Scope]:
    """Open a scope inside the current one: the given fields replace the outer ones (``None`` keeps
    them), and the per-tag draw counters start afresh."""
    outer = _CURRENT.get() or Scope()
    changes: dict[str, Any] = {"counters": {}}
    if key is not None:
        changes["key"] = str(key)
    if purpose is not None:
        changes["purpose"] = str(purpose)
    if indices is not None:
        changes["indices"] = tuple(int(i) for i in indices)
    if step is not None:
        changes["step"] = step
    if eot is not None:
        changes["eot"] = int(eot)
    token = _CURRENT.set(replace(outer, **changes))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


@contextmanager
def batch_scope(n: int) -> Iterator[Scope]:
    """The scope of a batch of ``n`` samples: the current one when it already knows ``n`` samples
    (the pipeline opened it with their indices), else one keyed by position in the batch (a
    component called by hand)."""
    outer = _CURRENT.get()
    known = outer is not None and outer.indices is not None and len(outer.indices) == n
    with scope(indices=None if known else range(n)) as s:
        yield s


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (their ``repr``), stable across processes, machines and runs."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generators(n: int, tag: str) -> list[torch.Generator] | None:
    """One CPU generator per sample of a batch of ``n``, seeded from the current scope, the sample's
    index, ``tag`` and how many times ``tag`` drew in this scope; None outside any scope that
    knows its samples. A batch whose size differs from the scope's indices (a component that
    processes something else than the scope's batch) is keyed by position within it."""
    s = _CURRENT.get()
    if s is None or s.indices is None:
        return None
    call = s.counters.get(tag, 0)
    s.counters[tag] = call + 1
    if len(s.indices) == n:
        ids: Iterable[Any] = s.indices
    else:
        ids = (("pos", s.indices[:1], len(s.indices), j) for j in range(n))
    return [torch.Generator().manual_seed(derive_seed(s.key, s.purpose, i, s.step, s.eot, tag, call)) for i in ids]


def uniform(generators: "torch.Generator | list[torch.Generator] | None", n: int, *shape: int, low: float = 0.0,
            high: float = 1.0) -> torch.Tensor:
    """(n, *shape) draws from U(low, high) on the CPU: from one generator for the whole batch (the
    draws of ``torch.rand``), or row ``i`` from ``generators[i]`` (keyed per-sample draws)."""
    if generators is None or isinstance(generators, torch.Generator):
        if (low, high) == (0.0, 1.0):
            return torch.rand(n, *shape, generator=generators)
        return torch.empty(n, *shape).uniform_(low, high, generator=generators)
    gens = list(generators)
    if len(gens) != n:
        raise ValueError(f"{len(gens)} generators for a batch of {n}")
    if not gens:
        return torch.empty(0, *shape)
    return torch.stack([torch.empty(shape).uniform_(low, high, generator=g) for g in gens])
