"""Self-checks: each fires on an evaluation built to trip it, and stays quiet otherwise."""

import pytest
import torch

from reidbench.attacks import SMA, build_attack
from reidbench.attacks.evaluate import attack_queries, prepare_evalset
from reidbench.checks import check_subset, run_checks
from reidbench.defenses import parse_defense
from reidbench.models.defended import DefendedModel


def test_check_subset_is_fixed_and_spread():
    assert check_subset(100, 4) == [0, 25, 50, 75]
    assert check_subset(3, 8) == [0, 1, 2] and check_subset(10, 0) == []


@pytest.fixture(scope="module")
def evalset(tiny_trained):
    model, ds, _ = tiny_trained
    return prepare_evalset(model, ds)


def _checks(model, ev, attack, rebuild, subset=8):
    out = attack_queries(attack, ev, model, context=ev.context())
    return run_checks(attack, out, ev, model, rebuild=rebuild, context=ev.context(), subset=subset)


def test_unconverged_fires_for_a_one_step_attack_not_for_a_converged_one(tiny_trained, evalset):
    model = tiny_trained[0]
    short = _checks(model, evalset, SMA(model, steps=1), lambda s: SMA(model, steps=s))
    assert short["unconverged"]["fired"] and short["unconverged"]["steps_check"] == 4
    long = _checks(model, evalset, SMA(model, steps=40, alpha=1 / 255),
                   lambda s: SMA(model, steps=s, alpha=1 / 255))
    assert not long["unconverged"]["fired"], long["unconverged"]


def test_zero_gradient_fires_when_the_attack_starts_where_its_gradient_vanishes(tiny_trained, evalset):
    model = tiny_trained[0]
    # SMA without a random start: at x' = x the self-distance has an exactly zero gradient
    flat = _checks(model, evalset, SMA(model, steps=1, random_start=False), lambda s: SMA(model, steps=s), subset=0)
    assert flat["zero_gradient"]["fired"] and flat["zero_gradient"]["fraction"] == 1.0
    ok = _checks(model, evalset, SMA(model, steps=1), lambda s: SMA(model, steps=s), subset=0)
    assert not ok["zero_gradient"]["fired"] and "unconverged" not in ok


@pytest.mark.parametrize("name,randomised", [("rrp", True), ("cs-r", True), ("cs", False)])
def test_randomised_no_eot_is_detected_not_declared(tiny_trained, evalset, name, randomised):
    model = tiny_trained[0]
    defense = parse_defense(name).build()
    defense.deterministic = True  # a defense that lies about itself is caught all the same
    adaptive = DefendedModel(model, defense, adaptive=True)
    for eot in (1, 3):
        atk = build_attack("sma", adaptive, steps=1, eot_samples=eot)
        res = _checks(DefendedModel(model, defense), evalset, atk, lambda s: None, subset=0)
        assert res["randomised_no_eot"]["differs"] is randomised
        assert res["randomised_no_eot"]["fired"] is (randomised and eot == 1)
    assert not model.training
