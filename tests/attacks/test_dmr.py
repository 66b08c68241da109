"""DMR, the generative (transfer) attack."""

import json

import pytest
import torch

from reidbench.attacks import DMR, GeneratorCheckpointError, build_attack
from reidbench.attacks.gan import least_likely_cross_entropy, misranking_triplet_loss, ms_ssim
from reidbench.attacks.evaluate import evaluate_attack, prepare_evalset

SMALL = dict(ngf=8, n_blocks=2, ndf=16)


def fitted(model, tr, eps=16 / 255, epochs=3, **kw):
    cfg = {**SMALL, "lr": 1e-3, **kw}  # a few dozen steps on the tiny set: a larger lr than the reference's 2e-4
    return DMR(model, eps=eps, epochs=epochs, batch_size=16, **cfg).fit(model, tr.images, tr.pids, progress=False)


@pytest.fixture(scope="module")
def dmr_fit(tiny_trained):
    model, ds, tr = tiny_trained
    return fitted(model, tr)


def test_unfitted_attack_says_how_to_fit(tiny_trained):
    with pytest.raises(RuntimeError, match="not fitted"):
        DMR(tiny_trained[0], **SMALL)(torch.rand(2, 3, 128, 64))


def test_outputs_within_budget_on_the_8bit_grid(dmr_fit, tiny_trained):
    x = tiny_trained[2].images[:6].float() / 255
    adv = dmr_fit(x)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float((adv - x).abs().max()) <= 16 / 255 + 1e-6
    assert float((adv - x).abs().max()) >= 8 / 255  # the rescaling reaches the budget
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert torch.equal(adv, torch.round(adv * 255) / 255)
    dmr_fit.eps = 5 / 255
    try:
        assert float((dmr_fit(x) - x).abs().max()) <= 5 / 255 + 1e-6
    finally:
        dmr_fit.eps = 16 / 255


def test_a_short_fit_lowers_the_surrogates_map_more_than_random_noise(dmr_fit, tiny_trained):
    model, ds, _ = tiny_trained
    ev = prepare_evalset(model, ds)

    class Noise:
        name = "noise"

        def __call__(self, x, *a):
            g = torch.Generator().manual_seed(0)
            sign = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
            return (x + 16 / 255 * sign).clamp(0, 1)

    res = evaluate_attack(dmr_fit, ev, model)
    noise = evaluate_attack(Noise(), ev, model)
    assert res["attacked"]["mAP"] < res["clean"]["mAP"] - 10
    assert res["attacked"]["mAP"] < noise["attacked"]["mAP"] - 5


def test_generator_checkpoint_round_trip(dmr_fit, tiny_trained, tmp_path):
    x = tiny_trained[2].images[:4].float() / 255
    card = dmr_fit.save(tmp_path / "g.pt", surrogate={"sha256": "abc"})
    assert card["fit"]["epochs"] == 3 and card["eps"] == pytest.approx(16 / 255) and card["surrogate"]["sha256"] == "abc"
    assert "test set" in card["fit"]["selection"]
    back = DMR.load(tmp_path / "g.pt")
    assert back.config() == dmr_fit.config() and torch.equal(back(x), dmr_fit(x))
    # damaged weights and foreign files are refused with a reason
    raw = bytearray((tmp_path / "g.pt").read_bytes())
    raw[-20] ^= 0xFF
    (tmp_path / "g.pt").write_bytes(bytes(raw))
    with pytest.raises(GeneratorCheckpointError, match="SHA-256"):
        DMR.load(tmp_path / "g.pt")
    side = json.loads((tmp_path / "g.json").read_text())
    side["attack"] = "other"
    (tmp_path / "g.json").write_text(json.dumps(side))
    with pytest.raises(GeneratorCheckpointError, match="not a 'dmr'"):
        DMR.load(tmp_path / "g.pt")


