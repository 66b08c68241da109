"""GOAT: guides, batch hook, CEA switches, goat-ft."""

import json

import pytest
import torch

from reidbench.defenses import GOAT


def test_goat_guides_have_the_right_identities_and_bn_is_untouched(tiny_train, small):
    _, tr = tiny_train
    n = int(tr.pids.max()) + 1
    model = small(n).train()
    goat = GOAT(steps=2)
    members = {int(p): torch.nonzero(tr.pids == p).flatten() for p in torch.unique(tr.pids)}
    y = tr.pids[:8]
    idx = goat.push_indices(y, members, torch.Generator().manual_seed(0))
    assert idx.shape == (8 * goat.num_push,)
    assert torch.equal(tr.pids[idx].view(8, -1), y[:, None].expand(-1, goat.num_push))
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    hook = goat.batch_hook(tr.images, tr.pids, seed=1)
    x = tr.images[:8].float() / 255
    adv, y2 = hook(model, x, y, 0)
    assert torch.equal(y2, y) and float((adv - x).abs().max()) <= 5 / 255 + 1e-6
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bn.items())
    assert not torch.equal(adv, x)


def test_goat_ft_trains_normally_then_fine_tunes_online(tiny_synth, tmp_path):
    """goat-ft: a normal stage without the hook, then the online stage (``--epochs`` sets both)."""
    from reidbench.cli import main

    out = tmp_path / "goat-ft"
    assert main(["-q", "train", "--model", "goat-ft", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch", "--out",
                 str(out), "--no-eval"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["defense"]["finetune_epochs"] == 1 and len(card["history"]) == 2
    normal, online = card["history"]
    assert normal["hook_share"] == 0 and online["hook_share"] > 0.3
    assert card["train_seconds"] >= normal["seconds"] + online["seconds"]  # both stages are timed
    assert (out / "fit" / "last.pt").is_file()
    with pytest.raises(ValueError, match="finetune_epochs must be None"):
        GOAT(finetune_epochs=0)


def test_goat_cea_faithful_switches(tiny_train, small):
    """cea_faithful: budget in normalised units (about 1.1/255 in pixels, per channel), train-mode
    BatchNorm (running statistics move), pulling guide of any identity; each is recorded."""
    _, tr = tiny_train
    model = small(int(tr.pids.max()) + 1).train()
    canonical, faithful = GOAT(steps=3), GOAT(steps=3, cea_faithful=True)
    assert set(canonical.config()) == {"eps", "alpha", "steps", "num_push", "clean_fraction"}
    assert faithful.config()["eps_space"] == "normalized" and faithful.config()["bn_mode"] == "train"
    assert faithful.config()["pull"] == "any"
    assert GOAT(cea_faithful=True, bn_mode="eval").bn_mode == "eval"  # a switch overrides the preset
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    x, y = tr.images[:8].float() / 255, tr.pids[:8]
    adv, _ = faithful.batch_hook(tr.images, tr.pids, seed=1)(model, x, y, 0)
    assert model.training
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in bn.items())
    per_channel = (adv - x).abs().amax(dim=(0, 2, 3))
    bound = 5 / 255 * torch.tensor([0.229, 0.224, 0.225])
    assert torch.all(per_channel <= bound + 1e-6) and torch.all(per_channel > 0.5 * bound)
    adv_pixel, _ = canonical.batch_hook(tr.images, tr.pids, seed=1)(model, x, y, 0)
    assert float((adv_pixel - x).abs().max()) > 2 * float(bound.max())


def test_goat_sma_guided_and_bad_switches(tiny_train, small):
    _, tr = tiny_train
    model = small(int(tr.pids.max()) + 1).eval()
    x, y = tr.images[:8].float() / 255, tr.pids[:8]
    goat = GOAT(steps=3, guides="sma")
    assert goat.config()["guides"] == "sma"
    adv, _ = goat.batch_hook(tr.images, tr.pids, seed=1)(model, x, y, 0)
    with torch.no_grad():
        moved = (model(adv) - model(x)).norm(dim=1)
    assert float((adv - x).abs().max()) <= 5 / 255 + 1e-6 and bool((moved > 0).all())
    with pytest.raises(ValueError, match="eps_space must be one of 'pixel', 'normalized'"):
        GOAT(eps_space="normalised")
