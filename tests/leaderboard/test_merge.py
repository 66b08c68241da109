"""One board from several record sets: conflicts and protocol differences are refused, a record set
is checked before it joins (`reidbench submit`)."""

import json
import re

import pytest

from reidbench.cli import main
from reidbench.leaderboard import build_leaderboard, load_records
from reidbench.leaderboard.merge import SubmissionError, load_board_records, validate_submission
from reidbench.leaderboard.cards import ModelCard, write_card

from .fakes import ALL, AP_CLEAN, fixed_records, record, write_all

HITS = [0, 1, 0, 0, 1, 0, 0, 0]
APS = [0.1, 0.6, 0.1, 0.0, 0.5, 0.0, 0.1, 0.0]


def _goat(**kw):
    """A submission: another machine's goat row, on the board's protocol unless ``kw`` says otherwise."""
    return [record("goat", "none", "clean", "clean", ALL, AP_CLEAN, **{k: v for k, v in kw.items() if k != "hyper"}),
            record("goat", "none", "sma", "white-box", HITS, APS, **kw)]


def test_two_folders_make_one_board_and_the_same_cell_twice_is_kept_once(tmp_path):
    board = fixed_records(tmp_path / "board")
    sub = write_all(tmp_path / "sub", _goat())
    # the submission also carries a copy of one board record (the same cell computed once)
    write_all(tmp_path / "sub", [record("baseline", "none", "clean", "clean", ALL, AP_CLEAN)])
    merged = load_board_records([board, sub])
    assert len(merged) == len(list(load_board_records(board))) + 2
    wide, _ = build_leaderboard(load_records([board, sub]))
    assert set(wide["model"]) == {"baseline", "jad", "goat"}
    goat = wide[wide["model"] == "goat"].iloc[0]
    assert goat["SMA 5/255 R1"] == pytest.approx(25.0) and goat["SMA 5/255 mAP"] == pytest.approx(100 * sum(APS) / 8)
    assert main(["leaderboard", "--results", str(board), str(sub), "--format", "csv", "--out",
                 str(tmp_path / "b.csv")]) == 0
    assert "goat" in (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("change, match", [
    ({"hyper": {"steps": 50}}, "steps"),
    ({"eps": 8 / 255}, "at 8/255\\), which the board does not: its sma columns are 5/255 white-box/oblivious"),
    ({"fingerprint": "e" * 64}, "other synthreid data"),
    ({"ap_def": "robrank"}, "computes AP as 'robrank'"),
])
def test_a_submission_of_another_protocol_is_refused(tmp_path, change, match):
    board = write_all(tmp_path / "board", _goat())
    hyper = change.pop("hyper", None)
    recs = [record("baseline", "none", "clean", "clean", ALL, AP_CLEAN, **change),
            record("baseline", "none", "sma", "white-box", HITS, APS, hyper=hyper, **change)]
    sub = write_all(tmp_path / "sub", recs)
    with pytest.raises(SubmissionError, match=match):
        load_board_records([board, sub])
    problems = validate_submission(sub, board=board)
    assert any(p.level == "error" and re.search(match, p.message) for p in problems)


def test_two_results_for_one_cell_are_refused_never_averaged(tmp_path):
    board = write_all(tmp_path / "board", _goat())
    other = [record("goat", "none", "sma", "white-box", ALL, AP_CLEAN, salt="rerun")]
    sub = write_all(tmp_path / "sub", other)
    with pytest.raises(SubmissionError, match="two different results for one board cell.*goat / none / sma"):
        load_board_records([board, sub])
    # in one folder too: a stale record left by an earlier run of other code
    write_all(tmp_path / "board", other)
    with pytest.raises(SubmissionError, match="Remove the stale one"):
        load_records(board)


def test_query_counts_must_agree(tmp_path):
    board = write_all(tmp_path / "board", _goat())
    slug, rec = record("baseline", "none", "clean", "clean", ALL, AP_CLEAN)
    rec["per_query"]["n"] = 7
    rec["per_query"]["ap"] = rec["per_query"]["ap"][:7]
    sub = write_all(tmp_path / "sub", [(slug, rec)])
    with pytest.raises(SubmissionError, match="evaluates 7 synthreid queries, the board 8"):
        load_board_records([board, sub])


def test_submit_passes_a_good_set_and_names_what_keeps_a_bad_one_off(tmp_path, capsys):
    good = fixed_records(tmp_path / "good")
    write_card(good, ModelCard(model="baseline", paper="none"))
    problems = validate_submission(good)
    assert not [p for p in problems if p.level == "error"], problems
    # warnings: the fake records ran no self-checks and carry no source fingerprint; jad has no card
    assert any("no model card" in p.message and "jad" in p.where for p in problems)
    assert not any("no model card" in p.message and "baseline" in p.where for p in problems)
    assert main(["submit", "--results", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["errors"] == 0 and out["warnings"] == len(problems)

    bad = write_all(tmp_path / "bad", [record("goat", "none", "sma", "white-box", HITS, APS)])  # no clean cell
    files = sorted((bad / "records").glob("*.json"))
    files[0].rename(files[0].with_name("renamed.json"))
    slug, norank = record("goat", "none", "lta", "white-box", HITS, APS)
    del norank["per_query"]["r1_hits"]
    write_all(bad, [(slug, norank)])
    problems = validate_submission(bad)
    errors = " | ".join(p.message for p in problems if p.level == "error")
    assert "no clean cell" in errors and "file name does not match" in errors and "no per-query results" in errors
    assert main(["submit", "--results", str(bad)]) == 1
    assert "cannot join" in capsys.readouterr().out
