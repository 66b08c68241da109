import pytest
import torch

import reidbench.data.images as images_mod
from reidbench.data import CorruptImageError, Market1501, load_images, read_image
from trees import market_tree, write_image


def test_read_image_shape_and_dtype(tmp_path):
    p = write_image(tmp_path / "a.jpg", size=(20, 10))
    t = read_image(p)
    assert t.dtype == torch.uint8 and t.shape == (3, 20, 10)


def truncate(path, keep=120):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_corrupt_jpeg_is_named(tmp_path):
    market_tree(tmp_path)
    ds = Market1501(tmp_path)
    bad = ds.query[1].path
    truncate(type(tmp_path)(bad))
    with pytest.raises(CorruptImageError, match=bad.replace("\\", "\\\\")):
        load_images(ds.query, use_cache=False, progress=False)


def test_not_an_image_is_named(tmp_path):
    p = tmp_path / "0001_c1s1_000001_00.jpg"
    p.write_text("this is not a JPEG")
    with pytest.raises(CorruptImageError, match="cannot decode image .*0001_c1s1_000001_00.jpg"):
        read_image(p)


def test_skip_corrupt_leaves_the_file_out_with_a_count(tmp_path, caplog):
    market_tree(tmp_path)
    ds = Market1501(tmp_path)
    bad = ds.gallery[2].path
    truncate(type(tmp_path)(bad))
    dec = load_images(ds.gallery, use_cache=False, skip_corrupt=True, progress=False)
    assert dec.skipped == [bad]
    assert len(dec) == len(ds.gallery) - 1 and bad not in [s.path for s in dec.samples]
    assert isinstance(dec.images, torch.Tensor) and dec.images.shape[0] == len(dec)
    assert "skipped 1 unreadable images" in caplog.text


def test_cache_serves_the_second_load_without_decoding(tmp_path, monkeypatch):
    market_tree(tmp_path)
    ds = Market1501(tmp_path)
    first = load_images(ds.train, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "images").glob("*.pt"))

    def boom(path):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images_mod, "read_image", boom)
    second = load_images(ds.train, cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(first.images, second.images)
    assert second.pids.tolist() == [s.pid for s in ds.train]


def test_cache_key_follows_the_files(tmp_path):
    market_tree(tmp_path)
    ds = Market1501(tmp_path)
    a = load_images(ds.query, cache_dir=tmp_path / "cache", progress=False)
    write_image(type(tmp_path)(ds.query[0].path), seed=123, size=(24, 12))
    b = load_images(ds.query, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(b.images, list)  # sizes now differ: a list of tensors
    assert b.images[0].shape == (3, 24, 12) and not torch.equal(b.images[1], b.images[0][:, :16, :8])
    assert a.images.shape[0] == 2 and len(list((tmp_path / "cache" / "images").glob("*.pt"))) == 2


def test_file_removed_after_listing(tmp_path):
    market_tree(tmp_path)
    ds = Market1501(tmp_path)
    import os

    os.unlink(ds.train[0].path)
    with pytest.raises(CorruptImageError, match="do not exist"):
        load_images(ds.train, progress=False)
