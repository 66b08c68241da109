"""The committed synthreid board keeps its record keys: every record's key is recomputed from what
the record holds through today's planning code (specs, protocol, cell_extra). A change to how names,
threats or attack arguments are resolved that would silently orphan the board fails here. The
numerics versions are the record's own (a board computed before they existed hashed none): a
record of older numerics is recognised as such, and a matrix run with today's code makes new cells."""

from pathlib import Path

import pytest

from reidbench.matrix import MatrixConfig, cell_key, iter_records, plan_cells
from reidbench.matrix.runner import cell_extra, key_surrogate

BOARD = Path(__file__).resolve().parents[2] / "leaderboards" / "synthreid"


def _config(matrix: dict) -> MatrixConfig:
    kw = dict(matrix)
    for k in ("models", "attacks", "defenses", "eps", "seeds"):
        kw[k] = tuple(kw[k])
    return MatrixConfig(**kw)


@pytest.mark.skipif(not (BOARD / "records").is_dir(), reason="no committed board in this checkout")
def test_every_committed_record_key_is_recomputed_by_the_current_code():
    records = list(iter_records(BOARD))
    assert len(records) >= 40
    for rec in records:
        config = _config(rec["config"]["matrix"])
        cells = {c.slug(): c for c in plan_cells(config)}
        cell = cells[rec["slug"]]  # today's plan still has this cell, under the same slug
        assert cell.spec() == rec["cell"]
        generator = None
        if rec["config"].get("surrogate"):
            generator = (rec["config"]["attack_hyperparameters"], rec["config"]["surrogate"])
        extra = cell_extra(cell, config, rec["config"]["defense"], generator)
        if generator is not None:  # before key_format 2 the generator's path was hashed too
            extra["surrogate"] = key_surrogate(generator[1], key_format=rec["config"].get("key_format", 1))
        if "numerics" in rec["config"]:  # the numerics versions of the code that computed the record
            extra["numerics"] = rec["config"]["numerics"]
        else:  # recorded before numerics versions existed: their keys hashed none
            del extra["numerics"]
        key = cell_key(cell, checkpoint_sha256=rec["config"]["model"]["sha256"],
                       dataset_fingerprint=rec["config"]["dataset"]["fingerprint"], extra=extra,
                       version=rec["provenance"]["reidbench_version"])
        assert key == rec["key"], rec["slug"]


@pytest.mark.skipif(not (BOARD / "records").is_dir(), reason="no committed board in this checkout")
def test_a_matrix_run_today_finds_the_boards_transfer_records_of_the_older_key_format():
    """The board's DMR records hashed their generator's path (before key_format 2): a run with today's
    code, whose store is elsewhere, must find them rather than recompute the cells -- and only them."""
    from reidbench.matrix.runner import PROVENANCE_ONLY, legacy_transfer_record

    legacy = [rec for rec in iter_records(BOARD) if rec["config"].get("surrogate") and "key_format" not in rec["config"]]
    if not legacy:
        pytest.skip("the committed board has no transfer record of the older key format")
    for rec in legacy:
        config = _config(rec["config"]["matrix"])
        cell = {c.slug(): c for c in plan_cells(config)}[rec["slug"]]
        ours = {**rec["config"]["surrogate"], "generator": "/elsewhere/checkpoints/dmr/generator.pt"}
        extra = cell_extra(cell, config, rec["config"]["defense"], (rec["config"]["attack_hyperparameters"], ours))
        kw = dict(checkpoint_sha256=rec["config"]["model"]["sha256"], dataset_fingerprint=rec["config"]["dataset"]["fingerprint"])
        assert cell_key(cell, extra=extra, **kw) != rec["key"]  # today's key differs...
        found = legacy_transfer_record(BOARD, cell, extra, **kw)
        assert found is not None and found.key == rec["key"], rec["slug"]  # ...and the record is found
        other = {**ours, "generator_sha256": "12" * 32}  # another fitted generator is another cell
        extra_other = cell_extra(cell, config, rec["config"]["defense"], (rec["config"]["attack_hyperparameters"], other))
        assert legacy_transfer_record(BOARD, cell, extra_other, **kw) is None
        assert legacy_transfer_record(BOARD, cell, extra, checkpoint_sha256="ef" * 32,
                                      dataset_fingerprint=kw["dataset_fingerprint"]) is None  # other weights
        assert set(PROVENANCE_ONLY) <= set(ours)
