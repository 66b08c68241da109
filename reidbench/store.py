"""On-disk stores shared by the commands: where trained checkpoints and fitted generators live, and
exclusive claims so that two processes never produce the same file at once."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["checkpoint_store", "content_key", "CellClaim", "produce_once"]


def content_key(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON: the key of a stored checkpoint or generator."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_store() -> Path:
    """``$REIDBENCH_CHECKPOINTS``, else ``$REIDBENCH_HOME/checkpoints``: trained models and fitted
    generators, keyed by what determines them."""
    from .data.base import default_data_home

    return Path(os.environ.get("REIDBENCH_CHECKPOINTS") or Path(default_data_home()) / "checkpoints")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CellClaim:
    """An exclusive claim on a cell (``results/claims/<key>.lock``, created with O_EXCL).

    A claim left by a process that died on this host is stale and taken over; one held by a live
    process (or on another host, younger than ``stale_seconds``) is respected."""

    def __init__(self, results: str | os.PathLike, key: str, stale_seconds: float = 6 * 3600) -> None:
        self.path = Path(results) / "claims" / f"{key[:32]}.lock"
        self.stale_seconds = stale_seconds
        self.held = False

    def _stale(self) -> bool:
        try:
            info = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return time.time() - self._mtime() > 60  # unreadable and not fresh: a crash mid-write
        if info.get("host") == socket.gethostname():
            return not _pid_alive(int(info.get("pid", -1)))
        return time.time() - float(info.get("time", 0)) > self.stale_seconds

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return time.time()

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                return False
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, fh)
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "CellClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def produce_once(path: Path, claims: str | os.PathLike, key: str, what: str, produce, poll: float = 5.0) -> bool:
    """Make ``path`` exist by calling ``produce()`` once across processes sharing ``claims``: a
    process that holds the claim produces; the others wait for the file (or take over a claim whose
    holder died). Returns True when this call produced it."""
    if path.is_file():
        return False
    claim = CellClaim(claims, key)
    if not claim.acquire():
        log.warning("%s is being produced by another reidbench run; waiting for it", what)
        while not path.is_file():
            if claim.acquire():  # released or stale without the file: produce it here
                break
            time.sleep(poll)
        else:
            return False
    try:
        if path.is_file():
            return False
        produce()
        return True
    finally:
        claim.release()
