"""The proactive defense PD: its branch frequencies, repeatability and presets (its image operations:
tests/data/test_imageops.py)."""

import pytest
import torch

import reidbench.data.imageops as imageops
import reidbench.defenses.pd as pd
from reidbench.defenses import PD_PAPER, ProactiveDefense


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def img(seed=0, h=64, w=32):
    return torch.rand(3, h, w, generator=gen(seed))


def test_pd_branch_frequencies_and_repeatability(monkeypatch):
    taken = []
    # PD draws the operations, and LHT draws channel fusion and AutoAugment inside its rectangle:
    # count the calls made from either module
    for module in (pd, imageops):
        for name, label in (("grayscale", "grayscale"), ("autoaugment", "autoaugment"), ("lht", "lht"),
                            ("channel_fusion", "cf")):
            real = getattr(module, name)
            monkeypatch.setattr(module, name,
                                (lambda real, label: lambda *a, **k: (taken.append(label), real(*a, **k))[1])(real, label))
    d = ProactiveDefense()
    g = gen(11)
    x = img(0, 16, 8)
    n = 3000
    for _ in range(n):
        d.train_transform(x, g)
    counts = {k: taken.count(k) / n for k in ("cf", "autoaugment", "lht")}
    # direct draws plus those inside LHT's homogeneous image (CF 40 %, AutoAugment 40 % of LHT)
    assert abs(counts["cf"] - (0.02 + 0.10 * 0.4)) < 0.015
    assert abs(counts["autoaugment"] - (0.05 + 0.10 * 0.4)) < 0.02
    assert abs(counts["lht"] - 0.10) < 0.025
    a = [ProactiveDefense().train_transform(img(i, 16, 8), gen(i)) for i in range(30)]
    b = [ProactiveDefense().train_transform(img(i, 16, 8), gen(i)) for i in range(30)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_pd_presets():
    assert ProactiveDefense(preset="paper").probs == PD_PAPER
    assert ProactiveDefense(p_lht=0.5).probs["p_lht"] == 0.5
    with pytest.raises(ValueError, match="sum to more than 1"):
        ProactiveDefense(p_gray=0.9, p_lht=0.5)
    out = ProactiveDefense().train_transform(img(), gen())
    assert out.shape == (3, 64, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
