"""PD's batched training augmentation is its per-image one: the same draws in the same order, the same
pixels, on the batch's device and in its dtype; the engine's batches go through it."""

import pytest
import torch

from reidbench.defenses.base import ComposedDefense, Defense
from reidbench.defenses.pd import ProactiveDefense
from reidbench.registry import parse_defense

HEAVY = dict(p_gray=0.15, p_gray_rgb=0.15, p_sketch_rgb=0.15, p_aug=0.15, p_lht=0.3)  # every branch, often


def batch(n=48, seed=0, size=(64, 32)):
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("probs", [HEAVY, {}], ids=["every-branch", "seed-code"])
def test_the_batch_is_the_images_one_after_the_other(seed, probs):
    pd = ProactiveDefense(**probs)
    x = batch(seed=seed)
    g_one, g_batch = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    one = torch.stack([pd.train_transform(img, g_one) for img in x])
    x_before = x.clone()
    both = pd.batch_train_transform(x, g_batch)
    assert torch.equal(both, one)
    assert torch.equal(x, x_before)  # a caller's batch is left as it was
    assert torch.equal(g_batch.get_state(), g_one.get_state())  # the next batch draws the same too
    if probs:
        assert (both != x).flatten(1).any(1).float().mean() > 0.5  # it did transform


def test_swapped_geometry_and_uint8_batches_keep_their_kind():
    pd = ProactiveDefense(swapped_geometry=True, **HEAVY)
    x = (batch(16, seed=7) * 255).round().to(torch.uint8)
    g_one, g_batch = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    one = torch.stack([pd.train_transform(img.float() / 255, g_one) for img in x])
    out = pd.batch_train_transform(x, g_batch)
    assert out.dtype == torch.uint8 and out.device == x.device
    assert torch.equal(out, torch.round(one * 255).to(torch.uint8))


def test_jad_batches_through_its_pd_and_a_plain_defense_loops():
    jad = parse_defense("pd+cs").build()  # JAD: PD at training, CS at test time
    x = batch(16, seed=3)
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(jad.batch_train_transform(x, g1), torch.stack([jad.train_transform(i, g2) for i in x]))
    hooks = jad.training_hooks(None, torch.zeros(1))
    assert hooks.batch_train_transform is not None and hooks.train_transform is not None

    class Flip(Defense):
        def train_transform(self, img, generator):
            return img.flip(-1) if torch.rand(1, generator=generator) < 0.5 else img

    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(Flip().batch_train_transform(x, g1), torch.stack([Flip().train_transform(i, g2) for i in x]))
    assert Defense().training_hooks(None, torch.zeros(1)).batch_train_transform is None


def test_the_engine_gets_the_transform_writing_into_its_own_batch():
    """Through ``training_hooks`` (what the engine runs) PD overwrites the engine's batch instead of
    copying it first: the same images, in the same tensor."""
    pd = ProactiveDefense(**HEAVY)
    x = batch(seed=5)
    g_ref, g_hook = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ref = pd.batch_train_transform(x, g_ref)
    mine = x.clone()
    out = pd.training_hooks(None, torch.zeros(1)).batch_train_transform(mine, g_hook)
    assert torch.equal(out, ref) and out.data_ptr() == mine.data_ptr() and not torch.equal(mine, x)


def test_jad_hands_the_engine_its_pds_transform_writing_into_the_batch():
    """A composed defense with one train side (JAD = PD + CS) gives the engine that part's own hook:
    PD's images, written into the engine's batch (no copy of every training batch)."""
    jad = ComposedDefense([ProactiveDefense(**HEAVY), parse_defense("cs").build()])
    x = batch(seed=6)
    g_ref, g_hook = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    ref = ProactiveDefense(**HEAVY).batch_train_transform(x, g_ref)
    mine = x.clone()
    out = jad.training_hooks(None, torch.zeros(1)).batch_train_transform(mine, g_hook)
    assert torch.equal(out, ref) and out.data_ptr() == mine.data_ptr()
