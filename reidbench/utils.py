"""Small shared helpers: atomic file writes, seeding, parsing of pixel budgets."""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["atomic_path", "atomic_write_text", "atomic_torch_save", "seed_everything", "parse_fraction",
           "parse_spec", "split_specs"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (atomic on
    POSIX), on error it is removed, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def parse_fraction(text: str | float | int) -> float:
    """``"5/255"`` -> 0.0196..., ``"0.03"`` -> 0.03; how the CLI reads pixel budgets."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read {text!r} as a number or a fraction like 5/255") from None


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses:
    ``"cs(sizes=P1),jpeg(quality=50, x=1)"`` -> ``["cs(sizes=P1)", "jpeg(quality=50, x=1)"]``."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced '(' in {text!r}")
    out.append("".join(cur).strip())
    return [p for p in out if p]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"jpeg(quality=50)"`` -> ``("jpeg", {"quality": 50})``; a bare name has no arguments.

    Values are read as JSON where they parse (``50``, ``0.5``, ``true``, ``[110, 50]``) and as
    strings otherwise (``sizes=P1``); budgets may be written as fractions (``eps=8/255``). Nothing is
    evaluated as code."""
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
        raw = raw.strip().replace("(", "[").replace(")", "]")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            try:
                value = parse_fraction(raw) if "/" in raw else raw
            except ValueError:
                value = raw
        kwargs[key.strip()] = value
    return name, kwargs
