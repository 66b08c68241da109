"""Model cards: where a board row's model came from, in a small versioned JSON file per row.

A row of a board is a model with its test-time defense (``jad`` + ``cs``). Its card says what the
model is (architecture, initialisation, training data and recipe, the checkpoint's SHA-256), where it
comes from (a reidbench preset, torchreid, fast-reid or an own checkpoint), the paper and venue
where there is one, and who ran it. Cards live beside the records, ``RESULTS/cards/*.json``; a row
without one gets a card derived from its records (``derived: true``), so every row of a board can
be traced. ``reidbench card`` writes them (:func:`card_from_checkpoint`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..utils import atomic_write_text

__all__ = ["CARD_FORMAT", "SOURCES", "ModelCard", "CardError", "card_path", "write_card", "read_card", "read_cards",
           "card_from_checkpoint", "card_from_records", "cards_for_board"]

CARD_FORMAT = "reidbench-card-v1"
#: where a model comes from: trained by a reidbench preset, a torchreid / fast-reid model, an own checkpoint
SOURCES = ("preset", "torchreid", "fast-reid", "checkpoint")


class CardError(ValueError):
    """A model card is damaged, of another format, or does not match its checkpoint."""


@dataclass(frozen=True)
class ModelCard:
    """One board row's card. ``model`` and ``defense`` are the row's names as the records give them
    (``cell["model"]``, ``cell["defense"]``); the rest describes the model."""

    model: str
    defense: str = "none"
    description: str = ""
    source: str = "preset"            # one of SOURCES
    source_name: str = ""             # the preset, the torchreid / fast-reid model name, or the file
    paper: str = ""                   # authors, title or venue as one line ("Gong et al., CVPR 2022")
    venue: str = ""
    url: str = ""
    architecture: str = ""
    initialisation: str = ""          # "scratch", "imagenet/efficientnet-lite0", "torchvision/IMAGENET1K_V1", ...
    training_data: str = ""           # dataset name
    training_fingerprint: str = ""    # the dataset's content fingerprint
    training_recipe: dict[str, Any] = field(default_factory=dict)  # recipe name, epochs, training defense, seed
    test_defense_paper: str = ""
    checkpoint_sha256: str = ""
    submitted_by: str = ""
    created: str = ""
    derived: bool = False             # written from the records, not by `reidbench card`
    format: str = CARD_FORMAT

    @property
    def row(self) -> tuple[str, str]:
        return self.model, self.defense

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Any, where: str = "card") -> "ModelCard":
        if not isinstance(obj, dict) or obj.get("format") != CARD_FORMAT:
            raise CardError(f"{where} is not a {CARD_FORMAT} model card (its 'format' is "
                            f"{obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r})")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise CardError(f"{where}: unknown card fields {unknown}; known: {sorted(names)}")
        if "model" not in obj:
            raise CardError(f"{where}: a card needs 'model' (the row's model name)")
        if obj.get("source", "preset") not in SOURCES:
            raise CardError(f"{where}: source {obj.get('source')!r} is not one of {', '.join(SOURCES)}")
        return cls(**obj)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=,_-]+", "-", text).strip("-") or "none"


def card_path(results: str | os.PathLike, model: str, defense: str = "none") -> Path:
    return Path(results) / "cards" / f"{_slug(model)}__{_slug(defense)}.json"


def write_card(results: str | os.PathLike, card: ModelCard) -> Path:
    """Write ``card`` atomically beside the records of ``results``; returns its path."""
    path = card_path(results, card.model, card.defense)
    atomic_write_text(path, json.dumps(card.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def read_card(path: str | os.PathLike) -> ModelCard:
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"cannot read model card {path}: {e}") from e
    return ModelCard.from_dict(obj, str(path))


def read_cards(results: str | os.PathLike) -> dict[tuple[str, str], ModelCard]:
    """The cards stored under ``results/cards`` by row (model, defense)."""
    folder = Path(results) / "cards"
    out: dict[tuple[str, str], ModelCard] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        card = read_card(p)
        if card.row in out:
            raise CardError(f"two cards for row {card.model} / {card.defense} under {folder}: keep one")
        out[card.row] = card
    return out


def _paper(registry, name: str | None) -> str:
    if not name:
        return ""
    from ..registry import UnknownNameError

    try:
        return registry.entry(name).paper or ""
    except UnknownNameError:
        return ""


def _defense_paper(defense: str) -> str:
    """The papers of a test-time defense spec's parts (``cs+jpeg``), from the registry."""
    from ..registry import UnknownNameError, parse_defense

    try:
        return "; ".join(p for p in (part.entry.paper for part in parse_defense(defense).parts) if p)
    except (UnknownNameError, ValueError):  # a plugin defense whose plugin is not loaded here
        return ""


