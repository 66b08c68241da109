"""The matrix runner end to end on a tiny synthreid with one-epoch models."""


import pytest

import reidbench.attacks.evaluate as evaluate_mod
from reidbench.matrix import MatrixConfig, iter_records, run_matrix

# the runner's machinery on the from-scratch small ResNet (fast); the CLI smoke test runs the default model
FAST = dict(dataset="synthreid", synth_size="tiny", steps=2, epochs=1, dmr_epochs=1, rerank=True, batch_size=32, checks=4,
            init="scratch")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def config(tiny_synth, **kw):
    return MatrixConfig(data_root=str(tiny_synth), **{**FAST, **kw})


def metrics_by_slug(results):
    return {r["slug"]: (r["metrics"], r["metrics_rerank"], r["per_query"]) for r in iter_records(results)}


def count_gallery_extractions(monkeypatch, n_gallery):
    calls = []
    real = evaluate_mod.extract_features

    def counting(model, images, *a, **k):
        if len(images) == n_gallery:
            calls.append(type(model).__name__)
        return real(model, images, *a, **k)

    monkeypatch.setattr(evaluate_mod, "extract_features", counting)
    return calls


def test_gallery_features_once_per_model_and_defense(tiny_synth, store, tmp_path, monkeypatch):
    from reidbench.data import load_dataset

    n_gallery = len(load_dataset("synthreid", tiny_synth).gallery)
    counts = {}
    for attacks in (("sma",), ("sma", "fna", "odfa")):
        calls = count_gallery_extractions(monkeypatch, n_gallery)
        run = run_matrix(config(tiny_synth, models=("baseline", "jad"), attacks=attacks), tmp_path / "-".join(attacks),
                         store=store, progress=False)
        assert len(run.computed) == 2 + 3 * len(attacks)  # baseline: clean + wb; jad: clean + obl + adapt
        counts[attacks] = list(calls)
        monkeypatch.undo()
    # baseline: once; jad: once through CS (evaluation) and once without (the oblivious attacker's guides)
    assert len(counts[("sma",)]) == 3
    assert counts[("sma",)] == counts[("sma", "fna", "odfa")]


