"""APGD in the engine, the ranking losses and the ``auto`` ensemble."""

import pytest
import torch
import torch.nn as nn

from reidbench import rng
from reidbench.attacks import (AUTO_VERSION, LTA, MIFGSM, SMA, AttackContext, AutoAttack, FeatureBank, RankAP,
                               RankMargin, build_attack)
from reidbench.attacks.auto import AUTO_AP_FLOOR
from reidbench.attacks.base import apgd_checkpoints
from reidbench.attacks.fna import FNA
from reidbench.attacks.ranking import ranking_masks

SIZE = (64, 32)
EPS = 5 / 255


def test_apgd_checkpoints_follow_croce_and_hein():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert apgd_checkpoints(1) == []


@pytest.mark.parametrize("cls", [SMA, MIFGSM, FNA, LTA, RankMargin, RankAP])
def test_apgd_works_with_every_loss_and_returns_its_best_iterate(cls, model, data):
    x, pids, camids, ctx = data
    atk = cls(model, eps=EPS, steps=12, schedule="apgd", random_start=True, seed=1)
    adv = atk(x, pids, camids, ctx)
    assert float((adv - x).abs().max()) <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    best = atk.last_diagnostics["loss"]
    if cls is not LTA:
        with rng.scope(indices=range(len(x))):  # the run's own random start (keyed by the sample's index)
            start = atk.objective(x, atk.init(x), pids, camids, ctx)  # the best iterate is never worse than the start (LTA's reference changes per step)
        assert (best >= start - 1e-6).all()
        # the returned image is the one whose loss was recorded (deterministic losses)
        assert torch.allclose(atk.objective(x, adv, pids, camids, ctx), best, atol=1e-5, rtol=1e-4)


def test_restarts_keep_the_best_run_per_sample(model, data):
    x, pids, camids, ctx = data
    one = SMA(model, steps=6, schedule="apgd", seed=2)
    two = SMA(model, steps=6, schedule="apgd", seed=2, restarts=3)
    one(x)
    two(x)
    # restart 0 is the single run itself; the others can only raise the kept loss
    assert (two.last_diagnostics["loss"] >= one.last_diagnostics["loss"] - 1e-7).all()
    assert (two.last_diagnostics["loss"] > one.last_diagnostics["loss"] + 1e-7).any()
    assert two.hyperparameters()["restarts"] == 3 and two.hyperparameters()["schedule"] == "apgd"


def test_apgd_beats_the_fixed_schedule_of_the_same_length(model, data):
    x, pids, camids, ctx = data
    fixed = SMA(model, steps=30, seed=0)
    apgd = SMA(model, steps=30, seed=0, schedule="apgd")
    lf = fixed.objective(x, fixed(x)).mean()
    la = apgd.objective(x, apgd(x)).mean()
    assert la > lf


def test_eot_draws_are_fresh_per_sample_per_step_and_per_draw(model, data):
    x = data[0][:3]
    seen = []

    def noisy(z):
        gens = rng.sample_generators(len(z), "noise")
        u = rng.uniform(gens, len(z), 1)
        s = rng.current()
        seen.append((s.step, s.eot, tuple(s.indices), tuple(round(float(v), 6) for v in u[:, 0])))
        return z + 0.01 * u.view(-1, 1, 1, 1)

    SMA(model, steps=3, schedule="apgd", transform=noisy, eot_samples=2)(x)
    steps = [(st, e, d) for st, e, _, d in seen if isinstance(st, tuple)]
    draws = [d for _, _, d in steps]
    assert len(steps) >= 6 and len(set(draws)) == len(draws)           # every step and EOT sample: new draws
    assert all(len(set(d)) == len(d) for d in draws)                   # every sample: its own draw
    # the same query in another batch (alone, at its index) sees the same draws
    first = [d[1] for st, e, _, d in seen if isinstance(st, tuple)]
    seen.clear()
    with rng.scope(indices=[1]):
        SMA(model, steps=3, schedule="apgd", transform=noisy, eot_samples=2)(x[1:2])
    assert [d[0] for st, e, _, d in seen if isinstance(st, tuple)] == first


def test_ranking_masks_follow_the_market_junk_rule():
    bank = FeatureBank(torch.zeros(6, 2), torch.tensor([1, 1, 2, 0, -1, 1]), torch.tensor([0, 1, 0, 0, 1, 2]))
    pos, neg = ranking_masks(bank, torch.tensor([1]), torch.tensor([0]))
    assert pos.tolist() == [[False, True, False, False, False, True]]      # same camera: junk
    assert neg.tolist() == [[False, False, True, True, False, False]]      # distractor 0 negative, -1 junk
    pos, _ = ranking_masks(bank, torch.tensor([1]), None)
    assert pos.tolist() == [[True, True, False, False, False, True]]


class Identity(nn.Module):
    """Features = the flattened image (a model whose geometry the test controls)."""

    input_size = (1, 2)

    def forward(self, x):
        return x.flatten(1)


