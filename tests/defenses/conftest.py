"""Fixtures of the defense tests: the tiny synthreid's training split and a small model."""

import pytest
import torch

from reidbench.data import load_dataset, load_images
from reidbench.models import build_architecture


@pytest.fixture(scope="module")
def tiny_train(tiny_synth):
    ds = load_dataset("synthreid", tiny_synth)
    return ds, load_images(ds.train, progress=False)


@pytest.fixture
def small():
    """A small, seeded ResNet for ``n`` identities."""

    def make(n):
        torch.manual_seed(0)
        return build_architecture("resnet-small", n, widths=(8, 16, 24, 32)).eval()

    return make
