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
import importlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "RegistryEntry", "UnknownNameError", "ATTACKS", "DEFENSES", "MODELS", "ARCHITECTURES", "REPRODUCTIONS",
           "DATASETS", "Spec", "AttackSpec", "DefenseSpec", "parse_spec", "split_specs", "parse_attack",
           "parse_attacks", "parse_defense", "parse_defenses", "attack_suite", "resolve_dataset", "load_plugins",
           "PLUGINS_ENV", "format_eps", "same_name"]


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

    def attr(self, key: str, default: Any = None) -> Any:
        """Metadata ``key``: declared on the registered class (``title = "LTA"``) or, for objects
        that are not classes (presets), given to :meth:`Registry.register`."""
        if key in self.meta:
            return self.meta[key]
        return getattr(self.obj, key, default)

    @property
    def title(self) -> str:
        """The name shown in tables and figures (``"M-IFGSM"``); the canonical name by default."""
        return self.attr("title") or self.name

    @property
    def summary(self) -> str:
        """First line of the object's docstring."""
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword defaults of the object's constructor (or of the function itself); an object that is
        neither (a model preset) lists its own through ``listed_defaults()``."""
        listed = getattr(self.obj, "listed_defaults", None)
        if callable(listed) and not inspect.isclass(self.obj):
            return listed()
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
        #: how several entries compose into one (defenses: ``ComposedDefense``), set by their package
        self.compose: Callable[[list[Any]], Any] | None = None

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
        if canonical is None and not _builtins_loaded:
            load_builtins()  # a look-up before reidbench's own modules registered their entries
            return self.entry(name)
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
#: model presets (architecture + recipe + the defenses a preset carries): ``baseline``, ``jad``, ...
MODELS: Registry[Any] = Registry("model")
#: network architectures (``ft_net``, ``resnet-small``, ...): what a preset or ``--arch`` names
ARCHITECTURES: Registry[Any] = Registry("architecture")
DATASETS: Registry[Any] = Registry("dataset")
#: paper reproductions (``reidbench reproduce NAME``): a runner that plans the paper's protocol as
#: matrix cells and returns reidbench's numbers next to the paper's
REPRODUCTIONS: Registry[Any] = Registry("reproduction")


def same_name(a: str, b: str) -> bool:
    """Whether two user-given spellings name the same thing (``"M_IFGSM"`` and ``"m-ifgsm"``)."""
    return _normalise(a) == _normalise(b)


def format_eps(v: float) -> str:
    """0.0196 -> '5/255' when it is a whole number of grey levels, else the number."""
    k = v * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{v:.6g}"


# ------------------------------------------------------------------------------- the spec grammar
def _split_top_level(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` outside parentheses (pieces stripped, empty ones kept)."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {text!r}")
        if ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced '(' in {text!r}")
    out.append("".join(cur).strip())
    return out


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses:
    ``"cs(sizes=P1),jpeg(quality=50, x=1)"`` -> ``["cs(sizes=P1)", "jpeg(quality=50, x=1)"]``."""
    return [p for p in _split_top_level(text, ",") if p]


