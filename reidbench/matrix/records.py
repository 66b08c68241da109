"""Records: one JSON file per finished cell, written atomically, and per-cell claims so that two
runs on one results directory never compute (or write) the same cell at once."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .. import __version__
from ..evaluation.features import METRIC_KEYS
from ..protocol import CLEAN
from ..store import CellClaim  # noqa: F401  (claims live with the stores)
from ..utils import atomic_write_text

__all__ = ["Record", "RECORD_FORMAT", "record_path", "write_record", "read_record", "iter_records", "encode_hits",
           "decode_hits", "provenance", "source_fingerprint", "CellClaim", "RecordError", "METRIC_KEYS"]

RECORD_FORMAT = "reidbench-record-v1"
REQUIRED = ("format", "key", "cell", "metrics", "config", "provenance")


class RecordError(ValueError):
    """A record file is damaged or of another format."""


def record_path(results: str | os.PathLike, slug: str, key: str) -> Path:
    return Path(results) / "records" / f"{slug}__{key[:16]}.json"


def encode_hits(hits) -> str:
    """Per-query booleans -> hex string of packed bits (query order)."""
    arr = np.asarray(hits, dtype=bool)
    return np.packbits(arr).tobytes().hex()


def decode_hits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


_GIT: dict[str, str | None] = {}
_SOURCE: dict[str, str] = {}


def source_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the reidbench package's source: every ``.py`` file under
    the package, by relative path and content. Two records with different fingerprints were
    computed by different code, whatever the version string says."""
    if "fp" not in _SOURCE:
        import hashlib

        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
        _SOURCE["fp"] = h.hexdigest()[:16]
    return _SOURCE["fp"]


def git_sha() -> str | None:
    """The git commit of the reidbench source tree when it is a checkout (with ``+dirty``)."""
    if "sha" not in _GIT:
        root = Path(__file__).resolve().parents[2]
        sha = None
        try:
            out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=10)
            if out.returncode == 0:
                sha = out.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=10)
                if dirty.returncode == 0 and dirty.stdout.strip():
                    sha += "+dirty"
        except (OSError, subprocess.SubprocessError):
            sha = None
        _GIT["sha"] = sha
    return _GIT["sha"]


def provenance(device: str) -> dict[str, Any]:
    dev = str(device)
    name = platform.processor() or platform.machine()
    if dev.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(dev))
    return {"reidbench_version": __version__, "git_sha": git_sha(), "source_fingerprint": source_fingerprint(),
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda, "python": platform.python_version(), "device": dev,
            "device_name": name, "threads": torch.get_num_threads(), "platform": platform.platform()}


