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
