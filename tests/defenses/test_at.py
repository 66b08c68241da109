"""AT: the adversarial training set, its cache, its guides, and its fine-tuning stage."""

import torch

from reidbench.defenses import AT


def test_at_adversarial_set_is_within_budget_and_cached(tiny_train, tmp_path, small):
    _, tr = tiny_train
    imgs, pids = tr.images[:24], tr.pids[:24]
    model = small(int(tr.pids.max()) + 1)
    at = AT(attack="sma", steps=3)
    adv, cached = at.adversarial_set(model, imgs, pids, cache_dir=tmp_path)
    assert not cached and adv.dtype == torch.uint8 and adv.shape == imgs.shape
    delta = (adv.int() - imgs.int()).abs()
    assert int(delta.max()) <= 5 and int(delta.max()) >= 1
    again, cached = at.adversarial_set(model, imgs, pids, cache_dir=tmp_path)
    assert cached and torch.equal(again, adv)
    # another attack is another cache entry
    _, cached = AT(attack="lta", steps=2).adversarial_set(model, imgs, pids, cache_dir=tmp_path)
    assert not cached


def test_at_mifgsm_uses_same_identity_training_guides(tiny_train, tmp_path, small):
    _, tr = tiny_train
    model = small(int(tr.pids.max()) + 1)
    adv, _ = AT(attack="mifgsm", steps=2).adversarial_set(model, tr.images[:16], tr.pids[:16], tr.camids[:16],
                                                          cache_dir=tmp_path)
    assert int((adv.int() - tr.images[:16].int()).abs().max()) <= 5
