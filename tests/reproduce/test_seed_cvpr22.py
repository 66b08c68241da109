"""The seed-paper reproduction recipe: its paper cells, its plan, and a --smoke run end to end."""

import math

import pytest

from reidbench.cli import main
from reidbench.reproduce import PAPER_CELLS, compare, plan_configs
from reidbench.reproduce.seed_cvpr22 import cells_for

# paper numbers per table on Market-1501: T1 4 columns x 4 metrics; T4 4 rows x 3 columns x 2; T5 and
# T7 4 x 4 x 2; T6 5 x 2 x 2
MARKET_NUMBERS = {"Table 1": 16, "Table 4": 24, "Table 5": 32, "Table 6": 20, "Table 7": 32}


def test_paper_cells_are_the_transcribed_tables():
    market = cells_for("market1501")
    counts = {}
    for c in market:
        counts[c.table] = counts.get(c.table, 0) + len(c.paper)
    assert counts == MARKET_NUMBERS
    duke = cells_for("dukemtmcreid")
    assert {c.table for c in duke} == {"Table 4"} and len(duke) == 12
    assert cells_for("synthreid") == market  # the smoke run compares with Market-1501
    lta_cs = next(c for c in market if c.table == "Table 6" and c.row == "P1P2P1 (= CS)" and c.column == "lta")
    assert lta_cs.paper == {"R1": 31.4, "mAP": 33.1} and lta_cs.defense == "cs" and lta_cs.rerank
    at = [c for c in market if c.table == "Table 7" and c.row == "AT"]
    assert {c.column: c.models for c in at}["sma"] == ("at-sma",)
    assert len({c.column: c.models for c in at}["clean"]) == 3  # the mean of the three AT models
    assert len(PAPER_CELLS) == len(market) + len(duke)


def test_plan_covers_every_paper_cell_with_the_seed_protocol():
    configs = plan_configs("market1501", data_root="/data")
    have = {(cfg.models[0], d, a) for cfg in configs for d in cfg.defenses for a in cfg.attacks}
    have |= {(cfg.models[0], d, "clean") for cfg in configs for d in cfg.defenses}
    for c in cells_for("market1501"):
        for m in c.models:
            assert (m, c.defense, c.column) in have, c
    assert all(not cfg.adaptive and cfg.rerank and cfg.steps is None for cfg in configs)
    faithful = plan_configs("market1501", faithful=True)
    assert {cfg.io for cfg in faithful} == {"jpeg75"} and {cfg.ap for cfg in faithful} == {"market_official"}
    assert faithful[0].attack_args["mifgsm"] == {"gong_faithful": True}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    rc = main(["-q", "reproduce", "seed-cvpr22", "--smoke", "--results", str(out)])
    return rc, out


@pytest.mark.slow
def test_smoke_run_fills_every_paper_cell(smoke, capsys):
    rc, out = smoke
    assert rc == 0
    md = (out / "reproduction.md").read_text()
    for table in MARKET_NUMBERS:
        assert f"## {table} " in md
    table = compare(out, "synthreid")
    assert len(table) == sum(MARKET_NUMBERS.values())
    assert not table["reidbench"].isna().any()
    assert ((table["reidbench"] >= 0) & (table["reidbench"] <= 100)).all()
    assert (table["diff"] - (table["reidbench"] - table["paper"])).abs().max() < 0.051
    from reidbench.matrix import iter_records

    # --smoke checks the plumbing on small from-scratch models; without it the presets' own (ImageNet) apply
    assert {r["config"]["model"]["init"] for r in iter_records(out)} == {"scratch"}
    assert {cfg.init for cfg in plan_configs("market1501")} == {None}


@pytest.mark.slow
def test_smoke_at_clean_is_the_mean_of_the_three_at_models(smoke):
    from reidbench.leaderboard import load_records

    _, out = smoke
    df = load_records(out)
    clean = df[(df["attack"] == "clean") & (df["defense"] == "none") & df["model"].str.startswith("at-")]
    assert sorted(clean["model"]) == ["at-lta", "at-mifgsm", "at-sma"]
    table = compare(out, "synthreid")
    got = table[(table["table"] == "Table 7") & (table["row"] == "AT") & (table["column"] == "no attack")
                & (table["metric"] == "mAP")]["reidbench"].iloc[0]
    assert math.isclose(got, round(clean["rr_mAP"].mean(), 1), abs_tol=1e-9)
    # a second invocation computes nothing new and gives the same table
    before = sorted(p.name for p in (out / "records").iterdir())
    assert main(["-q", "reproduce", "seed-cvpr22", "--smoke", "--results", str(out)]) == 0
    assert sorted(p.name for p in (out / "records").iterdir()) == before
    assert compare(out, "synthreid").equals(table)


def test_real_dataset_without_data_root_says_what_to_do(capsys):
    assert main(["reproduce", "seed-cvpr22", "--dataset", "market1501"]) == 2
    assert "--data-root" in capsys.readouterr().err