def parse_value(raw: str) -> Any:
    """A spec or option value: JSON where it parses (``50``, ``0.5``, ``true``, ``[110, 50]``), a
    fraction for budgets (``8/255``), the text itself otherwise (``P1``). Nothing is evaluated."""
    raw = raw.strip()
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if "/" in raw:
            try:
                return float(Fraction(raw))
            except (ValueError, ZeroDivisionError):
                pass
        return raw


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"jpeg(quality=50)"`` -> ``("jpeg", {"quality": 50})``; a bare name has no arguments.

    Values are read by :func:`parse_value`: JSON where they parse (``50``, ``0.5``, ``true``,
    ``[110, 50]``), fractions for budgets (``eps=8/255``), strings otherwise (``sizes=P1``)."""
    spec = spec.strip()
    m = re.fullmatch(r"([^()]+?)\s*(?:\((.*)\))?", spec, flags=re.S)
    if not m or not m.group(1).strip():
        raise ValueError(f"cannot read {spec!r}: expected NAME or NAME(key=value, ...)")
    name, body = m.group(1).strip(), m.group(2)
    kwargs: dict[str, Any] = {}
    for item in split_specs(body.replace("[", "(").replace("]", ")")) if body else []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"cannot read {item!r} in {spec!r}: expected key=value")
        kwargs[key.strip()] = parse_value(raw.replace("(", "[").replace(")", "]"))
    return name, kwargs


def _format_value(key: str, v: Any) -> str:
    if isinstance(v, float) and key in ("eps", "alpha"):
        return format_eps(v)
    if isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.:-]+", v) and v not in ("true", "false", "null"):
        try:
            json.loads(v)
        except json.JSONDecodeError:
            return v  # a bare word (sizes=P1) reads back as itself
    return json.dumps(v)


@dataclass(frozen=True, eq=False)
class Spec:
    """A registry entry and its arguments, parsed once from ``name(key=value, ...)``.

    ``name`` is the canonical registry name (aliases and case resolved); ``kwargs`` the arguments.
    :attr:`text` is the canonical spelling (sorted arguments), which is what cells, records, slugs
    and tables carry; a spec equals its text, so ``spec == "sma"`` reads naturally in tests."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    registry: Registry = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def text(self) -> str:
        if not self.kwargs:
            return self.name
        args = ", ".join(f"{k}={_format_value(k, v)}" for k, v in sorted(self.kwargs.items()))
        return f"{self.name}({args})"

    @property
    def entry(self) -> RegistryEntry:
        return self.registry.entry(self.name)

    @property
    def title(self) -> str:
        return self.entry.title

    def attr(self, key: str, default: Any = None) -> Any:
        return self.entry.attr(key, default)

    def _error(self, problem: str) -> ValueError:
        return ValueError(f"{self.registry.kind} {self.text!r}: {problem}; it accepts "
                          f"{', '.join(self.entry.defaults) or 'no arguments'}")

    def construct(self, *args: Any, **kwargs: Any) -> Any:
        """The entry built with ``args``, the spec's arguments and ``kwargs`` (which win); a
        constructor that refuses them is a ValueError that lists what it accepts."""
        try:
            return self.entry.obj(*args, **{**self.kwargs, **kwargs})
        except TypeError as e:
            raise self._error(str(e)) from None

    def validate(self) -> "Spec":
        """Check that the entry's constructor takes these arguments (without building it)."""
        obj = self.entry.obj
        if not self.kwargs or not callable(obj):
            return self
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return self
        params = sig.parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return self
        unknown = sorted(set(self.kwargs) - {p.name for p in params})
        if unknown:
            raise self._error(f"no argument {', '.join(map(repr, unknown))}")
        return self

    def with_kwargs(self, **kwargs: Any) -> "Spec":
        return type(self)(self.name, {**self.kwargs, **kwargs}, self.registry)

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.text == other
        return type(other) is type(self) and self.text == other.text  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.text)


@dataclass(frozen=True, eq=False)
class AttackSpec(Spec):
    """An attack and its arguments. Its metadata is declared on the attack's class:

    * ``title``: the board's column title; ``order``: the column's place (lower first);
    * ``kind``: ``"white-box"`` (gradient attack on the model), ``"transfer"`` (a generator fitted
      once on a surrogate, then transferred: DMR) or ``"classifier"`` (torchattacks on the identity
      head);
    * ``context``: what its threat model grants besides the image: ``"none"``, ``"gallery"``
      (same-identity gallery features) or ``"attacker-set"`` (a labelled set of the attacker's);
    * ``randomised``: it draws random numbers (random start, random references);
    * ``in_all``: part of ``--attacks all``; the default budget is the constructor's ``eps``."""

    registry: Registry = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.registry is None:
            object.__setattr__(self, "registry", ATTACKS)

    @property
    def kind(self) -> str:
        return self.attr("kind", "white-box")

    @property
    def context(self) -> str:
        return self.attr("context", "none")

    @property
    def is_transfer(self) -> bool:
        return self.kind == "transfer"

    @property
    def default_eps(self) -> float | None:
        eps = self.kwargs.get("eps", self.entry.defaults.get("eps"))
        return None if eps is None else float(Fraction(eps))  # a float, or a text such as "5/255"

    @property
    def numerics(self) -> str:
        """The version of the attack's numerics (its class's ``numerics``; ``"0"`` when undeclared):
        part of a matrix cell's key, so a change of the attack's numbers makes new cells."""
        return str(self.attr("numerics", "0"))

    def build(self, model: Any, **kwargs: Any) -> Any:
        """The attack on ``model``: the spec's arguments, then ``kwargs`` (which win)."""
        return self.construct(model, **kwargs)