def test_records_schema_resume_and_second_run(tiny_synth, store, tmp_path, monkeypatch):
    cfg = config(tiny_synth, models=("baseline", "jad"), attacks=("sma", "dmr"))
    ref = tmp_path / "uninterrupted"
    first = run_matrix(cfg, ref, store=store, progress=False)
    assert len(first.computed) == 2 + 1 + 1 + 2 + 1 and not first.skipped
    rec = next(r for r in iter_records(ref) if r["cell"]["threat"] == "adaptive")
    for field in ("key", "cell", "metrics", "metrics_rerank", "perturbation", "per_query", "config", "seeds",
                  "provenance", "clean_metrics"):
        assert field in rec, field
    assert set(rec["metrics"]) == {"R1", "R5", "R10", "mAP", "mINP"} == set(rec["metrics_rerank"])
    assert rec["perturbation"]["linf_max"] <= 5 / 255 + 1e-6 and rec["perturbation"]["l2_mean"] > 0
    assert rec["config"]["model"]["sha256"] and rec["config"]["dataset"]["fingerprint"]
    for k in ("reidbench_version", "git_sha", "torch_version", "cuda_version", "device", "wall_seconds"):
        assert k in rec["provenance"], k
    dmr = next(r for r in iter_records(ref) if r["cell"]["attack"] == "dmr" and r["cell"]["model"] == "jad")
    assert dmr["config"]["surrogate"]["surrogate_preset"] == "baseline"
    assert dmr["config"]["surrogate"]["surrogate_sha256"] != dmr["config"]["model"]["sha256"]
    assert dmr["perturbation"]["linf_max"] <= 16 / 255 + 1e-6

    # a second invocation computes nothing
    again = run_matrix(cfg, ref, store=store, progress=False)
    assert not again.computed and len(again.skipped) == len(first.computed)

    # crash in the middle of the third attacked cell, then start again
    crashed = tmp_path / "crashed"
    real = evaluate_mod.attack_queries
    import reidbench.matrix.runner as runner_mod

    seen = []

    def crashing(*a, **k):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "attack_queries", crashing, raising=False)
    monkeypatch.setattr(evaluate_mod, "attack_queries", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(cfg, crashed, store=store, progress=False)
    monkeypatch.undo()
    partial = list((crashed / "records").glob("*.json"))
    assert 0 < len(partial) < len(first.computed)
    assert not list((crashed / "records").glob(".*"))          # no half-written record
    assert not list((crashed / "claims").glob("*.lock"))       # claims released
    resumed = run_matrix(cfg, crashed, store=store, progress=False)
    assert len(resumed.skipped) == len(partial) and len(resumed.computed) == len(first.computed) - len(partial)
    assert metrics_by_slug(crashed) == metrics_by_slug(ref)


def test_cli_smoke_and_leaderboard(tiny_synth, store, tmp_path, capsys, monkeypatch):
    from reidbench.cli import main

    monkeypatch.setenv("REIDBENCH_CHECKPOINTS", str(store))
    res = tmp_path / "res"
    argv = ["-q", "matrix", "--models", "baseline", "--attacks", "sma,fna", "--data-root", str(tiny_synth),
            "--synth-size", "tiny", "--epochs", "1", "--steps", "2", "--results", str(res)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| baseline" in out and "SMA 5/255" in out and "FNA 5/255" in out and "3 cells computed" in out
    assert main(argv) == 0
    assert "0 cells computed, 3 already recorded" in capsys.readouterr().out
    assert main(["leaderboard", "--results", str(res), "--format", "csv", "--out", str(tmp_path / "b.csv")]) == 0
    csv = (tmp_path / "b.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,model,defense,seeds,clean R1,clean mAP,SMA 5/255 R1")
    assert len(csv) == 2
    assert main(["leaderboard", "--results", str(tmp_path / "nothing")]) == 2
    assert "run `reidbench matrix" in capsys.readouterr().err
    assert main(["matrix", "--models", "basline", "--results", str(res)]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()


def test_jad_shares_pd_weights_and_git_sha_is_read_at_start(tiny_synth, tmp_path, monkeypatch):
    """jad = pd's training + CS: the matrix trains pd once, and both rows name the same checkpoint;
    the records' git SHA is the one at the start of the run even if the tree changes during it."""
    import reidbench.matrix.records as records_mod

    monkeypatch.setitem(records_mod._GIT, "sha", "0" * 40)  # what the process saw when it started
    own = tmp_path / "store"
    run = run_matrix(config(tiny_synth, models=("pd", "jad"), attacks=("sma",), rerank=False), tmp_path / "res",
                     store=own, progress=False)
    assert len(run.computed) == 2 + 3
    assert [p.parent.name.split("-")[0] for p in own.glob("*/model.pt")] == ["pd"]
    records = list(iter_records(tmp_path / "res"))
    assert {r["config"]["model"]["preset"] for r in records} == {"pd", "jad"}
    assert len({r["config"]["model"]["sha256"] for r in records}) == 1
    assert {r["provenance"]["git_sha"] for r in records} == {"0" * 40}
    cs = [r for r in records if r["cell"]["model"] == "jad"]
    assert {r["config"]["defense"]["name"] for r in cs} == {"cs"}


def test_git_sha_is_read_when_the_matrix_starts(tmp_path, monkeypatch):
    import reidbench.matrix.records as records_mod
    import reidbench.matrix.runner as runner_mod

    monkeypatch.setattr(records_mod, "_GIT", {})
    calls = []
    monkeypatch.setattr(runner_mod, "git_sha", lambda: calls.append(1))
    with pytest.raises(KeyError, match="unknown dataset 'no-such-dataset'"):
        run_matrix(MatrixConfig(dataset="no-such-dataset"), tmp_path, progress=False)  # fails at the dataset
    assert calls == [1]


def test_randomised_defense_cells_are_identical_in_any_order_subset_or_after_a_kill(tiny_synth, store, tmp_path,
                                                                                   monkeypatch):
    """Keyed randomness: CS-R and RRP rows attacked adaptively with EOT give byte-identical records
    whether the matrix runs in one order, in the reverse order after a kill and resume, or restricted
    to one cell -- and the record keys are the same."""
    base = dict(models=("baseline",), defenses=("cs-r", "rrp"), attacks=("sma", "lta"), rerank=False, eot=2, checks=0)
    first = tmp_path / "first"
    run_matrix(config(tiny_synth, **base), first, store=store, progress=False)
    ref = metrics_by_slug(first)
    assert any("cs-r" in slug and "adaptive" in slug for slug in ref) and any("rrp" in slug for slug in ref)

    reverse = config(tiny_synth, **{**base, "attacks": ("lta", "sma"), "defenses": ("rrp", "cs-r")})
    killed = tmp_path / "reverse"
    real = evaluate_mod.attack_queries
    seen = []

    def crashing(*a, **k):
        seen.append(1)
        if len(seen) == 4:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(evaluate_mod, "attack_queries", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(reverse, killed, store=store, progress=False)
    monkeypatch.undo()
    run_matrix(reverse, killed, store=store, progress=False)
    assert metrics_by_slug(killed) == ref
    assert sorted(p.name for p in (killed / "records").glob("*.json")) == \
        sorted(p.name for p in (first / "records").glob("*.json"))

    alone = tmp_path / "alone"
    run_matrix(config(tiny_synth, **{**base, "attacks": ("lta",), "defenses": ("rrp",)}), alone, store=store,
               progress=False)
    some = metrics_by_slug(alone)
    assert some and all(ref[slug] == v for slug, v in some.items())


def test_records_carry_numerics_source_fingerprint_and_checks(tiny_synth, store, tmp_path):
    from reidbench.matrix.records import source_fingerprint

    res = tmp_path / "res"
    run_matrix(config(tiny_synth, models=("baseline",), attacks=("sma",), rerank=False, checks=6), res, store=store,
               progress=False)
    recs = {r.cell["attack"]: r for r in iter_records(res)}
    sma = recs["sma"]
    assert sma.config["numerics"] == {"evaluation": "1", "defense": {}, "attack": "1"}
    assert sma.provenance["source_fingerprint"] == source_fingerprint() and len(source_fingerprint()) == 16
    assert set(sma.checks) == {"zero_gradient", "unconverged", "randomised_no_eot"}
    u = sma.checks["unconverged"]
    assert (u["queries"], u["steps"], u["steps_check"]) == (6, 2, 8)
    assert 0 <= u["mAP_check"] <= 100 and u["fired"] == (u["mAP"] - u["mAP_check"] > 1.0)
    assert sma.checks["randomised_no_eot"] == {"differs": False, "eot_samples": 1, "fired": False}
    assert recs["clean"].checks is None


def test_auto_cell_records_components_checks_and_its_board_column(tiny_synth, store, tmp_path):
    from reidbench.leaderboard import build_leaderboard, load_records

    res = tmp_path / "res"
    run_matrix(config(tiny_synth, models=("baseline",), attacks=("auto", "sma"), rerank=False, checks=4), res,
               store=store, progress=False)
    rec = next(r for r in iter_records(res) if r.cell["attack"] == "auto")
    assert set(rec.components) == {"sd", "margin", "ap"}
    assert rec.config["attack_hyperparameters"]["version"] == "auto-v1"
    for comp in rec.components.values():
        assert comp["per_query"]["n"] == rec.n_queries and set(comp["metrics"]) == set(rec.metrics)
    assert rec.checks["unconverged"]["steps_check"] == 8
    wide, notes = build_leaderboard(load_records(res))
    assert "auto 5/255" in notes["titles"] and notes["titles"].index("auto 5/255") < notes["titles"].index("SMA 5/255")


def test_trainings_are_claimed_first_and_rows_waiting_on_another_run_go_last(tiny_synth, tmp_path):
    """Copies of the matrix on one folder (a job array): while another host trains the baseline, this
    run trains pd and finishes pd's cells instead of waiting, then takes the baseline over once the
    other run's claim is gone."""
    import json
    import threading
    import time

    from reidbench.data import load_dataset
    from reidbench.matrix.runner import checkpoint_location
    from reidbench.store import CellClaim

    own, res = tmp_path / "store", tmp_path / "res"
    cfg = config(tiny_synth, models=("baseline", "pd"), attacks=("sma",), rerank=False, checks=0)
    ds = load_dataset("synthreid", tiny_synth)
    ckpt, key = checkpoint_location("baseline", ds, 0, epochs=cfg.epochs, store=own, init=cfg.init)
    foreign = CellClaim(own, "train-" + key)
    foreign.path.parent.mkdir(parents=True)
    foreign.path.write_text(json.dumps({"pid": 1, "host": "node-7", "token": "x" * 32, "time": time.time(),
                                        "heartbeat": time.time() + 3600}))  # fresh for the whole test

    def other_host_gives_up():  # once pd's two cells are recorded, the other run's claim goes away
        deadline = time.time() + 120
        while len(list((res / "records").glob("pd__*.json"))) < 2 and time.time() < deadline:
            time.sleep(0.2)
        foreign.path.unlink()

    helper = threading.Thread(target=other_host_gives_up, daemon=True)
    helper.start()
    run = run_matrix(cfg, res, store=own, progress=False)
    helper.join()
    assert len(run.computed) == 4
    pd_done = max(p.stat().st_mtime for p in (res / "records").glob("pd__*.json"))
    assert ckpt.is_file() and ckpt.stat().st_mtime > pd_done      # the baseline was trained after pd's cells
    assert not list((own / "claims").glob("*.lock")) and not list((res / "claims").glob("*.lock"))


def test_a_cell_killed_mid_way_resumes_from_its_attacked_batches(tiny_synth, store, tmp_path, monkeypatch):
    """The matrix keeps each attacked query batch of a running cell (``partial/<key>/``): a kill loses
    one batch, the rerun attacks only the rest, its record has the uninterrupted metrics, and the
    batches are removed once the record is written."""
    cfg = config(tiny_synth, models=("baseline",), attacks=("auto",), rerank=False, checks=4, batch_size=8)
    ref = tmp_path / "uninterrupted"
    run_matrix(cfg, ref, store=store, progress=False)
    killed = tmp_path / "killed"
    real = evaluate_mod._attack_batch
    calls, kill = [], [3]

    def batch(*a, **k):
        calls.append(a[3])
        if len(calls) == kill[0]:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(evaluate_mod, "_attack_batch", batch)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(cfg, killed, store=store, progress=False)
    saved = sorted((killed / "partial").glob("*/*.pt"))
    assert len(saved) == 2 and not list((killed / "records").glob("*auto*"))
    calls.clear()
    kill[0] = 0
    run_matrix(cfg, killed, store=store, progress=False)
    assert calls[0][0] == 16  # the two saved batches (queries 0-15) were not attacked again
    assert metrics_by_slug(killed) == metrics_by_slug(ref)
    rec = next(r for r in iter_records(killed) if r.cell["attack"] == "auto")
    want = next(r for r in iter_records(ref) if r.cell["attack"] == "auto")
    assert rec.components == want.components and rec.checks == want.checks
    assert not list((killed / "partial").glob("*/*"))  # removed with the record written
