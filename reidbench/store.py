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
from enum import Enum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["checkpoint_store", "content_key", "CellClaim", "Claimed", "claim_unless_done", "produce_once",
           "HEARTBEAT_SECONDS", "STALE_SECONDS"]


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
        self._lock = threading.Lock()  # a heartbeat and the release never interleave

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
        _HEARTBEATS.add(self)

    def _stop_heartbeat(self) -> None:
        """No more heartbeats for this claim (one in progress may still finish: :meth:`release` takes
        the claim's lock before it deletes the file)."""
        _HEARTBEATS.discard(self)

    def _beat_due(self) -> bool:
        """The shared heartbeat thread's call: beat unless released meanwhile; False stops the beats."""
        with self._lock:
            if not self.held:
                return False
            try:
                return self.beat()
            except OSError as e:  # a shared filesystem that hiccups: try again at the next beat
                log.warning("cannot refresh the claim %s: %s", self.path.name, e)
                return True

    def release(self) -> None:
        self._stop_heartbeat()
        with self._lock:  # no heartbeat is being written now, and none will be: delete the file safely
            if self.held:
                if self._mine():
                    self.path.unlink(missing_ok=True)
                self.held = False

    def __enter__(self) -> "CellClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _Heartbeats:
    """One daemon thread per process refreshes every claim the process holds, each at its own
    ``heartbeat_seconds`` (a Ray driver holds a claim per submitted cell: hundreds of claims, one
    thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, CellClaim]] = {}  # id(claim) -> (next beat, monotonic; claim)
        self._thread: threading.Thread | None = None

    def add(self, claim: CellClaim) -> None:
        with self._cond:
            self._due[id(claim)] = (time.monotonic() + claim.heartbeat_seconds, claim)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="reidbench-claim-heartbeats", daemon=True)
                self._thread.start()
            self._cond.notify()

    def discard(self, claim: CellClaim) -> None:
        with self._cond:
            self._due.pop(id(claim), None)

    def held(self) -> int:
        with self._cond:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [(k, c) for k, (t, c) in self._due.items() if t <= now]
                if not due:
                    wait = min((t for t, _ in self._due.values()), default=now + 3600) - now
                    self._cond.wait(timeout=max(wait, 0.001))
                    continue
                for k, c in due:  # next beat scheduled before this one runs
                    self._due[k] = (now + c.heartbeat_seconds, c)
            for k, c in due:  # outside the lock: file I/O; a release in between makes it a no-op
                if not c._beat_due():
                    with self._cond:
                        if self._due.get(k, (0, None))[1] is c:
                            del self._due[k]


_HEARTBEATS = _Heartbeats()


class Claimed(Enum):
    """What :func:`claim_unless_done` found: the claim is this process's, another live process holds
    it, or the result exists already."""

    OURS = "claimed"
    BUSY = "held by another run"
    DONE = "done"


def claim_unless_done(claims: str | os.PathLike, key: str, done: Path, *,
                      force: bool = False) -> tuple[Claimed, CellClaim | None]:
    """Claim ``key`` (under ``claims/claims``) to produce the file ``done``, unless it exists. The
    rule every producer follows (cells, trainings, fits; in-process or a Ray driver): look, claim,
    and look again once the claim is held -- another run may have finished it between the two -- so
    a result is never computed twice. ``force`` claims even when ``done`` exists (to recompute it).
    Returns ``(Claimed.OURS, claim)`` -- release it when done --, or ``(BUSY | DONE, None)``."""
    if done.is_file() and not force:
        return Claimed.DONE, None
    claim = CellClaim(claims, key)
    if not claim.acquire():
        return Claimed.BUSY, None
    if done.is_file() and not force:  # finished by another run meanwhile
        claim.release()
        return Claimed.DONE, None
    return Claimed.OURS, claim


def produce_once(path: Path, claims: str | os.PathLike, key: str, what: str, produce, poll: float = 5.0,
                 wait: bool = True) -> bool:
    """Make ``path`` exist by calling ``produce()`` once across processes sharing ``claims``: a
    process that holds the claim produces; the others wait for the file (or take over a claim whose
    holder died). ``wait=False``: return at once when another process holds the claim. Returns True
    when this call produced it."""
    state, claim = claim_unless_done(claims, key, path)
    if state is Claimed.BUSY:
        if not wait:
            return False
        log.warning("%s is being produced by another reidbench run; waiting for it", what)
        while state is Claimed.BUSY:  # until it is released or stale without the file, or the file is there
            time.sleep(poll)
            state, claim = claim_unless_done(claims, key, path)
    if state is Claimed.DONE:
        return False
    try:
        produce()
        return True
    finally:
        claim.release()