@dataclass(frozen=True)
class Record:
    """One finished cell: what was run (``cell``, the canonical ``attack_spec``, the resolved
    ``eps``), what it measured (``metrics``, ``metrics_rerank``, ``clean_metrics``,
    ``perturbation``, ``per_query``), with what (``config``: model, dataset, defense, attack
    hyper-parameters, matrix options; ``seeds``) and where (``provenance``). Written and read by
    this module only (:func:`write_record`, :func:`read_record`, :func:`iter_records`); the JSON
    keys are the field names, and keys a later version adds are kept in ``extra``."""

    key: str
    cell: dict[str, Any]
    metrics: dict[str, float]
    config: dict[str, Any]
    provenance: dict[str, Any]
    slug: str = ""
    attack_spec: str | None = None
    eps: float | None = None
    metrics_rerank: dict[str, float] | None = None
    clean_metrics: dict[str, float] | None = None
    perturbation: dict[str, float] | None = None
    per_query: dict[str, Any] | None = None
    seeds: dict[str, int] | None = None
    #: an ensemble's components (``auto``): per component its ``metrics`` and ``per_query`` results
    components: dict[str, Any] | None = None
    #: the cell's self-checks (:mod:`reidbench.checks`): per check its measurements and ``fired``
    checks: dict[str, Any] | None = None
    format: str = RECORD_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # -- JSON ---------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, obj: Any, path: str | os.PathLike | None = None) -> "Record":
        where = path or "record"
        if not isinstance(obj, dict) or obj.get("format") != RECORD_FORMAT:
            raise RecordError(f"{where} is not a {RECORD_FORMAT} record")
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise RecordError(f"{where}: record misses {missing}")
        known = {k: v for k, v in obj.items() if k in _FIELDS}
        return cls(**known, extra={k: v for k, v in obj.items() if k not in _FIELDS},
                   path=Path(path) if path is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, **{k: getattr(self, k) for k in _FIELDS}}

    # -- typed views ----------------------------------------------------------------------------------
    @property
    def threat(self) -> str:
        """The cell's threat (a :class:`~reidbench.protocol.Threat` value)."""
        return self.cell["threat"]

    @property
    def is_clean(self) -> bool:
        return self.cell["attack"] == CLEAN

    @property
    def attack_text(self) -> str:
        """The attack's canonical spec text (``mifgsm(gong_faithful=true)``), ``clean`` for a clean cell.
        Composed from the cell, so records written before ``attack_spec`` existed read the same."""
        if self.is_clean:
            return CLEAN
        from ..registry import AttackSpec

        return AttackSpec(self.cell["attack"], dict(self.cell.get("attack_kwargs") or {})).text

    @property
    def resolved_eps(self) -> float | None:
        """The budget the attack ran with (the cell's or the attack's default); None for a clean
        cell. Records written before ``eps`` was recorded: the attack's hyper-parameters."""
        if self.is_clean:
            return None
        eps = self.eps if self.eps is not None else self.cell.get("eps")
        if eps is None:
            eps = (self.config.get("attack_hyperparameters") or {}).get("eps")
        return None if eps is None else float(eps)

    @property
    def fired_checks(self) -> list[str]:
        """The self-checks that fired (record names: ``unconverged``, ``zero_gradient``, ...)."""
        return [name for name, c in (self.checks or {}).items() if isinstance(c, dict) and c.get("fired")]

    @property
    def source(self) -> str | None:
        """The source fingerprint of the code that computed the record (None: recorded before)."""
        return self.provenance.get("source_fingerprint")

    def component_results(self, rerank: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """An ensemble's per-component ``(rank-1 hits, APs)`` per query (empty for other attacks)."""
        out = []
        for comp in (self.components or {}).values():
            pq = comp.get("per_query") or {}
            text = pq.get("r1_hits_rerank" if rerank else "r1_hits")
            if text is not None:
                out.append((decode_hits(text, int(pq.get("n", 0))),
                            np.asarray(pq.get("ap_rerank" if rerank else "ap", []), dtype=float)))
        return out

    def hits(self, rerank: bool = False) -> np.ndarray | None:
        """Per-query rank-1 hits (query order), or None when the record holds none."""
        pq = self.per_query or {}
        text = pq.get("r1_hits_rerank" if rerank else "r1_hits")
        return None if text is None else decode_hits(text, int(pq.get("n", 0)))

    def ap(self, rerank: bool = False) -> np.ndarray:
        """Per-query average precision (query order; empty when the record holds none)."""
        return np.asarray((self.per_query or {}).get("ap_rerank" if rerank else "ap", []), dtype=float)

    @property
    def n_queries(self) -> int:
        return int((self.per_query or {}).get("n", 0))

    # -- mapping access for code written against the dict records --------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _FIELDS:
            return getattr(self, key)
        return self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS or key in self.extra


#: the record's JSON keys that are fields (``extra`` and ``path`` are not written as keys)
_FIELDS = frozenset(f.name for f in fields(Record)) - {"extra", "path"}


def write_record(path: str | os.PathLike, record: Record | dict[str, Any]) -> None:
    """Write ``record`` atomically as JSON (a dict is checked as a record first)."""
    if not isinstance(record, Record):
        if isinstance(record, dict) and "format" in record and any(k not in record for k in REQUIRED):
            raise RecordError(f"record misses {[k for k in REQUIRED if k not in record]}")
        record = Record.from_dict(record)
    atomic_write_text(path, json.dumps(record.to_dict(), indent=1, sort_keys=True, default=str) + "\n")


def read_record(path: str | os.PathLike) -> Record:
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"cannot read record {path}: {e}") from e
    return Record.from_dict(obj, path)


def iter_records(results: str | os.PathLike) -> Iterator[Record]:
    """Every record under ``results/records`` (sorted by file name); a damaged one is an error
    that names the file (delete it and rerun the matrix to recompute that cell)."""
    folder = Path(results) / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{results} holds no records/ folder: run `reidbench matrix --results {results}` first")
    for p in sorted(folder.glob("*.json")):
        yield read_record(p)
