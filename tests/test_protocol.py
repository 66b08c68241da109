"""The one attack protocol: threats, attack arguments (EOT, quantisation) by declared support, the
ready attack and its context."""

import pytest
import torch

from reidbench.protocol import Threat, attack_kwargs, make_attack, threats_for
from reidbench.registry import parse_attack, parse_defense


def test_threats_follow_the_row_and_the_attack_kind():
    assert threats_for("sma", "none") == (Threat.WHITE_BOX,)
    assert threats_for("sma", "cs") == (Threat.OBLIVIOUS, Threat.ADAPTIVE)
    assert threats_for("sma", "cs", adaptive=False) == (Threat.OBLIVIOUS,)
    assert threats_for("dmr", "cs") == (Threat.TRANSFER,)  # DMR declares kind = "transfer"; no name test


def test_eot_and_quantize_reach_only_attacks_that_take_them():
    kw = attack_kwargs("sma", Threat.ADAPTIVE, "cs-r", seed=3, io="png", eot=7)
    assert kw == {"seed": 3, "quantize": True, "eot_samples": 7}
    assert "eot_samples" not in attack_kwargs("sma", Threat.ADAPTIVE, "cs", seed=0)  # deterministic defense
    assert "eot_samples" not in attack_kwargs("sma", Threat.OBLIVIOUS, "cs-r", seed=0)
    ta = attack_kwargs("ta:FGSM", Threat.ADAPTIVE, "cs-r", seed=0, io="png", eps=2 / 255)
    assert ta == {"seed": 0, "eps": 2 / 255}  # torchattacks takes neither EOT nor quantize


def test_a_torchattacks_attack_runs_adaptively_through_a_randomised_defense():
    """This crashed in the matrix: eot_samples was passed to torchattacks."""
    from reidbench.models import build_architecture

    model = build_architecture("resnet-small", 3, widths=(8, 8, 8, 8)).eval()
    defense = parse_defense("rrp").build()
    kw = attack_kwargs("ta:FGSM", Threat.ADAPTIVE, "rrp", seed=0, eps=2 / 255)
    atk = make_attack(model, parse_attack("ta:FGSM"), defense, Threat.ADAPTIVE, kw)
    x = torch.rand(2, 3, 64, 32)
    assert float((atk(x) - x).abs().max()) <= 2 / 255 + 1e-6


def test_adaptive_needs_a_defense_and_transfer_needs_a_generator():
    from reidbench.models import build_architecture

    model = build_architecture("resnet-small", 3, widths=(8, 8, 8, 8)).eval()
    with pytest.raises(ValueError, match="through a test-time defense"):
        make_attack(model, "sma", None, Threat.ADAPTIVE)
    with pytest.raises(ValueError, match="transfer attack"):
        make_attack(model, "dmr", None, Threat.TRANSFER)


def test_specs_parse_once_into_canonical_text():
    s = parse_attack("M-IFGSM(gong_faithful=true, eps=8/255)")
    assert s.name == "mifgsm" and s.kwargs == {"gong_faithful": True, "eps": 8 / 255}
    assert s.text == "mifgsm(eps=8/255, gong_faithful=true)" and s == s.text and s.title == "M-IFGSM"
    assert s.context == "gallery" and not s.is_transfer and s.default_eps == pytest.approx(8 / 255)
    d = parse_defense("CS(sizes=P1)+jpeg")
    assert d.text == "cs(sizes=P1)+jpeg" and not d.randomised and parse_defense("cs+rrp").randomised
    assert parse_defense("none").is_none and parse_defense(None).text == "none"
    with pytest.raises(ValueError, match="no argument 'qualty'.*accepts quality"):
        parse_defense("jpeg(qualty=50)").parts[0].validate()
