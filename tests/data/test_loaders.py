import os
import shutil

import pytest

from reidbench.data import (
    CUHK03NP, MSMT17, CUHK03NPLabeled, DatasetLayoutError, DukeMTMCreID, Market1501, load_dataset,
)
from trees import CUHK_FILES, cuhk_tree, duke_tree, market_tree, msmt_tree, write_image


# ---------------------------------------------------------------------------- Market-1501

def test_market_conventions(tmp_path):
    ds = Market1501(market_tree(tmp_path))
    assert ds.root == tmp_path / "Market-1501-v15.09.15"
    # train pids relabelled 0..K-1, camids 0-based
    assert sorted({s.pid for s in ds.train}) == [0, 1]
    assert sorted(s.camid for s in ds.train) == [0, 1, 2, 5]
    # query keeps original pids
    assert [(s.pid, s.camid) for s in ds.query] == [(10, 0), (11, 1)]
    # gallery: junk (-1) dropped, distractors (0) kept
    g = {(s.pid, s.camid) for s in ds.gallery}
    assert (0, 0) in g and all(p != -1 for p, _ in g) and len(ds.gallery) == 4
    assert all(os.path.isabs(s.path) and os.path.isfile(s.path) for s in ds.train + ds.query + ds.gallery)
    assert "train" in ds.summary() and "# ids" in ds.summary()


@pytest.mark.parametrize("top", ["", "Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15"])
def test_market_root_may_be_the_release_folder_or_its_parent(tmp_path, top):
    market_tree(tmp_path, top)
    ds = load_dataset("market1501", tmp_path)
    assert len(ds.train) == 4 and len(ds.query) == 2


def test_market_missing_split_names_what_is_missing_and_what_was_found(tmp_path):
    market_tree(tmp_path)
    shutil.rmtree(tmp_path / "Market-1501-v15.09.15" / "query")
    with pytest.raises(DatasetLayoutError) as exc:
        Market1501(tmp_path)
    msg = str(exc.value)
    assert "missing query" in msg
    assert "bounding_box_test/" in msg and "bounding_box_train/" in msg  # what was found
    assert "--data-root" in msg


def test_market_wrong_folder(tmp_path):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(DatasetLayoutError, match="none of the expected entries were found.*something_else"):
        Market1501(tmp_path)


def test_market_unparseable_file_name_is_named(tmp_path):
    market_tree(tmp_path)
    write_image(tmp_path / "Market-1501-v15.09.15" / "query" / "holiday_photo.jpg")
    with pytest.raises(DatasetLayoutError, match="holiday_photo.jpg"):
        Market1501(tmp_path)


def test_market_camera_out_of_range(tmp_path):
    market_tree(tmp_path)
    write_image(tmp_path / "Market-1501-v15.09.15" / "query" / "0012_c7s1_000001_00.jpg")
    with pytest.raises(DatasetLayoutError, match="camera 7"):
        Market1501(tmp_path)


def test_market_empty_split(tmp_path):
    market_tree(tmp_path)
    for f in (tmp_path / "Market-1501-v15.09.15" / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError, match="holds no .jpg images"):
        Market1501(tmp_path)


def test_fingerprint_changes_with_the_files(tmp_path):
    market_tree(tmp_path)
    a = Market1501(tmp_path).fingerprint()
    assert Market1501(tmp_path).fingerprint() == a
    write_image(tmp_path / "Market-1501-v15.09.15" / "query" / "0010_c1s1_001051_00.jpg", seed=99, size=(32, 16))
    assert Market1501(tmp_path).fingerprint() != a


def test_real_dataset_needs_a_root():
    with pytest.raises(ValueError, match="needs --data-root"):
        load_dataset("market1501")


# ---------------------------------------------------------------------------- DukeMTMC-reID

def test_duke(tmp_path):
    ds = DukeMTMCreID(duke_tree(tmp_path, "dukemtmc-reid/DukeMTMC-reID"))
    assert ds.root.name == "DukeMTMC-reID"
    assert sorted({s.pid for s in ds.train}) == [0, 1]
    assert {s.camid for s in ds.train} == {1, 7, 2}  # c2, c8, c3 -> 0-based
    assert [(s.pid, s.camid) for s in ds.query] == [(3, 0)]
    assert load_dataset("duke", tmp_path).num_train_pids == 2


def test_duke_missing_gallery(tmp_path):
    duke_tree(tmp_path)
    shutil.rmtree(tmp_path / "DukeMTMC-reID" / "bounding_box_test")
    with pytest.raises(DatasetLayoutError, match="missing bounding_box_test"):
        DukeMTMCreID(tmp_path)


# ---------------------------------------------------------------------------- MSMT17

@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_list_layouts(tmp_path, version):
    ds = MSMT17(msmt_tree(tmp_path, version))
    assert ds.version == version.lower()
    assert len(ds.train) == 3 and sorted({s.pid for s in ds.train}) == [0, 1]
    # camera = third '_' field, 0-based
    assert sorted(s.camid for s in ds.train) == [0, 4, 11]
    assert [(s.pid, s.camid) for s in ds.query] == [(0, 1)]
    assert sorted((s.pid, s.camid) for s in ds.gallery) == [(0, 14), (1, 1)]
    combined = MSMT17(tmp_path, combine_val=True)
    assert len(combined.train) == 4 and combined.num_train_pids == 3


def test_msmt17_listed_file_missing(tmp_path):
    msmt_tree(tmp_path, "V1")
    (tmp_path / "MSMT17_V1" / "test" / "0001" / "0001_000_02_0303afternoon_0500_0.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="1 images listed in .*list_gallery.txt do not exist"):
        MSMT17(tmp_path)


def test_msmt17_missing_list_file(tmp_path):
    msmt_tree(tmp_path, "V2")
    (tmp_path / "MSMT17_V2" / "list_query.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="missing list_query.txt"):
        MSMT17(tmp_path)


def test_msmt17_malformed_list_line(tmp_path):
    msmt_tree(tmp_path, "V1")
    (tmp_path / "MSMT17_V1" / "list_query.txt").write_text("just_a_name\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        MSMT17(tmp_path)


# ---------------------------------------------------------------------------- CUHK03-NP

def test_cuhk03np_variants(tmp_path):
    cuhk_tree(tmp_path)
    det = CUHK03NP(tmp_path)
    lab = CUHK03NPLabeled(tmp_path)
    assert det.root == tmp_path / "cuhk03-np" / "detected"
    assert lab.root == tmp_path / "cuhk03-np" / "labeled"
    assert len(det.gallery) == 2 and len(lab.gallery) == 1
    assert {s.camid for s in det.train} == {0, 1}
    assert load_dataset("cuhk03np", tmp_path, variant="labeled").root == lab.root
    with pytest.raises(ValueError, match="variant"):
        CUHK03NP(tmp_path, variant="manual")


def test_cuhk03np_wrong_extension_means_empty_split(tmp_path):
    cuhk_tree(tmp_path)
    q = tmp_path / "cuhk03-np" / "detected" / "query"
    for f in q.iterdir():
        f.rename(f.with_suffix(".bmp"))
    with pytest.raises(DatasetLayoutError, match="holds no .png/.jpg images"):
        CUHK03NP(tmp_path)
    assert CUHK_FILES  # the tree helper and the loader agree on the file list