def _row_names(model: str, defense: str) -> tuple[str, str]:
    """A row's names as the records spell them: a preset's canonical name, the defense's spec text."""
    from ..registry import MODELS, parse_defense

    return (MODELS.entry(model).name if model in MODELS else model), parse_defense(defense).text


def _initialisation(meta: dict[str, Any]) -> str:
    """A sidecar's ``init`` (``scratch``, ``imagenet/efficientnet-lite0``, ...); older sidecars say
    only whether the weights were pretrained."""
    if meta.get("init"):
        return str(meta["init"])
    pretrained = meta.get("pretrained", (meta.get("arch_kwargs") or {}).get("pretrained"))
    return "imagenet" if pretrained else "scratch"


def card_from_checkpoint(checkpoint: str | os.PathLike, *, model: str | None = None, defense: str | None = None,
                         source: str | None = None, source_name: str = "", paper: str = "", venue: str = "",
                         url: str = "", description: str = "", initialisation: str | None = None,
                         submitted_by: str = "", verify: bool = True) -> ModelCard:
    """A card from a reidbench checkpoint's sidecar plus what only the user knows (paper, venue,
    who ran it, an external source). ``model``: the row's name (default: the checkpoint's preset);
    ``defense``: the row's test-time defense (default: the preset's, e.g. ``cs`` for ``jad``, else
    none). ``verify``: the weights' SHA-256 must match the sidecar's."""
    from ..models.checkpoint import sha256_file, sidecar_path
    from ..registry import DEFENSES, MODELS

    checkpoint = Path(checkpoint)
    side = sidecar_path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    if not side.is_file():
        raise CardError(f"{checkpoint} has no sidecar {side.name}: a card is made from a reidbench checkpoint "
                        "(`reidbench train` writes both); give the architecture and training data of another "
                        "model by writing its card by hand")
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"cannot read sidecar {side}: {e}") from e
    sha = sha256_file(checkpoint)
    if verify and meta.get("sha256") and meta["sha256"] != sha:
        raise CardError(f"{checkpoint}'s SHA-256 {sha[:16]}... differs from its sidecar's {meta['sha256'][:16]}...: "
                        "the weights were changed after training; retrain or rewrite the sidecar")
    preset = meta.get("preset")
    if source is None:
        source = "preset" if preset else "checkpoint"
    if source not in SOURCES:
        raise CardError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    side_defense = meta.get("defense")
    train_defense = meta.get("train_defense") or (side_defense.get("name") if isinstance(side_defense, dict) else None)
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
    if defense is None:
        name = model or preset
        defense = (MODELS.entry(name).obj.test_defense if name and name in MODELS else None) or "none"
    model, defense = _row_names(model or preset or checkpoint.parent.name, defense)
    if model in MODELS:  # a preset's row (jad uses pd's weights): the row's preset describes it
        preset = model
    return ModelCard(
        model=model, defense=defense,
        description=description or (_paper(MODELS, preset) if source == "preset" else ""),
        source=source, source_name=source_name or (preset if source == "preset" and preset else checkpoint.name),
        paper=paper or _paper(DEFENSES, train_defense), venue=venue, url=url,
        architecture=str(meta.get("arch", "")),
        initialisation=initialisation or _initialisation(meta),
        training_data=str(dataset.get("name", "")), training_fingerprint=str(dataset.get("fingerprint", "")),
        training_recipe={k: v for k, v in {"recipe": recipe.get("name"), "epochs": recipe.get("epochs"),
                                           "epochs_trained": _epochs_trained(meta.get("history"), recipe),
                                           "train_defense": train_defense, "seed": meta.get("seed")}.items()
                         if v is not None},
        test_defense_paper=_defense_paper(defense), checkpoint_sha256=sha, submitted_by=submitted_by,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _epochs_trained(history: Any, recipe: dict[str, Any]) -> int | None:
    """The epochs the sidecar's history holds, where it differs from the recipe's: a staged preset
    (at-lta, goat-ft: the baseline's normal epochs, then its adversarial ones) trains more epochs than
    its recipe names, and its card must not understate that."""
    if not isinstance(history, list) or not history or len(history) == recipe.get("epochs"):
        return None
    return len(history)


def _checkpoint_initialisation(checkpoint: str | None) -> str:
    """The initialisation the checkpoint's sidecar records, where the file is still there."""
    from ..models.checkpoint import sidecar_path

    side = sidecar_path(checkpoint) if checkpoint else None
    if side is None or not side.is_file():
        return ""
    try:
        return _initialisation(json.loads(side.read_text()))
    except (OSError, json.JSONDecodeError):
        return ""


def card_from_records(records: Iterable) -> ModelCard:
    """The card a row's records imply (``derived``): the matrix trains presets, and every record
    says which preset, architecture, checkpoint and dataset it used."""
    from ..registry import DEFENSES, MODELS

    recs = list(records)
    if not recs:
        raise CardError("a derived card needs at least one record of the row")
    rec = recs[0]
    m = rec.config.get("model") or {}
    ds = rec.config.get("dataset") or {}
    preset = m.get("preset") or rec.cell["model"]
    defense = rec.cell["defense"]
    return ModelCard(
        model=rec.cell["model"], defense=defense, description=_paper(MODELS, preset), source="preset",
        source_name=preset, paper=_paper(DEFENSES, m.get("train_defense")), architecture=str(m.get("arch", "")),
        initialisation=str(m.get("init") or _checkpoint_initialisation(m.get("checkpoint"))),
        training_data=str(ds.get("name", rec.cell.get("dataset", ""))), training_fingerprint=str(ds.get("fingerprint", "")),
        training_recipe={k: v for k, v in {"epochs": m.get("epochs"), "train_defense": m.get("train_defense"),
                                           "seed": rec.cell.get("seed")}.items() if v is not None},
        test_defense_paper=_defense_paper(defense), checkpoint_sha256=str(m.get("sha256", "")), created=str(rec.provenance.get("created", "")), derived=True)


def cards_for_board(records: Iterable, stored: dict[tuple[str, str], ModelCard]) -> dict[tuple[str, str], ModelCard]:
    """Every row's card: the stored one, else one derived from the row's records. A stored card
    whose checkpoint SHA-256 is not the one the records used is an error (the card describes
    other weights)."""
    by_row: dict[tuple[str, str], list] = {}
    for rec in records:
        by_row.setdefault((rec.cell["model"], rec.cell["defense"]), []).append(rec)
    out = {}
    for row, recs in by_row.items():
        card = stored.get(row)
        used = {str((r.config.get("model") or {}).get("sha256", "")) for r in recs} - {""}
        if card is not None and card.checkpoint_sha256 and used and card.checkpoint_sha256 not in used:
            raise CardError(f"the card of {row[0]} / {row[1]} names checkpoint {card.checkpoint_sha256[:16]}..., its "
                            f"records used {', '.join(sorted(u[:16] + '...' for u in used))}: write the card from "
                            "the checkpoint the matrix evaluated (`reidbench card --checkpoint ...`)")
        out[row] = card if card is not None else card_from_records(recs)
    return out
