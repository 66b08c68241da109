"""The image operations attacks and defenses share (reidbench.data.imageops): grayscale, sketch,
channel fusion, the rectangles, LGT and LHT; the input kinds the seed's code takes."""

import numpy as np
import pytest
import torch
from PIL import Image

import reidbench.data.imageops as imageops
from reidbench.data.imageops import channel_fusion, grayscale, lgt, lht, sample_rectangles, sketch


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def img(seed=0, h=64, w=32):
    return torch.rand(3, h, w, generator=gen(seed))


def test_grayscale_channels_equal_and_quantized_matches_pil():
    x = img()
    g = grayscale(x)
    assert g.shape == x.shape and torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    u8 = (x * 255).floor().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(u8).convert("L"), np.float32) / 255
    assert np.array_equal(grayscale(x, quantize=True)[0].numpy(), pil)


@pytest.mark.parametrize("level", [0, 1, 77, 200, 255])
def test_sketch_of_a_constant_image(level):
    x = torch.full((3, 40, 20), level / 255)
    s = sketch(x)
    # invert -> blur (constant) -> dodge L * 256 / L saturates to white; L = 0 divides by 0 -> black
    expected = 0.0 if level == 0 else 1.0
    assert torch.all(s == expected)


def test_sketch_range_shape_and_edges():
    x = torch.zeros(3, 64, 32)
    x[:, :, 16:] = 0.8
    s = sketch(x)
    assert s.shape == x.shape and 0 <= float(s.min()) and float(s.max()) <= 1
    assert float(s[0, 32, 14:18].min()) < float(s[0, 32, 28])  # the edge darkens the sketch near it


def test_channel_fusion_frequencies():
    x = torch.zeros(4000, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 0.1, 0.2, 0.3
    other = torch.full((4000, 3, 2, 2), 0.9)
    out = channel_fusion(x, other, gen(3))
    n_fused = (out[:, :, 0, 0] == 0.9).sum(1)
    freq = torch.bincount(n_fused, minlength=4).float() / len(n_fused)
    assert abs(freq[0] - 0.10) < 0.025 and abs(freq[1] - 0.60) < 0.03 and abs(freq[2] - 0.30) < 0.03
    assert freq[3] == 0
    assert set(torch.unique(out).tolist()) <= {0.1, 0.2, 0.3, 0.9} | set(torch.unique(out).tolist()) and \
        all(min(abs(v - c) for c in (0.1, 0.2, 0.3, 0.9)) < 1e-6 for v in torch.unique(out).tolist())


def test_rectangles_geometry_standard():
    m = sample_rectangles(2000, 128, 64, gen(1))
    area = m.float().mean((1, 2))
    assert float(area.min()) >= 0.015 and float(area.max()) <= 0.41
    rows = m.any(2).sum(1).float()
    cols = m.any(1).sum(1).float()
    aspect = rows / cols
    # aspect in [0.3, 1/0.3] up to the rounding of small rectangles' sides
    assert float(aspect.min()) >= 0.27 and float(aspect.max()) <= 3.7
    # a rectangle: its area equals rows x cols
    assert torch.equal(m.sum((1, 2)).float(), rows * cols)


def test_rectangles_swapped_geometry_is_clipped_differently():
    std = sample_rectangles(500, 128, 64, gen(2))
    swp = sample_rectangles(500, 128, 64, gen(2), swapped_geometry=True)
    assert not torch.equal(std, swp)
    # the seed's sampler picks heights < W: at most 64 rows for a 128x64 image
    assert int(swp.any(2).sum(1).max()) < 64


def test_lgt_changes_only_its_rectangle_to_gray():
    x = img(4)
    y = lgt(x, gen(5))
    changed = (y != x).any(0)
    assert changed.any()
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    box = torch.zeros_like(changed)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    inside = box
    g = grayscale(x)
    assert torch.allclose(y[:, inside], g[:, inside]) and torch.equal(y[:, ~inside], x[:, ~inside])


def test_lht_changes_only_its_rectangle():
    for seed in range(10):
        x = img(seed)
        y = lht(x, gen(seed))
        changed = (y != x).any(0)
        if not changed.any():
            continue
        r, c = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        outside = torch.ones_like(changed)
        outside[r.min():r.max() + 1, c.min():c.max() + 1] = False
        assert not changed[outside].any()
        assert (r.max() - r.min() + 1) * (c.max() - c.min() + 1) <= 0.41 * x.shape[1] * x.shape[2]


@pytest.mark.parametrize("op", ["grayscale", "sketch", "lgt", "lht"])
def test_image_operations_take_pil_images_and_uint8_arrays_as_the_seed_code(op):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    fn = getattr(imageops, op)
    args = (torch.Generator().manual_seed(0),) if op in ("lgt", "lht") else ()
    ref = fn(torch.from_numpy(arr).permute(2, 0, 1).float() / 255, *(torch.Generator().manual_seed(0),)
             if args else ())
    out_pil = fn(Image.fromarray(arr), *((torch.Generator().manual_seed(0),) if args else ()))
    out_arr = fn(arr, *((torch.Generator().manual_seed(0),) if args else ()))
    assert isinstance(out_pil, Image.Image) and out_pil.size == (16, 32)
    assert isinstance(out_arr, np.ndarray) and out_arr.dtype == np.uint8 and out_arr.shape == arr.shape
    expect = torch.round(ref * 255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(out_pil), expect) and np.array_equal(out_arr, expect)
    with pytest.raises(TypeError, match="PIL image"):
        fn("not an image", *args)
