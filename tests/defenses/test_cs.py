import numpy as np
import torch
from PIL import Image

from reidbench.attacks import SMA
from reidbench.defenses import (BitDepth, CircuitousScaling, CircuitousScalingRandom, DefendedModel, JPEG, RRP,
                                ProactiveDefense, build_defense, circuitous_scaling)
from reidbench.models import build_architecture


def photo(seed=0):
    """A natural-looking 128x64 test image: smooth shapes plus texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:64]
    base = np.stack([np.sin(yy / 9 + c) * 0.3 + 0.5 + 0.2 * (xx > 30 + 5 * c) for c in range(3)], -1)
    base += rng.normal(0, 0.04, base.shape)
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


def chain(u8, sizes, final):
    im = Image.fromarray(u8)
    for h, w in (*sizes, final):
        im = im.resize((w, h), Image.BICUBIC)
    return np.asarray(im)


def test_pil_backend_equals_chained_pil_resizes():
    sizes = ((110, 50), (220, 100), (110, 50))
    u8 = photo()
    ref = chain(u8, sizes, (256, 128))
    assert np.array_equal(circuitous_scaling(u8, sizes, (256, 128)), ref)
    assert np.array_equal(np.asarray(circuitous_scaling(Image.fromarray(u8), "P1P2P1", (256, 128))), ref)
    t = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255
    out = circuitous_scaling(t, sizes, (256, 128))
    assert torch.equal(torch.round(out[0] * 255).to(torch.uint8).permute(1, 2, 0), torch.from_numpy(ref))


def test_torch_backend_is_close_to_pil_and_differentiable():
    xs = torch.stack([torch.from_numpy(photo(s)).permute(2, 0, 1).float() / 255 for s in range(4)])
    pil = circuitous_scaling(xs, final=(128, 64))
    tch = circuitous_scaling(xs, final=(128, 64), backend="torch")
    diff = (pil - tch).abs() * 255
    # measured on such images: mean about 0.3 grey levels, max a few levels (PIL and torch differ in
    # their bicubic filters' support and rounding)
    assert float(diff.mean()) < 1.0 and float(diff.max()) <= 12
    x = xs.clone().requires_grad_(True)
    circuitous_scaling(x, final=(128, 64), backend="torch").sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_patterns_and_native_size_scaling():
    assert CircuitousScaling("P1").sizes == ((110, 50),)
    assert CircuitousScaling("P2P1P2").sizes == ((220, 100), (110, 50), (220, 100))
    assert CircuitousScaling(native=(256, 128)).sizes == ((220, 100), (440, 200), (220, 100))
    x = torch.rand(2, 3, 128, 64)
    assert CircuitousScaling().test_transform(x).shape == x.shape  # final = the input (model) size


def test_cs_random_varies_and_repeats_with_seed():
    x = torch.from_numpy(photo()).permute(2, 0, 1)[None].float() / 255
    a = CircuitousScalingRandom(seed=1)
    outs = [a.test_transform(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    b = CircuitousScalingRandom(seed=1)
    assert all(torch.equal(o, b.test_transform(x)) for o in outs)
    assert not CircuitousScalingRandom().deterministic and CircuitousScaling().deterministic


def test_composition_order():
    x = torch.rand(1, 3, 64, 32)
    jb = JPEG() + BitDepth()
    assert torch.equal(jb.test_transform(x), BitDepth().test_transform(JPEG().test_transform(x)))
    assert not torch.equal(jb.test_transform(x), JPEG().test_transform(BitDepth().test_transform(x)))
    jad = build_defense("pd+cs")
    assert jad.name == "pd+cs" and jad.has_train_side and jad.has_test_side and jad.deterministic
    assert not ProactiveDefense().has_test_side and not CircuitousScaling().has_train_side


def test_input_transforms():
    x = torch.rand(2, 3, 64, 32)
    b = BitDepth(3).test_transform(x)
    assert torch.unique(b).numel() <= 8 and float((b - x).abs().max()) < 32 / 255
    j = JPEG().test_transform(x)
    assert torch.equal(torch.round(j * 255) / 255, j) and not torch.equal(j, x)
    r = RRP(seed=3)
    y1, y2 = r.test_transform(x), r.test_transform(x)
    assert y1.shape == (2, 3, 72, 36) and not torch.equal(y1, y2)
    assert torch.equal(RRP(seed=3).test_transform(x), y1)
    xg = x.clone().requires_grad_(True)
    RRP().test_transform(xg).sum().backward()
    assert xg.grad.abs().sum() > 0
    # BPDA for the non-differentiable ones: the identity gradient
    for d in (JPEG(), BitDepth()):
        xg = x.clone().requires_grad_(True)
        d.attack_transform(xg).sum().backward()
        assert torch.equal(xg.grad, torch.ones_like(x))


def test_defended_model_mirrors_mode_and_falls_through():
    m = build_architecture("resnet-small", 4, widths=(8, 8, 8, 8)).eval()
    d = DefendedModel(m, CircuitousScaling())
    assert not d.training and d.input_size == (128, 64)
    x = torch.rand(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(d(x), m(CircuitousScaling().test_transform(x)))


def test_adaptive_attack_through_cs_is_at_least_as_strong_as_the_oblivious_one():
    torch.manual_seed(0)
    m = build_architecture("resnet-small", 4, widths=(8, 16, 24, 32))
    with torch.no_grad():
        m.train()(torch.rand(8, 3, 128, 64))
    m.eval()
    cs = CircuitousScaling()
    defended = DefendedModel(m, cs)
    x = torch.stack([torch.from_numpy(photo(s)).permute(2, 0, 1).float() / 255 for s in range(6)])
    obl = SMA(m, eps=8 / 255, steps=10)(x)
    ada = SMA(DefendedModel(m, cs, adaptive=True), eps=8 / 255, steps=10)(x)
    with torch.no_grad():
        clean = defended(x)
        d_obl = (defended(obl) - clean).pow(2).sum(1)
        d_ada = (defended(ada) - clean).pow(2).sum(1)
    assert float(d_ada.mean()) >= float(d_obl.mean())