@dataclass(frozen=True, eq=False)
class DefenseSpec:
    """A test-time or training defense, possibly composed (``"pd+cs"``), each part with its
    arguments. No parts is ``none``: the model as it is."""

    parts: tuple[Spec, ...] = ()

    NONE_TEXT = "none"

    @property
    def text(self) -> str:
        return "+".join(p.text for p in self.parts) if self.parts else self.NONE_TEXT

    @property
    def is_none(self) -> bool:
        return not self.parts

    @property
    def name(self) -> str:
        return self.text

    @property
    def randomised(self) -> bool:
        """Whether any part declares itself non-deterministic (``deterministic = False``)."""
        return any(not p.attr("deterministic", True) for p in self.parts)

    @property
    def numerics(self) -> dict[str, str]:
        """Each part's numerics version (its class's ``numerics``; ``"0"`` when undeclared)."""
        return {p.name: str(p.attr("numerics", "0")) for p in self.parts}

    def __add__(self, other: "DefenseSpec") -> "DefenseSpec":
        return DefenseSpec(self.parts + other.parts)

    def with_kwargs(self, **kwargs: Any) -> "DefenseSpec":
        """The same defense with ``kwargs`` added to its arguments (a single defense only: a
        composition's arguments are written per part, ``cs+jpeg(quality=50)``)."""
        if not kwargs:
            return self
        if len(self.parts) != 1:
            raise ValueError(f"keyword arguments apply to a single defense, not to {self.text!r}; write "
                             "them in the name, e.g. 'cs+jpeg(quality=50)'")
        return DefenseSpec((self.parts[0].with_kwargs(**kwargs),))

    def build(self) -> Any:
        """The :class:`~reidbench.defenses.Defense` (a composition for several parts); None for none."""
        if not self.parts:
            return None
        built = [p.construct() for p in self.parts]
        if len(built) == 1:
            return built[0]
        if DEFENSES.compose is None:
            raise RuntimeError("composing defenses needs reidbench.defenses imported")
        return DEFENSES.compose(built)

    def __str__(self) -> str:
        return self.text

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.text == other
        return isinstance(other, DefenseSpec) and self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)


def _entry_spec(registry: Registry, text: str, cls: type = Spec) -> Spec:
    name, kwargs = parse_spec(text)
    entry = registry.entry(name)  # unknown names: UnknownNameError with a suggestion
    return cls(entry.name, kwargs, registry)


def parse_attack(text: "str | AttackSpec", **kwargs: Any) -> AttackSpec:
    """``"mifgsm(gong_faithful=true)"`` -> ``AttackSpec("mifgsm", {"gong_faithful": True})``;
    ``ta:PGD`` names a torchattacks attack. ``kwargs`` are added to the spec's arguments."""
    spec = text if isinstance(text, AttackSpec) else _entry_spec(ATTACKS, text, AttackSpec)
    return spec.with_kwargs(**kwargs) if kwargs else spec  # type: ignore[return-value]


def attack_suite() -> tuple[AttackSpec, ...]:
    """``--attacks all``: the attacks that declare ``in_all``, in board order (plugins included)."""
    if not _builtins_loaded:
        load_builtins()
    entries = [e for e in ATTACKS.entries() if e.attr("in_all", False)]
    entries.sort(key=lambda e: (e.attr("order", 100), e.name))
    return tuple(AttackSpec(e.name, {}, ATTACKS) for e in entries)


ALL_WORD = "all"


