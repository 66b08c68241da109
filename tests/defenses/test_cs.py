import numpy as np
import pytest
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
    assert torch.equal(torch.round(out[0] * 255).to(torch.uint8).permute(1, 2, 0), torch.tensor(ref))  # a copy: ref is a read-only view of a PIL image


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


def test_batched_bicubic_resize_equals_interpolate_per_image():
    """The per-image weights of the batched resize are F.interpolate's (antialiased bicubic, half-pixel
    centres), down and up, for images of different sizes in one batch, values and gradients."""
    from reidbench.data.imageops import resize_bicubic_each

    g = torch.Generator().manual_seed(0)
    in_hw = torch.tensor([[64, 32], [50, 23], [64, 32], [17, 9]])
    out_hw = torch.tensor([[110, 50], [31, 64], [64, 32], [2, 3]])
    x = torch.zeros(4, 3, 64, 32)
    for k, (h, w) in enumerate(in_hw.tolist()):
        x[k, :, :h, :w] = torch.rand(3, h, w, generator=g)
    x.requires_grad_(True)
    y = resize_bicubic_each(x, in_hw, out_hw)
    assert y.shape == (4, 3, 110, 64)
    weight = torch.rand(y.shape, generator=g)
    (y * weight).sum().backward()
    for k, ((h, w), (oh, ow)) in enumerate(zip(in_hw.tolist(), out_hw.tolist())):
        xk = x.detach()[k:k + 1, :, :h, :w].clone().requires_grad_(True)
        ref = torch.nn.functional.interpolate(xk, size=(oh, ow), mode="bicubic", align_corners=False, antialias=True)
        assert torch.allclose(y[k:k + 1, :, :oh, :ow], ref, atol=2e-6), k
        assert not y[k, :, oh:].any() and not y[k, :, :, ow:].any()  # zero outside the image
        (ref * weight[k:k + 1, :, :oh, :ow]).sum().backward()
        assert torch.allclose(x.grad[k, :, :h, :w], xk.grad[0], atol=2e-5), k
        assert not x.grad[k, :, h:].any() and not x.grad[k, :, :, w:].any()


def _cs_r_reference(defense, x, backend):
    """CS-R image by image with the defense's own (unkeyed) generator: the per-image reference."""
    final = tuple(x.shape[-2:])
    return torch.cat([circuitous_scaling(x[k:k + 1], defense._draw(defense.generator), final, backend=backend)
                      for k in range(len(x))])


def test_cs_random_batched_equals_the_per_image_chain():
    """CS-R's batched forms make the per-image draws in order: the exact PIL path is pixel for pixel
    the per-image PIL chain; the differentiable path is the per-image F.interpolate chain up to float
    rounding, which may move an 8-bit-rounded pixel by one grey level and rarely does."""
    x = torch.stack([torch.from_numpy(photo(s)).permute(2, 0, 1).float() / 255 for s in range(6)])
    assert torch.equal(CircuitousScalingRandom(seed=5).test_transform(x),
                       _cs_r_reference(CircuitousScalingRandom(seed=5), x, "pil"))
    ours = CircuitousScalingRandom(seed=5).attack_transform(x)
    ref = _cs_r_reference(CircuitousScalingRandom(seed=5), x, "torch")
    steps = ((ours - ref).abs() * 255).round()
    assert float(steps.max()) <= 1 and float((steps > 0).float().mean()) < 1e-3
    assert not torch.equal(ours, CircuitousScalingRandom(seed=6).attack_transform(x))  # the draws matter
    xg = x.clone().requires_grad_(True)
    CircuitousScalingRandom(seed=5).attack_transform(xg).sum().backward()
    xr = x.clone().requires_grad_(True)
    _cs_r_reference(CircuitousScalingRandom(seed=5), xr, "torch").sum().backward()
    assert torch.allclose(xg.grad, xr.grad, atol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic", "area"])
def test_rrp_batched_equals_resize_and_pad_per_image(mode):
    """RRP batched (nearest: one gather; other modes: one resize per drawn size) is F.interpolate +
    padding image by image: same draws, same pixels, same gradient."""
    from reidbench.models.base import IMAGENET_MEAN

    x = torch.rand(24, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    fill = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    draws = RRP(seed=4)._draws(24, 64, 32)
    sizes = [tuple(r) for r in draws[:, :2].tolist()]
    assert 1 < len(set(sizes)) < len(sizes)  # sizes differ within the batch, and some repeat
    xr = x.clone().requires_grad_(True)
    ref = torch.cat([torch.nn.functional.pad(torch.nn.functional.interpolate(xr[k:k + 1], size=(nh, nw), mode=mode) - fill,
                                             (left, 36 - nw - left, top, 72 - nh - top)) + fill
                     for k, (nh, nw, top, left) in enumerate(draws.tolist())])
    xg = x.clone().requires_grad_(True)
    ours = RRP(mode=mode, seed=4).test_transform(xg)
    assert torch.allclose(ours, ref, atol=1e-6)
    weight = torch.rand(ours.shape, generator=torch.Generator().manual_seed(2))
    (ours * weight).sum().backward()
    (ref * weight).sum().backward()
    assert torch.allclose(xg.grad, xr.grad, atol=1e-6)
