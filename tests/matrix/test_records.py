"""Records and claims."""

import json
import os

import numpy as np
import pytest

from reidbench.matrix import CellClaim, RecordError, decode_hits, encode_hits, read_record, write_record
from reidbench.matrix.records import RECORD_FORMAT


def minimal(key="k" * 64):
    return {"format": RECORD_FORMAT, "key": key, "cell": {}, "metrics": {"R1": 1.0}, "config": {},
            "provenance": {}}


@pytest.mark.parametrize("n", [1, 7, 8, 9, 287, 3368])
def test_hits_round_trip(n):
    rng = np.random.default_rng(n)
    hits = rng.random(n) < 0.4
    text = encode_hits(hits)
    assert len(text) == 2 * ((n + 7) // 8)
    assert np.array_equal(decode_hits(text, n), hits)


def test_record_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "records" / "a.json"
    write_record(path, minimal())
    before = path.read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    rec = minimal()
    rec["metrics"] = {"R1": 2.0}
    with pytest.raises(OSError, match="disk full"):
        write_record(path, rec)
    monkeypatch.undo()
    assert path.read_text() == before                       # the old record is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]  # no temporary left behind
    assert read_record(path)["metrics"]["R1"] == 1.0


def test_incomplete_or_foreign_records_are_refused(tmp_path):
    with pytest.raises(RecordError, match="misses"):
        write_record(tmp_path / "x.json", {"format": RECORD_FORMAT})
    (tmp_path / "y.json").write_text('{"format": "other"}')
    with pytest.raises(RecordError, match="not a reidbench-record"):
        read_record(tmp_path / "y.json")
    (tmp_path / "z.json").write_text('{"format": ')
    with pytest.raises(RecordError, match="cannot read"):
        read_record(tmp_path / "z.json")


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path):
    a, b = CellClaim(tmp_path, "c" * 64), CellClaim(tmp_path, "c" * 64)
    assert a.acquire()
    assert not b.acquire()          # held by a live process (this one)
    a.release()
    assert b.acquire()
    b.release()
    # a claim left by a process that died on this host
    stale = CellClaim(tmp_path, "d" * 64)
    stale.path.parent.mkdir(parents=True, exist_ok=True)
    import socket

    stale.path.write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(), "time": 0}))
    assert CellClaim(tmp_path, "d" * 64).acquire()


def test_record_is_typed_and_round_trips_keys_it_does_not_know(tmp_path):
    from reidbench.matrix import Record

    rec = {**minimal(), "slug": "s", "cell": {"attack": "mifgsm", "attack_kwargs": {"gong_faithful": True},
                                              "threat": "oblivious", "eps": None},
           "config": {"attack_hyperparameters": {"eps": 0.02}}, "eps": None,
           "per_query": {"n": 3, "r1_hits": encode_hits([True, False, True]), "ap": [1.0, 0.1, 0.5]},
           "from_a_later_version": {"x": 1}}
    write_record(tmp_path / "r.json", rec)
    back = read_record(tmp_path / "r.json")
    assert isinstance(back, Record) and back.path == tmp_path / "r.json"
    assert back.attack_text == "mifgsm(gong_faithful=true)" and back.threat == "oblivious" and not back.is_clean
    assert back.resolved_eps == 0.02                # a record from before `eps`: the attack's hyper-parameter
    assert list(back.hits()) == [True, False, True] and back.hits(rerank=True) is None
    assert back.ap().tolist() == [1.0, 0.1, 0.5] and back.n_queries == 3
    assert back.extra == {"from_a_later_version": {"x": 1}}
    write_record(tmp_path / "again.json", back)     # written back, nothing lost
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((tmp_path / "r.json").read_text())
    clean = Record.from_dict({**minimal(), "cell": {"attack": "clean", "threat": "clean"}, "eps": 0.5})
    assert clean.is_clean and clean.resolved_eps is None and clean.attack_text == "clean"


def _foreign(claim, age: float, host: str = "another-host") -> None:
    """A claim file of a process on another host whose last heartbeat is ``age`` seconds old."""
    import time

    claim.path.parent.mkdir(parents=True, exist_ok=True)
    beat = time.time() - age
    claim.path.write_text(json.dumps({"pid": 1, "host": host, "token": "t" * 32, "time": beat, "heartbeat": beat}))


