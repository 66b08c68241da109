"""Properties every registered attack must have."""

import pytest
import torch
import torch.nn.functional as F

from reidbench.attacks import MetricAttack, build_attack
from reidbench.registry import ATTACKS

EPS = 5 / 255
SIZE = (64, 32)


def attack_loss(atk, x, adv, pids, camids, ctx):
    """The attack's own objective at ``adv`` (or, for ODFA, minus the cosine to the clean feature);
    LTA's random reference is keyed, so both calls of a comparison see the same one."""
    if atk.name == "odfa":
        with torch.no_grad():
            clean, f = atk.features(x), atk.features(adv)
        return -F.cosine_similarity(clean, f).mean()
    return atk.objective(x, adv, pids, camids, ctx).mean()


# the optimisation attacks; generative ones (DMR) have their own tests (tests/attacks/test_dmr.py)
ALL = [n for n in ATTACKS.names() if isinstance(ATTACKS.get(n), type) and issubclass(ATTACKS.get(n), MetricAttack)]


@pytest.mark.parametrize("name", ALL)
def test_budget_range_dtype_shape(name, model, data):
    x, pids, camids, ctx = data
    adv = build_attack(name, model, eps=EPS)(x, pids, camids, ctx)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float((adv - x).abs().max()) <= EPS + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - x).abs().max()) > 0.5 / 255  # it moved


@pytest.mark.parametrize("name", ALL)
def test_objective_improves(name, model, data):
    x, pids, camids, ctx = data
    atk = build_attack(name, model, eps=EPS)
    adv = atk(x, pids, camids, ctx)
    assert attack_loss(atk, x, adv, pids, camids, ctx) > attack_loss(atk, x, x, pids, camids, ctx)


@pytest.mark.parametrize("name", ALL)
def test_repeatable_with_seed(name, model, data):
    x, pids, camids, ctx = data
    a = build_attack(name, model, seed=7)(x, pids, camids, ctx)
    b = build_attack(name, model, seed=7)(x, pids, camids, ctx)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one(name, model, data):
    x, pids, camids, ctx = data
    adv = build_attack(name, model)(x[:1], pids[:1], camids[:1], ctx)
    assert adv.shape == (1, 3, *SIZE) and float((adv - x[:1]).abs().max()) <= EPS + 1e-6


@pytest.mark.parametrize("name", ALL)
def test_model_mode_and_grad_flags_are_restored(name, model, data):
    x, pids, camids, ctx = data
    flags = [p.requires_grad for p in model.parameters()]
    model.train()
    try:
        with pytest.warns(UserWarning, match="train mode"):
            build_attack(name, model, steps=2)(x, pids, camids, ctx)
        assert model.training
    finally:
        model.eval()
    build_attack(name, model, steps=2)(x, pids, camids, ctx)
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_repr_and_registry_metadata(name, model):
    atk = build_attack(name, model)
    assert "eps=" in repr(atk) and "steps=" in repr(atk)
    entry = ATTACKS.entry(name)
    assert entry.paper and entry.meta.get("threat_model")
    assert type(atk).__doc__ and len(type(atk).__doc__) > 80
