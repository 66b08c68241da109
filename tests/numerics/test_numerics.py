"""A component's numbers change only with its numerics version (golden.py says how to update)."""

import json

import pytest

from . import golden

PINNED = json.loads(golden.GOLDEN.read_text())
TOL = 2e-3  # digests are sums over a few thousand pixels in 0-255 units: a flipped sign step moves them by >= 1


def _check(kind: str, name: str, version: str, digest: list[float]) -> None:
    pinned = PINNED[kind].get(name) if kind != "evaluation" else PINNED[kind]
    assert pinned is not None, (f"{kind} {name!r} has no golden output: run `python -m tests.numerics.golden --update` "
                                "and commit tests/numerics/golden.json")
    assert pinned["numerics"] == version, (
        f"{kind} {name!r}: golden output is for numerics {pinned['numerics']!r}, the code declares {version!r}; "
        "record the new version's output with `python -m tests.numerics.golden --update`")
    assert len(digest) == len(pinned["digest"]) and all(
        abs(a - b) <= TOL * max(1.0, abs(b)) for a, b in zip(digest, pinned["digest"])), (
        f"{kind} {name!r}: its output changed ({digest} vs {pinned['digest']}) without a bump of its numerics "
        f"version {version!r}: bump `numerics` on the class (this changes every matrix cell key that uses it) and "
        "run `python -m tests.numerics.golden --update`")


@pytest.mark.parametrize("name", golden.attack_names())
def test_attack_numbers_match_their_numerics_version(name):
    from reidbench.registry import ATTACKS

    _check("attacks", name, ATTACKS.entry(name).attr("numerics", "0"), golden.attack_digest(name))


@pytest.mark.parametrize("name", golden.defense_names())
def test_defense_numbers_match_their_numerics_version(name):
    from reidbench.registry import DEFENSES

    _check("defenses", name, DEFENSES.entry(name).attr("numerics", "0"), golden.defense_digest(name))


def test_evaluation_numbers_match_their_numerics_version():
    from reidbench.evaluation import EVAL_NUMERICS

    _check("evaluation", "evaluation", EVAL_NUMERICS, golden.evaluation_digest())


def test_a_changed_output_without_a_bump_fails(monkeypatch):
    """The check itself: an attack whose output moves by one step fails it."""
    from reidbench.registry import ATTACKS

    digest = golden.attack_digest("sma")
    moved = [digest[0] + 1.0, *digest[1:]]
    with pytest.raises(AssertionError, match="without a bump"):
        _check("attacks", "sma", ATTACKS.entry("sma").attr("numerics", "0"), moved)
