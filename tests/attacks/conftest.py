"""Shared fixtures of the attack tests: a small untrained ResNet with non-trivial BatchNorm statistics
and six queries with a labelled gallery."""

import pytest
import torch

from reidbench.attacks import AttackContext, FeatureBank
from reidbench.models import build_architecture

EPS = 5 / 255
SIZE = (64, 32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_architecture("resnet-small", 6, widths=(8, 16, 32, 48))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        m.train()(torch.rand(16, 3, *SIZE))
    return m.eval()


def query_gallery():
    """Six queries of three identities and a gallery of twelve (with distractors): (queries, pids,
    camids, gallery, gallery pids, gallery camids), on the CPU."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, *SIZE, generator=g) * 0.8 + 0.1
    pids = torch.tensor([1, 1, 2, 2, 3, 3])
    camids = torch.tensor([0, 1, 0, 1, 0, 1])
    gallery = torch.rand(12, 3, *SIZE, generator=g)
    g_pids = torch.tensor([1, 1, 2, 2, 3, 3, 1, 2, 3, 4, 4, 5])
    g_cams = torch.tensor([1, 0, 1, 0, 1, 0, 2, 2, 2, 0, 1, 2])
    return x, pids, camids, gallery, g_pids, g_cams


@pytest.fixture(scope="module")
def data(model):
    x, pids, camids, gallery, g_pids, g_cams = query_gallery()
    with torch.no_grad():
        gf, qf = model(gallery), model(x)
    ctx = AttackContext(gallery=FeatureBank(gf, g_pids, g_cams), attacker_set=FeatureBank(qf, pids, camids))
    return x, pids, camids, ctx
