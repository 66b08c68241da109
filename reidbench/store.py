"""On-disk stores shared by the commands: where trained checkpoints and fitted generators live, and
exclusive claims so that two processes never produce the same file at once."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["checkpoint_store", "content_key", "CellClaim", "produce_once", "HEARTBEAT_SECONDS", "STALE_SECONDS"]


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


#: seconds between two heartbeats of a held claim, and without one after which any host takes it over
HEARTBEAT_SECONDS = float(os.environ.get("REIDBENCH_CLAIM_HEARTBEAT", 30))
STALE_SECONDS = float(os.environ.get("REIDBENCH_CLAIM_STALE", 300))


class CellClaim:
    """An exclusive claim on a cell, a training or a fit (``<folder>/claims/<key>.lock``, created with
    O_EXCL), safe across hosts that share the folder (a SLURM job array on a shared filesystem).

    The claim file records host, pid, a token and a heartbeat that a thread of the holder refreshes
    every ``heartbeat_seconds`` while it holds the claim. Another process takes a claim over when its
    heartbeat is older than ``stale_seconds`` (the holder died, or its host went away), or at once when
    the holder was a process of this host that is no longer alive. Takeover is atomic (the stale file
    is renamed away and checked to be the one judged stale), so two waiters never both win; a holder
    whose claim was taken over (it stalled past ``stale_seconds``) notices at its next heartbeat, logs
    it, and never deletes the new holder's claim."""

    def __init__(self, results: str | os.PathLike, key: str, stale_seconds: float | None = None,
                 heartbeat_seconds: float | None = None) -> None:
        self.path = Path(results) / "claims" / f"{key[:32]}.lock"
        self.stale_seconds = STALE_SECONDS if stale_seconds is None else float(stale_seconds)
        self.heartbeat_seconds = HEARTBEAT_SECONDS if heartbeat_seconds is None else float(heartbeat_seconds)
        if self.heartbeat_seconds >= self.stale_seconds:
            raise ValueError(f"a claim's heartbeat ({self.heartbeat_seconds:g} s) must be shorter than the time after "
                             f"which it is stale ({self.stale_seconds:g} s)")
        self.held = False
        self.lost = False  # taken over by another process while held
        self.token = ""
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # -- the file -----------------------------------------------------------------------------------------
    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        try:
            info = json.loads((path or self.path).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def _write(self, info: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.path)

    def info(self) -> dict[str, Any] | None:
        """The claim file's content (host, pid, token, time, heartbeat), None when there is none."""
        return self._read()

    def _stale(self, info: dict[str, Any] | None) -> bool:
        if info is None:
            return time.time() - self._mtime() > 60  # unreadable and not fresh: a crash mid-write
        if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
            return True  # its process died on this host
        beat = float(info.get("heartbeat", info.get("time", 0)))
        return time.time() - beat > self.stale_seconds

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return time.time()

    def _take_over(self, judged: dict[str, Any] | None) -> bool:
        """Move the stale claim file away, atomically; False when it changed meanwhile (another
        process took it over first, or its holder's heartbeat came back)."""
        grave = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return True  # released meanwhile: try to create it
        moved = self._read(grave)
        if moved != judged and not (moved is None and judged is None):
            try:  # we moved a live claim: put it back unless a new one exists already
                os.link(grave, self.path)
            except FileExistsError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        log.warning("took over the stale claim %s (%s)", self.path.name,
                    f"host {judged.get('host')}, pid {judged.get('pid')}" if judged else "unreadable")
        return True

    # -- acquire / hold / release ---------------------------------------------------------------------------
    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self._read()
                if self._stale(info) and self._take_over(info):
                    continue
                return False
            self.token = uuid.uuid4().hex
            now = time.time()
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "token": self.token, "time": now,
                           "heartbeat": now}, fh)
            self.held, self.lost = True, False
            self._start_heartbeat()
            return True
        return False

    def _mine(self) -> bool:
        info = self._read()
        return info is not None and info.get("token") == self.token

    def beat(self) -> bool:
        """Refresh the heartbeat now (the thread calls this); False when the claim is no longer ours."""
        info = self._read()
        if info is None or info.get("token") != self.token:
            if not self.lost:
                log.warning("the claim %s was taken over by %s while this process held it (it stalled for more "
                            "than %g s); the result is written atomically either way", self.path.name,
                            f"host {info.get('host')}, pid {info.get('pid')}" if info else "another process",
                            self.stale_seconds)
            self.lost = True
            return False
        info["heartbeat"] = time.time()
        self._write(info)
        return True

    def _start_heartbeat(self) -> None:
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.heartbeat_seconds):
                try:
                    if not self.beat():
                        return
                except OSError as e:  # a shared filesystem that hiccups: try again at the next beat
                    log.warning("cannot refresh the claim %s: %s", self.path.name, e)

        self._stop = stop
        self._thread = threading.Thread(target=run, name=f"claim-heartbeat-{self.path.stem[:8]}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._stop = self._thread = None
        if self.held:
            if self._mine():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "CellClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def produce_once(path: Path, claims: str | os.PathLike, key: str, what: str, produce, poll: float = 5.0,
                 wait: bool = True) -> bool:
    """Make ``path`` exist by calling ``produce()`` once across processes sharing ``claims``: a
    process that holds the claim produces; the others wait for the file (or take over a claim whose
    holder died). ``wait=False``: return at once when another process holds the claim. Returns True
    when this call produced it."""
    if path.is_file():
        return False
    claim = CellClaim(claims, key)
    if not claim.acquire():
        if not wait:
            return False
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
