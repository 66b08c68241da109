"""Planning the evaluation matrix: which cells exist and what identifies each one.

A cell = model preset x test-time defense x attack x threat x dataset x seed (+ one clean cell per
model, defense, dataset and seed). Its key is the SHA-256 of everything that determines its result:
the resolved configuration, reidbench's version, the checkpoint's SHA-256 and the dataset's
fingerprint -- so a finished cell is found again by recomputing its key, and a change of any of these
inputs makes a new cell instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from .. import __version__
from ..protocol import CLEAN, Threat, threats_for
from ..registry import (AttackSpec, DefenseSpec, attack_suite, format_eps, parse_attack, parse_attacks,
                        parse_defense, parse_defenses, resolve_dataset)

__all__ = ["MatrixConfig", "Cell", "plan_cells", "cell_key", "resolve_attacks", "THREATS", "defense_label"]

#: the threats of attack cells (the clean cell's is ``clean``)
THREATS = tuple(t.value for t in Threat if t is not Threat.CLEAN)


def __getattr__(name: str):
    if name == "ALL_ATTACKS":  # ``--attacks all``, derived from the registry (attacks declaring in_all)
        return tuple(s.text for s in attack_suite())
    raise AttributeError(name)


@dataclass(frozen=True)
class MatrixConfig:
    """Everything ``reidbench matrix`` resolves from its options. Names are parsed here, once, into
    registry specs: ``attacks`` (``"all"`` expands), ``defenses`` (``"none"``: the model as its
    preset defines it), ``models`` and ``dataset`` (canonical registry names)."""

    models: tuple[str, ...] = ("baseline", "jad")
    attacks: tuple[AttackSpec, ...] = ("all",)  # type: ignore[assignment]
    defenses: tuple[DefenseSpec, ...] = ("none",)  # type: ignore[assignment]  # extra test-time defenses
    dataset: str = "synthreid"
    data_root: str | None = None
    synth_size: str = "default"
    eps: tuple[float | None, ...] = (None,)    # None: each attack's default budget
    steps: int | None = None                    # None: each attack's default (15)
    seeds: tuple[int, ...] = (0,)
    rerank: bool = True
    adaptive: bool = True                       # adaptive twins for rows with a test-time transform
    eot: int = 10                               # EOT samples for randomised test-time defenses
    io: str = "memory"
    surrogate: str = "baseline"                 # preset DMR is fitted on
    epochs: int | None = None                   # override every preset's epochs (smoke runs)
    init: str | None = None                     # "imagenet" / "scratch" for every preset (None: each preset's)
    dmr_epochs: int | None = None
    device: str = "cpu"
    batch_size: int = 64
    ap: str = "torchreid"
    #: queries the self-checks attack again with 4x the iterations (0: no self-checks); not part of
    #: a cell's key (checks measure a cell, they do not change its numbers)
    checks: int = 32
    #: extra keyword arguments per attack name, e.g. ``{"mifgsm": {"gong_faithful": True}}``: merged
    #: into those attacks' specs (and so into each cell's key)
    attack_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..models import get_preset
        from ..models.architectures import INIT_CHOICES, parse_init

        args = {parse_attack(k).name: v for k, v in self.attack_args.items()}
        attacks = tuple(s.with_kwargs(**args[s.name]) if s.name in args else s for s in parse_attacks(list(self.attacks)))
        defenses = parse_defenses(list(self.defenses))
        set_ = object.__setattr__
        set_(self, "attacks", attacks)
        set_(self, "defenses", defenses)
        set_(self, "models", tuple(get_preset(m).name for m in self.models))
        if self.init is not None:  # canonical spelling (a bad one fails here, with the choices)
            set_(self, "init", INIT_CHOICES[int(parse_init(self.init))])
        try:
            set_(self, "dataset", resolve_dataset(self.dataset)[0].name)
        except KeyError:
            pass  # run_matrix fails on it when it opens the dataset, with the registry's suggestion
        set_(self, "attack_args", args)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["attacks"] = [a.text for a in self.attacks]
        d["defenses"] = [x.text for x in self.defenses]
        return d


@dataclass(frozen=True)
class Cell:
    """One measurement: a row (model, test-time defense), an attack under a threat, a budget and a
    seed. ``attack`` is an :class:`~reidbench.registry.AttackSpec` (``"clean"`` for the row's clean
    cell), ``defense`` a :class:`~reidbench.registry.DefenseSpec`, ``threat`` a
    :class:`~reidbench.protocol.Threat`; strings are parsed. ``attack_kwargs`` are merged into the
    attack's spec and mirror its arguments."""

    model: str
    defense: DefenseSpec
    attack: AttackSpec | str
    threat: Threat
    dataset: str
    seed: int
    eps: float | None = None
    steps: int | None = None
    attack_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "defense", parse_defense(self.defense))
        set_(self, "threat", Threat(self.threat))
        if self.threat is Threat.CLEAN:
            set_(self, "attack", CLEAN)
            return
        spec = parse_attack(self.attack, **self.attack_kwargs)
        set_(self, "attack", spec)
        set_(self, "attack_kwargs", dict(spec.kwargs))

    @property
    def is_clean(self) -> bool:
        return self.threat is Threat.CLEAN

    @property
    def attack_name(self) -> str:
        return CLEAN if self.is_clean else self.attack.name  # type: ignore[union-attr]

    @property
    def budget(self) -> float | None:
        """The resolved L-inf budget: the cell's, else the attack's default (None for clean)."""
        if self.is_clean:
            return None
        return self.eps if self.eps is not None else self.attack.default_eps  # type: ignore[union-attr]

    def spec(self) -> dict[str, Any]:
        """The JSON form hashed into the key and stored in the record (names as text)."""
        return {"model": self.model, "defense": self.defense.text, "attack": self.attack_name,
                "threat": self.threat.value, "dataset": self.dataset, "seed": self.seed, "eps": self.eps,
                "steps": self.steps, "attack_kwargs": dict(self.attack_kwargs)}

    def slug(self) -> str:
        parts = [self.model, self.defense.text, self.attack_name, self.threat.value, f"s{self.seed}"]
        if self.eps is not None:
            parts.append(f"e{self.eps * 255:g}")
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "__".join(parts))

    def label(self) -> str:
        """``lta 5/255 adaptive`` -- for progress bars and logs."""
        if self.is_clean:
            return f"{self.model}/{self.defense}/clean"
        eps = format_eps(self.budget) if self.budget is not None else "default"
        return f"{self.model}/{self.defense}/{self.attack} {eps} {self.threat}"


