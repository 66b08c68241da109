"""Spec strings (``cs(sizes=P1)``) and the defenses built from them."""

import pytest
import torch

from reidbench.defenses import CircuitousScaling, ComposedDefense, build_defense
from reidbench.utils import parse_spec, split_specs


def test_parse_spec_reads_json_strings_and_fractions():
    assert parse_spec("jpeg") == ("jpeg", {})
    name, kw = parse_spec(" cs( sizes=P1 , quantize=false) ")
    assert name == "cs" and kw == {"sizes": "P1", "quantize": False}
    _, kw = parse_spec("x(a=[110, 50], e=8/255, n=3)")
    assert kw == {"a": [110, 50], "e": pytest.approx(8 / 255), "n": 3}


@pytest.mark.parametrize("bad", ["(a=1)", "cs(sizes)", "cs(=1)"])
def test_parse_spec_rejects_malformed(bad):
    with pytest.raises(ValueError, match="cannot read"):
        parse_spec(bad)


def test_split_specs_keeps_commas_inside_parentheses():
    assert split_specs("cs(sizes=P1),jpeg(quality=50, x=1), rrp,") == ["cs(sizes=P1)", "jpeg(quality=50, x=1)", "rrp"]
    with pytest.raises(ValueError, match="unbalanced"):
        split_specs("cs(sizes=P1")


def test_build_defense_with_arguments_and_compositions():
    d = build_defense("cs(sizes=P1)")
    assert isinstance(d, CircuitousScaling) and d.sizes == ((110, 50),)
    comp = build_defense("cs+jpeg(quality=50)")
    assert isinstance(comp, ComposedDefense) and comp.parts[1].quality == 50
    with pytest.raises(ValueError, match="accepts sizes, native"):
        build_defense("cs(size=P1)")


def test_torch_saves_are_byte_reproducible(tmp_path):
    """Equal weights give an equal file, whatever its name or temporary name: the checkpoint's
    SHA-256 keys every matrix cell."""
    import hashlib

    import torch

    from reidbench.utils import atomic_torch_save

    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(2)}
    atomic_torch_save(state, tmp_path / "a" / "model.pt")
    atomic_torch_save({k: v.clone() for k, v in state.items()}, tmp_path / "b" / "other.pt")
    digest = [hashlib.sha256((tmp_path / p).read_bytes()).hexdigest() for p in ("a/model.pt", "b/other.pt")]
    assert digest[0] == digest[1]
    back = torch.load(tmp_path / "b" / "other.pt", weights_only=True)
    assert torch.equal(back["w"], state["w"]) and not list(tmp_path.rglob("*.tmp"))


def test_state_digest_names_the_weights_in_any_dtype():
    from reidbench.utils import state_digest

    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    assert state_digest(a) != state_digest(b)
    b.load_state_dict(a.state_dict())
    assert state_digest(a) == state_digest(b)
    half = state_digest(b.to(torch.bfloat16))  # NumPy has no bfloat16: hashed as raw bytes
    assert half != state_digest(a)
