"""JPEG round trips: the CPU path (Pillow over threads) gives one-image-at-a-time Pillow's pixels in
order, and torchvision's codecs with Pillow's settings (the GPU path's) give the same pixels on the
CPU: the JPEG defense, its BPDA forward and the seed's jpeg75 I/O keep their numbers."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reidbench.data.transforms import jpeg_roundtrip, jpeg_roundtrip_torchvision


def images(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(n, 3, max(2, h // 8), max(2, w // 8), generator=g), size=(h, w), mode="bilinear")
    return (smooth + 0.08 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)


def pillow_one_by_one(x, quality):
    out = []
    for img in torch.round(x.clamp(0, 1) * 255).to(torch.uint8):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


@pytest.mark.parametrize("quality", [75, 30, 95])
@pytest.mark.parametrize("size", [(128, 64), (127, 63), (256, 128)])
def test_both_round_trips_are_pillows(quality, size):
    x = images(6, *size, seed=quality)
    ref = pillow_one_by_one(x, quality)
    ours = jpeg_roundtrip(x, quality)
    assert ours.dtype == torch.float32 and ours.shape == x.shape
    assert torch.equal(ours, ref)
    assert torch.equal(jpeg_roundtrip_torchvision(x, quality), ref)
    assert (ours - x).abs().max() > 2 / 255  # it did compress


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_round_trip_stays_on_the_gpu_within_a_grey_level_of_libjpeg():
    x = images(6, 128, 64).cuda()
    ours = jpeg_roundtrip(x)
    assert ours.device == x.device
    assert (ours.cpu() - pillow_one_by_one(x.cpu(), 75)).abs().max() <= 2 / 255 + 1e-6
