"""Name -> object registries with case-insensitive look-up, aliases and helpful errors.

One registry per concept: :data:`ATTACKS`, :data:`DEFENSES`, :data:`MODELS`, :data:`DATASETS`.
Objects are registered with a decorator::

    from reidbench.registry import ATTACKS

    @ATTACKS.register("mifgsm", aliases=("m-ifgsm",), paper="Bai et al., arXiv 1901.10650")
    class MIFGSM(MetricAttack):
        ...

    ATTACKS.get("M-IFGSM")   # -> MIFGSM

An unknown name raises :class:`UnknownNameError` (a :class:`KeyError`) whose message lists the known
names and suggests the closest one.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "RegistryEntry", "UnknownNameError", "ATTACKS", "DEFENSES", "MODELS", "DATASETS"]


def _normalise(name: str) -> str:
    # "M_IFGSM", "m-ifgsm " and "m-IFGSM" are one name; hyphen vs underscore is a spelling detail.
    return name.strip().lower().replace("_", "-")


class UnknownNameError(KeyError):
    """A registry look-up failed. ``str()`` gives the plain message (KeyError would quote it)."""

    def __str__(self) -> str:  # KeyError.__str__ repr()s its argument
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    paper: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """First line of the object's docstring."""
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword defaults of the object's constructor (or of the function itself)."""
        target = self.obj.__init__ if inspect.isclass(self.obj) else self.obj
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return {}
        out = {}
        for p in sig.parameters.values():
            if p.name in ("self", "model") or p.default is inspect.Parameter.empty:
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = p.default
        return out


class Registry(Generic[T]):
    """A registry of named objects of one kind (``"attack"``, ``"dataset"``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}
        self._lookup: dict[str, str] = {}  # normalised name or alias -> canonical name
        self._prefixes: dict[str, Callable[[str], Any]] = {}

    def register(
        self,
        name: str | None = None,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        paper: str = "",
        **meta: Any,
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__`` lower-cased)."""

        def decorator(obj: T) -> T:
            canonical = _normalise(name or getattr(obj, "__name__", ""))
            if not canonical:
                raise ValueError(f"cannot register an unnamed {self.kind}")
            keys = [canonical, *(_normalise(a) for a in aliases)]
            for key in keys:
                owner = self._lookup.get(key)
                if owner is not None and self._entries[owner].obj is not obj:
                    raise ValueError(
                        f"{self.kind} name {key!r} is already registered by "
                        f"{self._entries[owner].obj!r}; pick another name or alias"
                    )
            self._entries[canonical] = RegistryEntry(
                canonical, obj, tuple(_normalise(a) for a in aliases), paper, dict(meta)
            )
            for key in keys:
                self._lookup[key] = canonical
            return obj

        return decorator

    def register_prefix(self, prefix: str, resolver: Callable[[str], Any], paper: str = "") -> None:
        """Names ``prefix:<rest>`` resolve through ``resolver(rest)`` (e.g. ``ta:PGD`` for any
        torchattacks attack); the rest keeps its case."""
        self._prefixes[prefix.lower().rstrip(":") + ":"] = resolver
        self._prefix_papers = getattr(self, "_prefix_papers", {})
        self._prefix_papers[prefix.lower().rstrip(":") + ":"] = paper

    def entry(self, name: str) -> RegistryEntry[T]:
        head, sep, rest = name.strip().partition(":")
        if sep and (head.lower() + ":") in self._prefixes:
            obj = self._prefixes[head.lower() + ":"](rest)
            return RegistryEntry(f"{head.lower()}:{rest}", obj, (), self._prefix_papers.get(head.lower() + ":", ""))
        key = _normalise(name)
        canonical = self._lookup.get(key)
        if canonical is None:
            raise UnknownNameError(self._unknown_message(name))
        return self._entries[canonical]

    def get(self, name: str) -> T:
        """The object registered as ``name`` or one of its aliases (case-insensitive)."""
        return self.entry(name).obj

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        if not known:
            return f"unknown {self.kind} {name!r}: no {self.kind} is registered"
        close = difflib.get_close_matches(_normalise(name), list(self._lookup), n=1, cutoff=0.5)
        hint = f" Did you mean {self._lookup[close[0]]!r}?" if close else ""
        prefixes = "".join(f" Also: {p}<name>." for p in self._prefixes)
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known)}.{prefixes}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        head, sep, _ = name.strip().partition(":")
        return (sep and (head.lower() + ":") in self._prefixes) or _normalise(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


ATTACKS: Registry[Any] = Registry("attack")
DEFENSES: Registry[Any] = Registry("defense")
MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")


def load_plugins(group: str = "reidbench.plugins") -> list[str]:
    """Import the modules that third-party packages declare under the ``reidbench.plugins`` entry
    point group, so that their ``@ATTACKS.register(...)`` decorators run. Returns their names.

    A package adds, in its pyproject.toml::

        [project.entry-points."reidbench.plugins"]
        myattacks = "mypackage.attacks"
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=group):
        ep.load()
        loaded.append(ep.name)
    return loaded
