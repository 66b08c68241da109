"""The exact Pillow paths of evaluation (issue 20): the seed's circuitous scaling and JPEG-75 on a
batch of 256 Market-sized images (128x64 -> CS to 256x128; JPEG at 256x128).

baseline = one image after the other on one thread (the previous code); reidbench = the same Pillow
calls over torch's CPU threads (:func:`reidbench.data.transforms.pil_per_image`). Equal pixels are
asserted by tests/data/test_jpeg.py and tests/defenses."""

import pytest
import torch

from reidbench.defenses.cs import SEED_SIZES, circuitous_scaling
from reidbench.data.transforms import jpeg_roundtrip


def batch(h, w):
    return torch.rand(256, 3, h, w, generator=torch.Generator().manual_seed(0))


CASES = {"cs": (lambda x: circuitous_scaling(x, SEED_SIZES, (256, 128)), (128, 64)),
         "jpeg75": (lambda x: jpeg_roundtrip(x, 75), (256, 128))}


@pytest.mark.parametrize("which", list(CASES))
@pytest.mark.benchmark(group="exact Pillow paths, 256 images")
def test_pillow_one_thread_baseline(benchmark, which):
    fn, size = CASES[which]
    x = batch(*size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark.pedantic(fn, args=(x,), rounds=3, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info["images_per_s"] = round(len(x) / benchmark.stats.stats.mean, 1)


@pytest.mark.parametrize("which", list(CASES))
@pytest.mark.benchmark(group="exact Pillow paths, 256 images")
def test_pillow_threads_reidbench(benchmark, which):
    fn, size = CASES[which]
    x = batch(*size)
    benchmark.pedantic(fn, args=(x,), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(len(x) / benchmark.stats.stats.mean, 1)
    benchmark.extra_info["threads"] = torch.get_num_threads()