def test_rank_margin_is_nearest_true_match_minus_nearest_negative():
    g = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0, 0, 0, 0]])
    bank = FeatureBank(g, torch.tensor([1, 2, 1]), torch.tensor([1, 1, 1]))
    x = torch.tensor([[0.9, 0.1, 0.2]]).view(1, 3, 1, 1).expand(1, 3, 1, 2).contiguous()
    atk = RankMargin(Identity().eval(), steps=0)
    loss = atk.objective(x, x, torch.tensor([1]), torch.tensor([0]), AttackContext(gallery=bank))
    f = torch.nn.functional.normalize(x.flatten(1), dim=1)
    d = 1 - f @ torch.nn.functional.normalize(g, dim=1).T
    assert torch.allclose(loss, d[0, [0, 2]].min() - d[0, 1], atol=1e-6)
    assert float(loss) < 0  # rank-1 holds on the clean query


def test_ranking_losses_need_the_gallery(model, data):
    x, pids, camids, _ = data
    for cls in (RankMargin, RankAP):
        with pytest.raises(ValueError, match="gallery"):
            cls(model, steps=1)(x, pids, camids, None)


def test_rank_ap_and_margin_break_rank1_on_the_tiny_trained_model(tiny_trained):
    from reidbench.attacks.evaluate import attack_queries, evaluate_attacked, prepare_evalset

    model, ds, _ = tiny_trained
    ev = prepare_evalset(model, ds)
    idx = list(range(0, len(ev.q_pids), 3))
    base = evaluate_attacked({"features": ev.q_feats[torch.tensor(idx)]}, ev, indices=idx)["attacked"]
    for name in ("rank-margin", "rank-ap"):
        out = attack_queries(build_attack(name, model, steps=20), ev, model, context=ev.context(), indices=idx)
        res = evaluate_attacked(out, ev, indices=idx)["attacked"]
        assert res["R1"] < 0.5 * base["R1"] and res["mAP"] < base["mAP"] - 10, (name, res, base)


def test_auto_is_registered_with_a_version_and_a_fixed_configuration(model):
    atk = build_attack("aa", model)
    assert isinstance(atk, AutoAttack) and atk.name == "auto"
    hp = atk.hyperparameters()
    assert hp["version"] == AUTO_VERSION and hp["steps"] == 100 and hp["components"] == ["sd", "margin", "ap"]
    assert all(c.schedule == "apgd" and c.steps == 100 for c in atk.components.values())
    with pytest.raises(ValueError, match="fixed configuration"):
        build_attack("auto", model, momentum=0.9)


def test_auto_chooses_per_query_the_worst_component_in_the_attackers_view(model, data):
    x, pids, camids, ctx = data
    atk = AutoAttack(model, steps=5, seed=1)
    chosen, parts = atk.perturb_components(x, pids, camids, ctx)
    assert list(parts) == ["sd", "margin", "ap"]
    assert float((chosen - x).abs().max()) <= EPS + 1e-6
    with torch.no_grad():
        keys = {n: atk.rank_keys(x, a, pids, camids, ctx) for n, a in parts.items()}
        chosen_keys = atk.rank_keys(x, chosen, pids, camids, ctx)
    for i in range(len(x)):
        assert chosen_keys[i] == min(k[i] for k in keys.values())
        assert any(torch.equal(chosen[i], a[i]) for a in parts.values())
    # the library call returns the same images
    assert torch.equal(AutoAttack(model, steps=5, seed=1)(x, pids, camids, ctx), chosen)


def test_auto_without_gallery_runs_its_self_distance_component_only(model, data):
    x = data[0]
    atk = AutoAttack(model, steps=3)
    _, parts = atk.perturb_components(x)
    assert list(parts) == ["sd"]


def test_auto_skips_broken_queries_in_later_components(model, data, monkeypatch):
    x, pids, camids, ctx = data
    atk = AutoAttack(model, steps=3)
    calls = []
    for name, comp in atk.components.items():
        real = comp.perturb

        def counting(images, *a, _real=real, _name=name, **k):
            calls.append((_name, len(images)))
            return _real(images, *a, **k)

        monkeypatch.setattr(comp, "perturb", counting)
    # every query counts as broken after the first component
    monkeypatch.setattr(AutoAttack, "broken", staticmethod(lambda key: True))
    chosen, parts = atk.perturb_components(x, pids, camids, ctx)
    assert calls == [("sd", len(x))]
    assert torch.equal(parts["margin"], parts["sd"]) and torch.equal(chosen, parts["sd"])
    monkeypatch.undo()
    assert AutoAttack.broken((AUTO_AP_FLOOR / 2, False, -3)) and not AutoAttack.broken((AUTO_AP_FLOOR / 2, True, 0))
    assert not AutoAttack.broken((0.5, False, -3)) and not AutoAttack.broken((-1.0,))