def test_a_held_claim_beats_and_another_hosts_claim_is_judged_by_its_heartbeat(tmp_path):
    import time

    held = CellClaim(tmp_path, "e" * 64, stale_seconds=5, heartbeat_seconds=0.05)
    assert held.acquire()
    first = held.info()["heartbeat"]
    time.sleep(0.3)
    assert held.info()["heartbeat"] > first and held.info()["host"] and held.info()["token"] == held.token
    held.release()
    assert held.info() is None

    fresh = CellClaim(tmp_path, "f" * 64, stale_seconds=5, heartbeat_seconds=1)
    _foreign(fresh, age=1.0)
    assert not fresh.acquire()             # another host's claim with a recent heartbeat is respected
    _foreign(fresh, age=10.0)
    assert fresh.acquire()                 # its heartbeat stopped: taken over
    assert fresh.info()["token"] == fresh.token
    other = CellClaim(tmp_path, "f" * 64, stale_seconds=5, heartbeat_seconds=1)
    assert not other.acquire()             # and the new holder is respected in turn
    fresh.release()

    with pytest.raises(ValueError, match="heartbeat"):
        CellClaim(tmp_path, "g" * 64, stale_seconds=1, heartbeat_seconds=2)


def test_a_holder_whose_claim_was_taken_over_never_deletes_the_new_one(tmp_path):
    slow = CellClaim(tmp_path, "h" * 64, stale_seconds=5, heartbeat_seconds=4)
    assert slow.acquire()
    slow._stop_heartbeat()  # the holder stalls: no more heartbeats
    info = slow.info()
    info["heartbeat"] -= 60
    slow.path.write_text(json.dumps(info))
    taker = CellClaim(tmp_path, "h" * 64, stale_seconds=5, heartbeat_seconds=4)
    assert taker.acquire()
    assert not slow.beat() and slow.lost   # the stalled holder finds out at its next heartbeat
    slow.release()
    assert taker.info()["token"] == taker.token  # the new holder's claim is still there
    taker.release()
    assert not list(taker.path.parent.glob("*.stale")) and not list(taker.path.parent.glob("*.tmp"))


def test_a_claim_is_taken_only_for_what_is_not_done_and_looked_at_again_once_held(tmp_path, monkeypatch):
    """claim_unless_done: the rule cells, trainings and fits follow (in-process and Ray). A result
    another run finishes between the first look and the claim is not computed again, and the claim
    taken for it is let go."""
    from reidbench.store import Claimed, claim_unless_done

    done = tmp_path / "record.json"
    state, claim = claim_unless_done(tmp_path, "k" * 40, done)
    assert state is Claimed.OURS and claim.held
    assert claim_unless_done(tmp_path, "k" * 40, done) == (Claimed.BUSY, None)  # held by the first
    claim.release()
    done.write_text("{}")
    assert claim_unless_done(tmp_path, "k" * 40, done) == (Claimed.DONE, None)
    forced, claim = claim_unless_done(tmp_path, "k" * 40, done, force=True)
    assert forced is Claimed.OURS
    claim.release()

    # the other run writes the result while this one is taking the claim
    other = tmp_path / "other.json"
    real = CellClaim.acquire

    def acquire_as_the_other_run_finishes(self):
        other.write_text("{}")
        return real(self)

    monkeypatch.setattr(CellClaim, "acquire", acquire_as_the_other_run_finishes)
    assert claim_unless_done(tmp_path, "o" * 40, other) == (Claimed.DONE, None)
    monkeypatch.setattr(CellClaim, "acquire", real)
    assert not list((tmp_path / "claims").glob("o*.lock"))  # the claim taken for it was released


def test_one_thread_beats_every_claim_a_process_holds(tmp_path):
    import threading
    import time

    from reidbench.store import _HEARTBEATS

    before, held_before = threading.active_count(), _HEARTBEATS.held()
    claims = [CellClaim(tmp_path, f"{i:02d}" + "c" * 62, stale_seconds=5, heartbeat_seconds=0.05) for i in range(40)]
    assert all(c.acquire() for c in claims)
    first = [c.info()["heartbeat"] for c in claims]
    time.sleep(0.4)
    assert threading.active_count() <= before + 1  # one heartbeat thread, not one per claim
    assert all(c.info()["heartbeat"] > f for c, f in zip(claims, first))
    for c in claims:
        c.release()
    assert _HEARTBEATS.held() == held_before and not list((tmp_path / "claims").glob("*.lock"))
