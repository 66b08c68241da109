"""Keyed randomness: draws depend on where they happen, not on what ran before."""

import torch

from reidbench import rng
from reidbench.defenses import parse_defense


def _first_draws(n, tag="t"):
    gens = rng.sample_generators(n, tag)
    return None if gens is None else [float(torch.rand(1, generator=g)) for g in gens]


def test_no_scope_no_keyed_draws():
    assert rng.current() is None and _first_draws(3) is None


def test_draws_are_keyed_by_index_not_by_batch():
    with rng.scope(key="k", purpose="query", indices=[4, 5, 6]):
        whole = _first_draws(3)
    with rng.scope(key="k", purpose="query", indices=[6]):
        alone = _first_draws(1)
    assert alone == whole[2:] and len(set(whole)) == 3


def test_every_field_of_the_scope_and_the_call_count_change_the_draws():
    def draw(**kw):
        with rng.scope(**{"key": "k", "purpose": "attack", "indices": [0], "step": 1, "eot": 0, **kw}):
            return _first_draws(1)[0]

    ref = draw()
    assert ref == draw()
    for change in ({"key": "other"}, {"purpose": "query"}, {"indices": [1]}, {"step": 2}, {"eot": 1}):
        assert draw(**change) != ref, change
    with rng.scope(key="k", purpose="attack", indices=[0], step=1, eot=0):
        first, second = _first_draws(1), _first_draws(1)
        other_tag = _first_draws(1, "u")
    assert first[0] == ref and second != first and other_tag != first


def test_uniform_from_one_generator_is_torch_rand():
    a = rng.uniform(torch.Generator().manual_seed(3), 4, 5)
    b = torch.rand(4, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    rows = rng.uniform([torch.Generator().manual_seed(i) for i in range(2)], 2, 3, low=-1.0, high=1.0)
    assert rows.shape == (2, 3) and rows.abs().max() <= 1


def test_randomised_defenses_give_the_same_features_in_any_batch_and_order():
    from reidbench.evaluation import extract_features
    from reidbench.models.defended import DefendedModel

    class Mean(torch.nn.Module):
        input_size = (32, 16)

        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1)

    images = (torch.rand(7, 3, 32, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    for name in ("cs-r", "rrp"):
        d = parse_defense(name).build()
        m = DefendedModel(Mean(), d)
        a = extract_features(m, images, batch_size=7, purpose="query")
        d.test_transform(torch.rand(5, 3, 32, 16))      # something else drew from the defense meanwhile
        b = extract_features(m, images.flip(0), batch_size=2, purpose="query").flip(0)
        c = extract_features(m, images, batch_size=3, purpose="query")
        assert torch.equal(a, c), name
        assert not torch.equal(a, b), name  # another index: another draw (the flipped order moves images)
        g = extract_features(m, images, batch_size=7, purpose="gallery")
        assert not torch.equal(a, g), name
