"""train_preset: presets with training-time defenses run through the engine, their fine-tuning
stages resume, and short AT / GOAT runs make a model more robust."""

import json

import pytest
import torch

from reidbench.defenses import AT, GOAT


def test_at_and_goat_presets_train_through_the_engine(tiny_synth, tmp_path):
    from reidbench.cli import main

    out = tmp_path / "at"
    assert main(["-q", "train", "--model", "at-sma", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch", "--out",
                 str(out), "--no-eval"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["defense"]["name"] == "at" and card["defense"]["attack"] == "sma"
    assert len(card["history"]) == 1 + card["defense"]["epochs"]
    out = tmp_path / "goat"
    assert main(["-q", "train", "--model", "goat", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch", "--out",
                 str(out), "--no-eval"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["defense"]["name"] == "goat" and card["history"][0]["hook_share"] > 0.3
    assert len(card["history"]) == 1 and "finetune_epochs" not in card["defense"]


@pytest.mark.slow
def test_short_at_and_goat_runs_raise_robustness_over_a_normal_run(tiny_trained):
    """From the same trained tiny model: 20 more normal epochs, 10 AT-LTA epochs (clean + adversarial
    images: as many steps) and 5 GOAT epochs (fewer steps). Robust mAP under white-box SMA and LTA
    regenerated on each model (measured: normal 6.2 / 11.5, AT-LTA 8.9 / 18.4, GOAT 22.9 / 30.6)."""
    import copy

    from reidbench.attacks import build_attack
    from reidbench.attacks.evaluate import evaluate_attack, prepare_evalset
    from reidbench.train import fine_tune, get_recipe, train_model

    base, ds, tr = tiny_trained
    recipe = get_recipe("cpu").replace(batch_size=32)

    def robust(m):
        m.eval()
        ev = prepare_evalset(m, ds)
        return {a: evaluate_attack(build_attack(a, m, steps=5), ev, m)["attacked"]["mAP"] for a in ("sma", "lta")}

    normal = train_model(copy.deepcopy(base), tr.images, tr.pids, recipe.replace(epochs=20), seed=1,
                         progress=False).model
    at = fine_tune(AT(attack="lta", epochs=10), copy.deepcopy(base), tr.images, tr.pids, recipe=recipe, seed=1).model
    goat = GOAT()
    goat_model = train_model(copy.deepcopy(base), tr.images, tr.pids, recipe.replace(epochs=5), seed=1,
                             progress=False, batch_hook=goat.batch_hook(tr.images, tr.pids, seed=1)).model
    r_normal, r_at, r_goat = robust(normal), robust(at), robust(goat_model)
    assert r_at["lta"] >= r_normal["lta"] + 3, (r_normal, r_at)
    assert r_goat["sma"] >= r_normal["sma"] + 8 and r_goat["lta"] >= r_normal["lta"] + 8, (r_normal, r_goat)


def test_a_killed_fine_tuning_stage_resumes_where_it_stopped(tiny_synth, tmp_path, monkeypatch):
    """AT's fine-tuning stage keeps a training state (``<out>/fit/last.pt``): a run killed in its
    second epoch resumes at that epoch and ends with the weights of an uninterrupted run. (goat-ft's
    stage runs through the same ``fine_tune``; measured the same way: 75 s on 2 cores.)"""
    preset = "at-sma"
    import reidbench.train.runner as runner
    from reidbench.data import load_dataset
    from reidbench.train import train_preset

    ds = load_dataset("synthreid", tiny_synth)
    engine, stages = runner.train_model, []

    def train_model(*args, kill_at=None, **kw):
        if kill_at is not None and kw.get("out_dir") is not None and kw["out_dir"].name == "fit":
            inner = kw.get("batch_hook")

            def hook(model, x, y, step):
                if step == kill_at:
                    raise KeyboardInterrupt
                return inner(model, x, y, step) if inner is not None else (x, y)

            kw["batch_hook"] = hook
        result = engine(*args, **kw)
        if kw.get("out_dir") is not None and kw["out_dir"].name == "fit":
            stages.append(result)
        return result

    def train(out, resume=False, kill_at=None):
        monkeypatch.setattr(runner, "train_model", lambda *a, **k: train_model(*a, kill_at=kill_at, **k))
        return train_preset(preset, ds, out, seed=3, epochs=2, resume=resume, pretrained=False, progress=False)

    full, _ = train(tmp_path / "full")
    cfg = json.loads((tmp_path / "full" / "fit" / "config.json").read_text())
    bs = cfg["recipe"]["batch_size"]
    steps = cfg["num_images"] // bs if cfg["recipe"]["drop_last"] else -(-cfg["num_images"] // bs)  # per epoch
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", kill_at=steps + 1)   # in the stage's second epoch
    assert torch.load(tmp_path / "cut" / "fit" / "last.pt", weights_only=True)["epoch"] == 1
    resumed, card = train(tmp_path / "cut", resume=True)
    assert stages[-1].resumed_from_epoch == 1
    assert len(card["history"]) == 4                 # 2 normal epochs + 2 fine-tuning epochs, as uninterrupted
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
