import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import reidbench.attacks.lta as lta_mod
from reidbench.attacks import (
    FNA, LTA, MIFGSM, MMIFGSM, ODFA, SMA, AttackContext, FeatureBank, MetricAttack, LTAStar, bpda, build_attack,
    jpeg_roundtrip, load_adversarial, save_adversarial,
)
from reidbench.models import build_architecture

SIZE = (64, 32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_architecture("resnet-small", 6, widths=(8, 16, 32, 48))
    with torch.no_grad():
        m.train()(torch.rand(16, 3, *SIZE))
    return m.eval()


def images(n=4, seed=1):
    return torch.rand(n, 3, *SIZE, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def test_sma_without_random_start_does_not_move(model):
    x = images()
    adv = SMA(model, random_start=False)(x)
    assert torch.equal(adv, x)  # the gradient of ||phi(x') - phi(x)||^2 is exactly 0 at x' = x
    assert not torch.equal(SMA(model)(x), x)


def test_momentum_normalisations_give_the_same_steps(model):
    x = images()
    a = LTAStar(model, grad_norm="l1", seed=3)(x)
    b = LTAStar(model, grad_norm="mean_abs", seed=3)(x)
    assert torch.equal(a, b)


def test_lta_redraws_its_reference_every_step_and_lta_star_once(model, monkeypatch):
    calls = []
    real = lta_mod.lgt

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lta_mod, "lgt", counting)
    LTA(model, steps=5)(images())
    assert len(calls) == 5
    calls.clear()
    LTAStar(model, steps=5)(images())
    assert len(calls) == 1


def test_each_sample_is_paired_with_its_own_references(model):
    x = images(6)
    pids = torch.tensor([1, 2, 3, 1, 2, 3])
    g = images(9, seed=5)
    with torch.no_grad():
        bank = FeatureBank(model(g), torch.tensor([1, 2, 3] * 3), torch.tensor([1, 1, 1, 2, 2, 2, 0, 0, 0]))
    ctx = AttackContext(gallery=bank)
    cams = torch.zeros(6, dtype=torch.long)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    a = MIFGSM(model)(x, pids, cams, ctx)
    b = MIFGSM(model)(x[perm], pids[perm], cams[perm], ctx)
    assert (a[perm] - b).abs().max() < 1e-6


def test_fna_pulls_towards_the_furthest_identity_centroid(model):
    x = images(6)
    pids = torch.tensor([1, 1, 2, 2, 3, 3])
    with torch.no_grad():
        clean = model(x)
    centroids = torch.stack([clean[pids == k].mean(0) for k in (1, 2, 3)])
    expected = []
    for i in range(6):
        d = torch.cdist(clean[i:i + 1], centroids)[0]
        d[int(pids[i]) - 1] = -1
        expected.append(centroids[int(d.argmax())])
    expected = torch.stack(expected)
    atk = FNA(model, eps=8 / 255)
    ctx = AttackContext(attacker_set=FeatureBank(clean, pids))
    atk._generator = torch.Generator()
    assert torch.allclose(atk.prepare(x, pids, None, ctx)["pull"], expected, atol=1e-6)
    atk._generator = None
    adv = build_attack("fna-pull", model, eps=8 / 255)(x, pids, None, ctx)
    with torch.no_grad():
        after = model(adv)
    before_d = (clean - expected).norm(dim=1)
    after_d = (after - expected).norm(dim=1)
    assert (after_d < before_d).all()


def test_odfa_turns_the_feature_around(model):
    x = images()
    adv = ODFA(model, eps=8 / 255)(x)
    with torch.no_grad():
        cos = F.cosine_similarity(model(x), model(adv))
    assert (cos < 0.99).all()
    # without the random start the exact gradient vanishes at x (normalised features)
    atk = ODFA(model, random_start=False)
    atk._generator = torch.Generator()
    g = atk.gradient(x, atk.prepare(x, None, None, None), 0)
    assert g.abs().max() < 1e-6


def test_gong_faithful_mifgsm_uses_the_last_guide_only(model):
    x = images(2)
    pids, cams = torch.tensor([1, 2]), torch.tensor([0, 0])
    feats = torch.randn(5, 48)
    bank = FeatureBank(F.normalize(feats, dim=1), torch.tensor([1, 2, 1, 1, 2]), torch.tensor([1, 1, 0, 2, 2]))
    atk = MIFGSM(model, gong_faithful=True)
    st = atk.prepare(x, pids, cams, AttackContext(gallery=bank))
    assert st["weights"].sum(1).tolist() == [1.0, 1.0]
    assert torch.equal(st["guides"][0, 0], bank.features[3]) and torch.equal(st["guides"][1, 0], bank.features[4])
    st = MIFGSM(model).prepare(x, pids, cams, AttackContext(gallery=bank))  # cross-camera guides
    assert st["weights"][0].gt(0).sum() == 2 and st["weights"][1].gt(0).sum() == 2  # same-camera guide dropped


def test_adaptive_transform_changes_the_gradient_and_bpda_uses_the_identity(model):
    x = images(2)
    blur = lambda z: F.avg_pool2d(z, 3, 1, 1, count_include_pad=False)  # noqa: E731
    plain, adaptive = SMA(model), SMA(model, transform=blur)
    for atk in (plain, adaptive):
        atk._generator = torch.Generator().manual_seed(0)
    x0 = plain.init(x)
    g_plain = plain.gradient(x0, plain.prepare(x, None, None, None), 0)
    g_adapt = adaptive.gradient(x0, adaptive.prepare(x, None, None, None), 0)
    assert not torch.allclose(g_plain, g_adapt)
    # BPDA: the gradient at x equals the plain gradient taken at transform(x)
    quant = lambda z: torch.round(z * 16) / 16  # noqa: E731  (zero gradient almost everywhere)
    bp = SMA(model, transform=bpda(quant))
    bp._generator = torch.Generator()
    state = bp.prepare(x, None, None, None)
    g_bp = bp.gradient(x0, state, 0)
    ref = SMA(model)
    g_ref = ref.gradient(quant(x0), state, 0)
    assert torch.allclose(g_bp, g_ref, atol=1e-7) and g_bp.abs().sum() > 0


def test_eot_averages_over_transform_draws(model):
    x = images(2)
    gen = torch.Generator().manual_seed(0)

    def noisy(z):
        return (z + 0.02 * torch.randn(z.shape, generator=gen)).clamp(0, 1)

    atk = SMA(model, transform=noisy, eot_samples=4, steps=3)
    adv = atk(x)
    assert float((adv - x).abs().max()) <= 5 / 255 + 1e-6
    assert atk.hyperparameters()["eot_samples"] == 4


class CEPGD(MetricAttack):
    """The engine with a cross-entropy loss on a classifier (for the torchattacks parity test)."""

    def prepare(self, x, pids, camids, context):
        return {"y": pids}

    def loss(self, x_adv, state, step):
        return F.cross_entropy(self.model(x_adv), state["y"], reduction="none")


def test_engine_reproduces_torchattacks_pgd_exactly():
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = images(8)
    y = torch.randint(0, 5, (8,))
    ta = torchattacks.PGD(clf, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)(x, y)
    ours = CEPGD(clf, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)(x, y)
    assert torch.equal(ta, ours)


def test_torchattacks_bridge(model):
    x = images(3)
    atk = build_attack("ta:PGD", model, eps=4 / 255, alpha=1 / 255, steps=3, seed=1)
    adv = atk(x)
    assert torch.equal(adv, build_attack("ta:PGD", model, eps=4 / 255, alpha=1 / 255, steps=3, seed=1)(x))
    assert float((adv - x).abs().max()) <= 4 / 255 + 1e-6 and not torch.equal(adv, x)
    assert "ta:PGD" in repr(atk)
    with pytest.raises(KeyError, match="torchattacks has no attack 'NoSuchAttack'"):
        build_attack("ta:NoSuchAttack", model)


def test_quantized_output_round_trips_through_files_exactly(model, tmp_path):
    x = torch.round(images(3) * 255) / 255  # clean images come from uint8 files
    adv = LTA(model, quantize=True)(x)
    assert torch.equal(torch.round(adv * 255) / 255, adv)
    assert float((adv - x).abs().max()) <= 5 / 255 + 1e-6
    for target, fmt in ((tmp_path / "adv.pt", None), (tmp_path / "png", "png")):
        save_adversarial(adv, target, fmt=fmt, names=["a.jpg", "b.jpg", "c.jpg"], meta={"attack": "lta"})
        loaded, meta = load_adversarial(target)
        assert torch.equal(loaded, adv) and meta["attack"] == "lta"
    save_adversarial(adv, tmp_path / "jpg", fmt="jpeg75")
    loaded, meta = load_adversarial(tmp_path / "jpg")
    assert meta["format"] == "jpeg75" and not torch.equal(loaded, adv)
    assert torch.allclose(loaded, jpeg_roundtrip(adv))


def test_bad_inputs_say_what_is_wrong(model):
    x = images(2)
    with pytest.raises(ValueError, match="uint8"):
        SMA(model)((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SMA(model)(x * 2 - 0.5)
    with pytest.raises(ValueError, match="needs context"):
        MIFGSM(model)(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="eps"):
        SMA(model, eps=2.0)
    assert SMA(model, eps="8/255").eps == pytest.approx(8 / 255)


def test_momentum_variant_defaults():
    m = nn.Linear(1, 1)
    assert MMIFGSM(m).momentum == 1.0 and MIFGSM(m).momentum is None and LTA(m).momentum == 1.0
    assert SMA(m).random_start and not LTA(m).random_start


def test_gong_faithful_lta_reaches_the_model_behind_a_test_time_defense(model):
    """LTA's gong_faithful attacks the non-flipped feature; through a defense's wrapper it must switch
    the wrapped model's flip-TTA (it used to set an attribute on the wrapper and change nothing)."""
    from reidbench.defenses import CircuitousScaling, DefendedModel

    seen = []
    real = type(model).forward

    def spy(self, x):
        seen.append(self.flip_tta)
        return real(self, x)

    wrapped = DefendedModel(model, CircuitousScaling(sizes=[[48, 24]], backend="torch"), adaptive=True)
    assert model.flip_tta is True
    import unittest.mock as mock

    with mock.patch.object(type(model), "forward", spy):
        LTA(wrapped, steps=1, gong_faithful=True)(images(2))
    assert seen and not any(seen)  # every forward pass of the attack ran without flip-TTA
    assert model.flip_tta is True and wrapped.flip_tta is True  # restored
