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
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import __version__

__all__ = ["MatrixConfig", "Cell", "plan_cells", "cell_key", "ALL_ATTACKS", "resolve_attacks", "THREATS",
           "defense_label"]

#: ``--attacks all``: the canonical metric attacks of the literature (variants such as LTA*, M-FGSM,
#: FNA-pull and torchattacks' attacks are run by naming them).
ALL_ATTACKS = ("sma", "lta", "mifgsm", "fna", "odfa", "dmr")
#: attacks fitted once on a surrogate and transferred to every model
TRANSFER_ATTACKS = ("dmr",)
THREATS = ("white-box", "oblivious", "adaptive", "transfer")


@dataclass(frozen=True)
class MatrixConfig:
    """Everything ``reidbench matrix`` resolves from its options."""

    models: tuple[str, ...] = ("baseline", "jad")
    attacks: tuple[str, ...] = ALL_ATTACKS
    defenses: tuple[str, ...] = ("none",)       # extra test-time defenses; "none" = the preset as it is
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
    dmr_epochs: int | None = None
    device: str = "cpu"
    batch_size: int = 64
    ap: str = "torchreid"
    #: extra keyword arguments per attack name, e.g. ``{"mifgsm": {"gong_faithful": True}}``; they
    #: are part of each cell (and so of its key)
    attack_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One measurement. ``attack`` is ``"clean"`` for the clean cell."""

    model: str
    defense: str            # test-time defense row label: "none", "cs", "cs+jpeg", ...
    attack: str
    threat: str             # white-box | oblivious | adaptive | transfer | clean
    dataset: str
    seed: int
    eps: float | None = None
    steps: int | None = None
    attack_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_clean(self) -> bool:
        return self.attack == "clean"

    def spec(self) -> dict[str, Any]:
        return asdict(self)

    def slug(self) -> str:
        parts = [self.model, self.defense, self.attack, self.threat, f"s{self.seed}"]
        if self.eps is not None:
            parts.append(f"e{self.eps * 255:g}")
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "__".join(parts))


def defense_label(preset_defense: str | None, extra: str) -> str:
    """Test-time defense of a row: the preset's own (e.g. jad carries cs) composed with an extra one."""
    parts = [p for p in (preset_defense, extra) if p and p.lower() != "none"]
    return "+".join(parts) if parts else "none"


def resolve_attacks(names) -> tuple[str, ...]:
    from .. import attacks  # noqa: F401  (registers the attacks)
    from ..registry import ATTACKS

    out: list[str] = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n.lower() == "all":
            out.extend(ALL_ATTACKS)
        elif n.lower().startswith("ta:"):
            out.append(n)
        else:
            out.append(ATTACKS.entry(n).name)  # unknown names: KeyError with a suggestion
    return tuple(dict.fromkeys(out))


def plan_cells(config: MatrixConfig, preset_defenses: dict[str, str | None] | None = None) -> list[Cell]:
    """Every cell of the matrix, in run order. ``preset_defenses`` maps a preset to the test-time
    defense it carries (read from the registry when not given)."""
    from .. import defenses  # noqa: F401  (registers the defense-carrying presets)
    from ..models import get_preset

    cells: list[Cell] = []
    for seed in config.seeds:
        for model in config.models:
            own = (preset_defenses or {}).get(model) if preset_defenses is not None else get_preset(model).test_defense
            for extra in config.defenses:
                label = defense_label(own, extra)
                cells.append(Cell(model, label, "clean", "clean", config.dataset, seed))
                for eps in config.eps:
                    for attack in config.attacks:
                        kw = dict(config.attack_args.get(attack, {}))
                        if attack in TRANSFER_ATTACKS:
                            cells.append(Cell(model, label, attack, "transfer", config.dataset, seed, eps, None, kw))
                            continue
                        threats = ("white-box",) if label == "none" else \
                            (("oblivious", "adaptive") if config.adaptive else ("oblivious",))
                        for threat in threats:
                            cells.append(Cell(model, label, attack, threat, config.dataset, seed, eps, config.steps,
                                              dict(kw)))
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
