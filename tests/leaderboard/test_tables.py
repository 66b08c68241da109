"""Leaderboards rendered from a fixed set of records (golden files), the worst case, the flags."""

import os
from pathlib import Path

import numpy as np
import pytest

from reidbench.leaderboard import build_leaderboard, load_records, render, worst_case
from reidbench.matrix import encode_hits, write_record

from .fakes import ALL, AP_CLEAN, N, fixed_records, record

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("fmt", ["md", "csv", "compact"])
def test_golden_tables(tmp_path, fmt):
    results = fixed_records(tmp_path)
    text = render(results, fmt, title="golden board" if fmt == "md" else None)
    golden = GOLDEN / ("board.compact.md" if fmt == "compact" else f"board.{fmt}")
    if os.environ.get("REIDBENCH_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_html_and_rerank_tables(tmp_path):
    results = fixed_records(tmp_path)
    page = render(results, "html", title="t")
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "adaptive-weaker" in page
    plain, rr = render(results, "md"), render(results, "md", rerank=True)
    assert "re-ranking" in rr and rr != plain
    with pytest.raises(ValueError, match="unknown format"):
        render(results, "xlsx")


def test_compact_table_puts_the_adaptive_twins_on_the_defended_rows_second_line(tmp_path):
    results = fixed_records(tmp_path)
    wide, _ = build_leaderboard(load_records(results))
    text = render(results, "compact").splitlines()
    lines = [ln.split(" | ") for ln in text if ln.startswith("| jad")]
    assert [ln[0] for ln in lines] == ["| jad + cs, oblivious", "| jad + cs, adaptive"]
    head = text[0].split(" | ")
    assert "SMA 5/255 adapt." not in head and "SMA 5/255" in head
    sma = head.index("SMA 5/255")
    jad = wide[wide["model"] == "jad"].iloc[0]
    assert lines[0][sma] == f"{jad['SMA 5/255 R1']:.1f} / {jad['SMA 5/255 mAP']:.1f}"
    assert lines[1][sma] == f"{jad['SMA 5/255 adapt. R1']:.1f} / {jad['SMA 5/255 adapt. mAP']:.1f}"
    # the worst case and the flags belong to the row: on its last line only; DMR has no adaptive twin
    worst = head.index("worst <= 5/255")
    assert lines[0][worst] == "" and lines[1][worst] == f"{jad['worst <= 5/255 R1']:.1f} / {jad['worst <= 5/255 mAP']:.1f}"
    assert lines[1][head.index("DMR 16/255")] == "" and "adaptive-weaker" in lines[1][-1]


def test_worst_case_is_per_query(tmp_path):
    df = load_records(fixed_records(tmp_path))
    att = df[(df["model"] == "baseline") & (df["attack"].isin(["sma", "lta"]))]
    r1, m_ap = worst_case(att)
    # hits: sma [0,1,0,...], lta [1,0,0,1,...] -> no query survives both
    assert r1 == 0.0
    expected_ap = np.minimum([0.1, 0.6, 0.1, 0, 0.2, 0, 0.1, 0], [0.7, 0.2, 0.1, 0.5, 0, 0, 0.1, 0]).mean() * 100
    assert m_ap == pytest.approx(expected_ap)
    # a per-attack minimum of the averages would say 12.5 (SMA's R1): the per-query worst case is lower
    assert r1 < min(att["R1"])


def test_flags_and_budgets(tmp_path):
    wide, notes = build_leaderboard(load_records(fixed_records(tmp_path)))
    flags = dict(zip(wide["model"], wide["flags"]))
    assert "adaptive-weaker" in flags["jad"] and "adaptive-weaker" not in flags["baseline"]
    assert "worst <= 5/255" in notes["titles"] and "worst <= 16/255" in notes["titles"]
    base = wide[wide["model"] == "baseline"].iloc[0]
    # DMR (16/255) joins the worst case only at its own budget
    assert base["worst <= 16/255 R1"] <= base["worst <= 5/255 R1"]


def test_randomised_defense_without_eot_is_flagged(tmp_path):
    recs = [record("baseline", "rrp", "clean", "clean", ALL, AP_CLEAN, deterministic=False),
            record("baseline", "rrp", "sma", "oblivious", ALL, AP_CLEAN, deterministic=False),
            record("baseline", "rrp", "sma", "adaptive", [0] * 8, [0.1] * 8, eot=1, deterministic=False)]
    for slug, rec in recs:
        write_record(tmp_path / "records" / f"{slug}.json", rec)
    wide, notes = build_leaderboard(load_records(tmp_path))
    assert "no-eot" in wide.iloc[0]["flags"] and "no-eot" in notes["flags"]
    # an oblivious attack that a defense neutralises is the defense working, not a suspect evaluation
    assert "no-effect" not in wide.iloc[0]["flags"]


def _board(tmp_path, recs):
    for slug, rec in recs:
        write_record(tmp_path / "records" / f"{slug}.json", rec)
    return build_leaderboard(load_records(tmp_path))


def test_auto_components_enter_the_worst_case_and_rows_are_ranked_by_it(tmp_path):
    sma = record("baseline", "none", "sma", "white-box", [1, 1, 1, 1, 0, 0, 0, 0], [0.9, 0.8, 0.7, 0.6, 0, 0, 0, 0])
    auto = record("baseline", "none", "auto", "white-box", [1, 1, 0, 0, 1, 0, 0, 0], [0.9, 0.5, 0, 0, 0.5, 0, 0, 0])
    # one component broke query 0 where the ensemble's chosen image (attacker's view) did not
    auto[1]["components"] = {"sd": {"metrics": {}, "per_query": {"n": N, "r1_hits": encode_hits([0] + [1] * 7),
                                                                 "ap": [0.1] + [1.0] * 7}}}
    strong = record("goat", "none", "sma", "white-box", ALL, [0.9] * 8)
    wide, notes = _board(tmp_path, [record("baseline", "none", "clean", "clean", ALL, AP_CLEAN), sma, auto,
                                    record("goat", "none", "clean", "clean", ALL, AP_CLEAN), strong])
    base = wide[wide["model"] == "baseline"].iloc[0]
    assert base["worst R1"] == 12.5 and base["worst mAP"] == pytest.approx(100 * (0.1 + 0.5) / 8)  # 25.0 without it
    assert "auto 5/255 R1" in wide.columns
    assert list(wide["model"]) == ["goat", "baseline"]  # the more robust row first, whatever the models' order
    assert notes["ranked_by"] == "worst"


def test_mixed_code_and_fired_checks_are_flagged(tmp_path):
    a = record("baseline", "none", "clean", "clean", ALL, AP_CLEAN)
    b = record("baseline", "none", "sma", "white-box", ALL, [0.5] * 8)
    a[1]["provenance"]["source_fingerprint"] = "aaaa"
    b[1]["provenance"]["source_fingerprint"] = "bbbb"
    b[1]["checks"] = {"unconverged": {"fired": True, "mAP": 50.0, "mAP_check": 40.0},
                      "zero_gradient": {"fired": False, "fraction": 0.0},
                      "randomised_no_eot": {"fired": True, "differs": True, "eot_samples": 1}}
    wide, notes = _board(tmp_path, [a, b])
    flags = wide.iloc[0]["flags"].split(",")
    assert {"mixed-code", "unconverged", "randomised-no-eot"} <= set(flags) and "zero-gradient" not in flags
    assert set(notes["flags"]) >= {"mixed-code", "unconverged", "randomised-no-eot"}
    assert notes["sources"] == ["aaaa", "bbbb"]


def test_one_source_no_mixed_code_flag(tmp_path):
    recs = [record("baseline", "none", "clean", "clean", ALL, AP_CLEAN),
            record("baseline", "none", "sma", "white-box", ALL, [0.5] * 8)]
    for _, r in recs:
        r["provenance"]["source_fingerprint"] = "aaaa"
    wide, _ = _board(tmp_path, recs)
    assert "mixed-code" not in wide.iloc[0]["flags"]


def test_records_without_fingerprints_are_told_apart_by_their_commit(tmp_path):
    a = record("baseline", "none", "clean", "clean", ALL, AP_CLEAN)
    b = record("baseline", "none", "sma", "white-box", ALL, [0.5] * 8)
    b[1]["provenance"]["git_sha"] = "fedcba9876543210"
    wide, _ = _board(tmp_path, [a, b])
    assert "mixed-code" in wide.iloc[0]["flags"]


def test_a_board_of_rows_from_different_code_is_flagged_as_a_whole(tmp_path):
    recs = [record("baseline", "none", "clean", "clean", ALL, AP_CLEAN),
            record("goat", "none", "clean", "clean", ALL, AP_CLEAN)]
    recs[0][1]["provenance"]["source_fingerprint"] = "aaaa"
    recs[1][1]["provenance"]["source_fingerprint"] = "bbbb"
    wide, notes = _board(tmp_path, recs)
    assert not any("mixed-code" in f for f in wide["flags"])  # each row is of one piece
    assert "2 versions of the code" in notes["flags"]["mixed-code"]
