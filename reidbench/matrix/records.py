"""Records: one JSON file per finished cell, written atomically, and per-cell claims so that two
runs on one results directory never compute (or write) the same cell at once."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .. import __version__
from ..store import CellClaim  # noqa: F401  (claims live with the stores)
from ..utils import atomic_write_text

__all__ = ["RECORD_FORMAT", "record_path", "write_record", "read_record", "iter_records", "encode_hits",
           "decode_hits", "provenance", "CellClaim", "RecordError", "METRIC_KEYS"]

RECORD_FORMAT = "reidbench-record-v1"
METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")
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
    return {"reidbench_version": __version__, "git_sha": git_sha(), "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda, "python": platform.python_version(), "device": dev,
            "device_name": name, "threads": torch.get_num_threads(), "platform": platform.platform()}


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise RecordError(f"record misses {missing}")
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"cannot read record {path}: {e}") from e
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT or any(k not in rec for k in REQUIRED):
        raise RecordError(f"{path} is not a {RECORD_FORMAT} record")
    return rec


def iter_records(results: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every record under ``results/records`` (sorted by file name); a damaged one is an error
    that names the file (delete it and rerun the matrix to recompute that cell)."""
    folder = Path(results) / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{results} holds no records/ folder: run `reidbench matrix --results {results}` first")
    for p in sorted(folder.glob("*.json")):
        yield read_record(p)
