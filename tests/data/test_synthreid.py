import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidbench.data import Market1501, SynthReID, generate_synthreid, load_dataset
from reidbench.data.synthreid import SIZES, plan_synthreid


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tiny_synth, tmp_path):
    other = generate_synthreid(tmp_path / "again", size="tiny", seed=0, workers=2, progress=False)
    assert tree_digest(other) == tree_digest(tiny_synth)


def test_another_seed_gives_another_dataset():
    a = plan_synthreid(SIZES["tiny"], seed=0)
    b = plan_synthreid(SIZES["tiny"], seed=1)
    assert [j["name"] for j in a] != [j["name"] for j in b]


def test_loaded_through_the_market_loader(tiny_synth):
    via_market = Market1501(tiny_synth)
    via_synth = load_dataset("synthreid", tiny_synth)
    assert isinstance(via_synth, SynthReID)
    for split in ("train", "query", "gallery"):
        assert via_market.split(split) == via_synth.split(split)
    meta = json.loads((tiny_synth / "synthreid.json").read_text())
    assert meta["seed"] == 0 and meta["size"] == "tiny" and meta["layout"] == "Market-1501"


def test_protocol_properties(tiny_synth):
    ds = load_dataset("synthreid", tiny_synth)
    spec = SIZES["tiny"]
    assert ds.num_train_pids == spec.train_ids
    assert len({s.pid for s in ds.query}) == spec.test_ids
    # junk written on disk, dropped by the loader; distractors kept
    assert len(list((tiny_synth / "bounding_box_test").glob("-1_*.jpg"))) == spec.junk
    assert sum(s.pid == 0 for s in ds.gallery) == spec.distractors
    train_ids = {int(Path(s.path).name.split("_")[0]) for s in ds.train}  # original ids, before relabelling
    assert len(train_ids) == spec.train_ids and not train_ids & {s.pid for s in ds.query + ds.gallery}
    # every query has a true match in another camera
    gallery = defaultdict(set)
    for s in ds.gallery:
        gallery[s.pid].add(s.camid)
    for q in ds.query:
        assert gallery[q.pid] - {q.camid}, f"query {q.path} has no cross-camera match"
    # at most one query per identity and camera, as on Market-1501
    assert len({(q.pid, q.camid) for q in ds.query}) == len(ds.query)
    with Image.open(ds.query[0].path) as im:
        assert im.size == (64, 128) and im.mode == "RGB"


def test_colour_is_camera_dependent(tiny_synth):
    """The camera colour cast is the main intra-class variation: the chromaticity of one identity
    varies more across cameras than within a camera."""
    ds = load_dataset("synthreid", tiny_synth)
    chroma = defaultdict(list)
    for s in ds.train:
        arr = np.asarray(Image.open(s.path), np.float64).reshape(-1, 3).mean(0)
        chroma[(s.pid, s.camid)].append(arr / arr.sum())
    within, across = [], []
    by_pid = defaultdict(list)
    for (pid, cam), vals in chroma.items():
        by_pid[pid].append(np.mean(vals, 0))
        within += [np.abs(a - b).sum() for i, a in enumerate(vals) for b in vals[i + 1:]]
    for pid, means in by_pid.items():
        across += [np.abs(a - b).sum() for i, a in enumerate(means) for b in means[i + 1:]]
    assert np.mean(across) > 1.5 * np.mean(within)


def test_images_have_texture_not_flat_colour(tiny_synth):
    """Photograph-like detail: a good share of the energy is in high frequencies (a flat cartoon
    would have almost none inside its regions)."""
    ds = load_dataset("synthreid", tiny_synth)
    ratios = []
    for s in ds.query[:20]:
        g = np.asarray(Image.open(s.path).convert("L"), np.float64)
        lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
        ratios.append(np.mean(lap > 4))
    assert np.mean(ratios) > 0.3


def test_existing_dataset_is_not_overwritten_silently(tiny_synth):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_synthreid(tiny_synth, size="tiny")


def test_unknown_size():
    with pytest.raises(ValueError, match="unknown synthreid size"):
        generate_synthreid("/tmp/never", size="huge")


def test_default_location_generates_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setenv("REIDBENCH_HOME", str(tmp_path))
    ds = load_dataset("synthreid", size="tiny", progress=False)
    assert str(ds.root).startswith(str(tmp_path)) and (ds.root / "synthreid.json").is_file()
    again = load_dataset("synthreid", size="tiny")
    assert again.fingerprint() == ds.fingerprint()


def test_the_cli_offers_every_size():
    from reidbench.cli import SYNTH_SIZES

    assert set(SYNTH_SIZES) == set(SIZES)


def test_large_is_at_market_scale():
    """``large`` has Market-1501's scale: 750 training and 750 test identities (Market: 751 and 750),
    disjoint, with the 2,000 distractors and about Market's number of training images."""
    jobs = plan_synthreid(SIZES["large"], seed=0)
    train = {j["look"] for j in jobs if j["folder"] == "bounding_box_train"}
    query = {j["look"] for j in jobs if j["folder"] == "query"}
    assert len(train) == 750 and len(query) == 750 and not train & query
    assert sum(j["look"] >= 100000 and j["look"] < 200000 for j in jobs) == SIZES["large"].distractors
    assert 9000 < sum(j["folder"] == "bounding_box_train" for j in jobs) < 14000  # Market: 12,936