def defense_label(preset_defense: str | DefenseSpec | None, extra: str | DefenseSpec | None) -> DefenseSpec:
    """Test-time defense of a row: the preset's own (e.g. jad carries cs) composed with an extra one."""
    return parse_defense(preset_defense) + parse_defense(extra)


def resolve_attacks(names) -> tuple[AttackSpec, ...]:
    """Attack specs from names (``all`` expands; aliases resolve; unknown names: a KeyError with a
    suggestion). A spec equals its canonical text."""
    return parse_attacks(list(names) if not isinstance(names, str) else names)


def plan_cells(config: MatrixConfig, preset_defenses: dict[str, str | None] | None = None) -> list[Cell]:
    """Every cell of the matrix, in run order. ``preset_defenses`` maps a preset to the test-time
    defense it carries (read from the registry when not given)."""
    from ..models import get_preset

    cells: list[Cell] = []
    for seed in config.seeds:
        for model in config.models:
            own = (preset_defenses or {}).get(model) if preset_defenses is not None else get_preset(model).test_defense
            for extra in config.defenses:
                row = defense_label(own, extra)
                cells.append(Cell(model, row, CLEAN, Threat.CLEAN, config.dataset, seed))
                for eps in config.eps:
                    for attack in config.attacks:
                        for threat in threats_for(attack, row, config.adaptive):
                            steps = None if threat is Threat.TRANSFER else config.steps
                            cells.append(Cell(model, row, attack, threat, config.dataset, seed, eps, steps))
    return cells


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_key(cell: Cell, *, checkpoint_sha256: str, dataset_fingerprint: str, extra: dict[str, Any] | None = None,
             version: str = __version__) -> str:
    """SHA-256 of what determines the cell's result. ``extra``: further determining inputs resolved
    at run time (the attack's hyper-parameters, the surrogate's generator hash, the evaluation
    options: re-ranking, AP definition, I/O, EOT)."""
    payload = {"cell": cell.spec(), "checkpoint": checkpoint_sha256, "dataset": dataset_fingerprint,
               "reidbench": version, "extra": extra or {}}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()