def test_transfer_uses_the_surrogate_to_fit_and_the_target_to_evaluate(tiny_trained):
    model, ds, tr = tiny_trained
    calls = {"surrogate": 0, "target": 0}

    class Counting(torch.nn.Module):
        def __init__(self, inner, key):
            super().__init__()
            self.inner, self.key, self.input_size = inner, key, inner.input_size

        def forward(self, x):
            calls[self.key] += 1
            return self.inner(x)

        def logits(self, x):
            return self.inner.logits(x)

    torch.manual_seed(1)
    from reidbench.models import build_architecture

    target = build_architecture("resnet-small", 5, widths=(8, 12, 16, 24)).eval()
    # eval(): a new Module starts in train mode, and restoring the wrapper's mode would leave the
    # shared model in it
    surrogate, tgt = Counting(model, "surrogate").eval(), Counting(target, "target").eval()
    sub = (tr.pids < 6).nonzero().flatten()
    atk = DMR(surrogate, epochs=1, batch_size=16, **SMALL).fit(surrogate, tr.images[sub], tr.pids[sub], progress=False)
    fit_calls = dict(calls)
    assert fit_calls["surrogate"] >= 2 and fit_calls["target"] == 0
    ev = prepare_evalset(tgt, ds)
    calls.update(surrogate=0, target=0)
    evaluate_attack(atk, ev, tgt)
    assert calls["surrogate"] == 0 and calls["target"] >= 1


def test_mask_keeps_at_most_tau_pixels_perturbed(tiny_trained):
    model, _, tr = tiny_trained
    tau = 50
    sub = (tr.pids < 6).nonzero().flatten()
    atk = DMR(model, epochs=1, batch_size=16, mask_pixels=tau, **SMALL).fit(model, tr.images[sub], tr.pids[sub],
                                                                           progress=False)
    x = tr.images[:4].float() / 255
    changed = ((atk(x) - x).abs() > 0).any(1).flatten(1).sum(1)
    assert int(changed.max()) <= tau and int(changed.min()) > 0


def test_losses():
    x = torch.rand(4, 3, 64, 32)
    assert torch.allclose(ms_ssim(x, x), torch.ones(4), atol=1e-5)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    noisier = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert bool((ms_ssim(x, noisier) < ms_ssim(x, noisy)).all()) and bool((ms_ssim(x, noisy) < 1).all())
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 5.0]])
    pids = torch.tensor([1, 1, 2, 2])
    # sample 0: nearest positive 1.0, furthest negative 5.0 -> 5 - 1 + 0.3
    loss = misranking_triplet_loss(feats, pids, margin=0.3)
    per = torch.tensor([5 - 1 + 0.3, 26 ** 0.5 - 1 + 0.3, 10 ** 0.5 - 2 + 0.3, 26 ** 0.5 - 2 + 0.3])
    assert loss == pytest.approx(float(per.mean()), abs=1e-4)
    # the reference code's mask: the sample itself is its nearest positive (d ~ 0)
    faithful = misranking_triplet_loss(feats, pids, margin=0.3, self_positive=True)
    assert faithful == pytest.approx(float((per + torch.tensor([1, 1, 2, 2.0])).mean()), abs=1e-3)
    logits = torch.tensor([[3.0, 0.0, -2.0, 1.0, 0.5]])
    # least likely = class 2; smoothing mass only on classes not in the batch (pid 0 is in it)
    low = least_likely_cross_entropy(logits, torch.tensor([0]))
    t = torch.tensor([[0, 0.025, 0.925, 0.025, 0.025]])
    assert low == pytest.approx(float(-(t * torch.log_softmax(logits, 1)).sum()), abs=1e-5)


def test_registered_and_built_by_name(tiny_trained):
    atk = build_attack("dmr", tiny_trained[0], eps="16/255", **SMALL)
    assert isinstance(atk, DMR) and "eps=16/255" in repr(atk)
    assert build_attack("deep-mis-ranking", tiny_trained[0], **SMALL).name == "dmr"


def test_dmr_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DMR(None, seed=5, ngf=8, ndf=8)
    assert torch.equal(torch.rand(3), expected)  # the constructor used to reseed torch's global generator
    a, b = DMR(None, seed=5, ngf=8, ndf=8), DMR(None, seed=5, ngf=8, ndf=8)
    assert all(torch.equal(p, q) for p, q in zip(a.generator_net.parameters(), b.generator_net.parameters()))