def parse_attacks(text: "str | list[str] | tuple") -> tuple[AttackSpec, ...]:
    """A comma-separated list (or a list) of attack specs; ``all`` expands to :func:`attack_suite`.
    Duplicates are dropped, order kept."""
    items = split_specs(text) if isinstance(text, str) else [t for t in text if str(t).strip()]
    out: list[AttackSpec] = []
    for item in items:
        if isinstance(item, str) and same_name(item, ALL_WORD):
            out.extend(attack_suite())
        else:
            out.append(parse_attack(item))
    return tuple(dict.fromkeys(out))


def parse_defense(text: "str | DefenseSpec | None") -> DefenseSpec:
    """``"cs"``, ``"cs+jpeg(quality=50)"``, ``"none"`` (or None, or empty) -> a :class:`DefenseSpec`."""
    if isinstance(text, DefenseSpec):
        return text
    if text is None or not str(text).strip() or same_name(str(text), DefenseSpec.NONE_TEXT):
        return DefenseSpec(())
    parts = []
    for piece in _split_plus(str(text)):
        if same_name(piece, DefenseSpec.NONE_TEXT):
            continue
        parts.append(_entry_spec(DEFENSES, piece))
    return DefenseSpec(tuple(parts))


def _split_plus(text: str) -> list[str]:
    out = _split_top_level(text, "+")
    if not all(out):
        raise ValueError(f"cannot read {text!r}: expected NAME or NAME+NAME, each optionally NAME(key=value, ...)")
    return out


def parse_defenses(text: "str | list[str] | tuple") -> tuple[DefenseSpec, ...]:
    """A comma-separated list of defense specs (``"cs(sizes=P1),jpeg"``); ``none`` is kept once."""
    items = split_specs(text) if isinstance(text, str) else list(text)
    return tuple(dict.fromkeys(parse_defense(i) for i in items))


def resolve_dataset(name: str) -> tuple[RegistryEntry, str | None]:
    """A dataset name as a user or a checkpoint card gives it -> (entry, variant). A name that is
    not registered but is ``<registered>-<variant>`` with a variant the class declares in
    ``variants`` (``synthreid-large``, a card's name) resolves to that entry and variant."""
    try:
        return DATASETS.entry(name), None
    except UnknownNameError:
        head, sep, variant = name.strip().rpartition("-")
        if sep and head in DATASETS:
            entry = DATASETS.entry(head)
            if variant in tuple(entry.attr("variants", ())):
                return entry, variant
        raise


# ------------------------------------------------------------------------------------- plugins
PLUGINS_ENV = "REIDBENCH_PLUGINS"
_loaded_plugins: set[str] = set()
_builtins_loaded = False


def load_plugins(group: str = "reidbench.plugins") -> list[str]:
    """Import the plugin modules, so that their ``@ATTACKS.register(...)`` (and other registry)
    decorators run: the modules that installed packages declare under the ``reidbench.plugins``
    entry-point group, and the modules named in the environment variable ``REIDBENCH_PLUGINS``
    (comma-separated, importable from ``sys.path`` or the current folder). Returns the names
    loaded by this call; a module is imported once.

    A package adds, in its pyproject.toml::

        [project.entry-points."reidbench.plugins"]
        myattacks = "mypackage.attacks"

    A module that cannot be imported is an error that names it and the variable.
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=group):
        if ep.value in _loaded_plugins:
            continue
        ep.load()
        _loaded_plugins.add(ep.value)
        loaded.append(ep.name)
    for mod in split_specs(os.environ.get(PLUGINS_ENV, "")):
        if mod in _loaded_plugins:
            continue
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ImportError(f"{PLUGINS_ENV} names module {mod!r}, which cannot be imported ({e}); put its folder "
                              f"on PYTHONPATH or install its package") from e
        _loaded_plugins.add(mod)
        loaded.append(mod)
    return loaded


def load_builtins() -> None:
    """Import reidbench's own registering modules (datasets, models, attacks, defenses) and the
    plugins: after this call every name a user may give is registered."""
    global _builtins_loaded
    _builtins_loaded = True
    for mod in ("reidbench.data", "reidbench.models", "reidbench.attacks", "reidbench.defenses", "reidbench.reproduce"):
        importlib.import_module(mod)
    load_plugins()
