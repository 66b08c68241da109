import numpy as np
import pytest
import torch

import reidbench.evaluation.rank as rank_mod

from oracles import market_official_eval, torchreid_rank
from reidbench.evaluation import evaluate_rank


def hand_case():
    """One query (pid 1, camera 0). Gallery after removing the same-camera match: 4 kept items with
    true matches at ranks 1 and 3 (1-based)."""
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids = np.array([1, 2, 1, 3, 1])
    g_cams = np.array([1, 1, 2, 1, 0])  # the last one is the same camera: junk
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.05]])
    return dist, q_pids, g_pids, q_cams, g_cams


def test_hand_computed_average_precision():
    dist, qp, gp, qc, gc = hand_case()
    tr = evaluate_rank(dist, qp, gp, qc, gc, max_rank=4)
    assert tr["mAP"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)  # 0.8333
    off = evaluate_rank(dist, qp, gp, qc, gc, max_rank=4, ap="market_official")
    # trapezoid: 1/2 * (1 + 1)/2 + 1/2 * (1/2 + 2/3)/2 = 0.7917
    assert off["mAP"] == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (0.5 + 2 / 3) / 2, abs=1e-12)
    np.testing.assert_allclose(tr["cmc"], [1, 1, 1, 1])
    # the hardest true match is at rank 3: INP = 2 / 3
    assert tr["mINP"] == pytest.approx(2 / 3)
    assert tr["first_match_rank"].tolist() == [0]


def test_same_camera_match_never_counts():
    dist, qp, gp, qc, gc = hand_case()
    dist = dist.copy()
    dist[0, 1] = 0.0  # a negative is now nearest: the first true match drops to rank 2
    r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=4)
    assert r["cmc"].tolist() == [0, 1, 1, 1]
    assert r["first_match_rank"].tolist() == [1]


def test_distractors_are_negatives_and_junk_only_in_official_mode():
    q_pids, q_cams = np.array([5]), np.array([0])
    g_pids = np.array([0, -1, 5])   # distractor, junk, true match
    g_cams = np.array([1, 1, 1])
    dist = np.array([[0.1, 0.2, 0.3]])
    tr = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    off = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap="market_official")
    assert tr["first_match_rank"].tolist() == [2]   # torchreid: pid -1 is just another negative
    assert off["first_match_rank"].tolist() == [1]  # official: pid -1 is junk, skipped
    assert tr["mAP"] == pytest.approx(1 / 3)
    # official trapezoid with the hit at rank 2 of 2: (precision before 0/1 + precision 1/2) / 2
    assert off["mAP"] == pytest.approx(0.25)


def test_invalid_queries_torchreid_skips_official_counts_zero():
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 2, 3]), np.array([1, 0, 1])  # query 2's only match is same-camera
    dist = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    tr = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    off = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap="market_official")
    assert tr["num_valid_queries"] == 1 and tr["mAP"] == pytest.approx(1.0)
    assert off["mAP"] == pytest.approx(0.5) and off["cmc"][0] == pytest.approx(0.5)
    assert np.isnan(tr["ap_per_query"][1]) and tr["first_match_rank"][1] == -1


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([2, 3]), np.array([0]), np.array([1, 1]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_distance_is_an_error(bad):
    dist, qp, gp, qc, gc = hand_case()
    dist = dist.copy()
    dist[0, 2] = bad
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_rank(dist, qp, gp, qc, gc)


def test_label_length_mismatch_is_an_error():
    dist, qp, gp, qc, gc = hand_case()
    with pytest.raises(ValueError, match="g_pids has 4 entries"):
        evaluate_rank(dist, qp, gp[:4], qc, gc)


def random_problem(rng, ties=False, junk=False):
    nq, ng = int(rng.integers(5, 50)), int(rng.integers(20, 250))
    n_ids = int(rng.integers(3, 20))
    qp = rng.integers(1, n_ids, nq)
    gp = rng.integers(-1 if junk else 0, n_ids, ng)
    qc, gc = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    # distances that carry identity (queries nearer their true matches), as from a trained model
    d = (rng.random((nq, ng)) + 0.5 * (gp[None] != qp[:, None])).astype(np.float32)
    if ties:
        d = (np.round(d * 8) / 8).astype(np.float32)
    return d, qp, gp, qc, gc


@pytest.fixture(params=["dense", "sparse"])
def path(request, monkeypatch):
    """Run a test through each of the two ranking paths."""
    monkeypatch.setattr(rank_mod, "SPARSE_MAX_FRACTION", 0.0 if request.param == "dense" else 1.0)
    return request.param


@pytest.mark.parametrize("seed", range(15))
def test_equals_torchreid_eval_market1501(seed, path):
    rng = np.random.default_rng(seed)
    d, qp, gp, qc, gc = random_problem(rng)
    tr = torchreid_rank()
    try:
        cmc_ref, map_ref = tr.eval_market1501(d, qp, gp, qc, gc, 20)
    except AssertionError:
        pytest.skip("no valid query in this random problem")
    ours = evaluate_rank(d, qp, gp, qc, gc, max_rank=20)
    assert ours["mAP"] == pytest.approx(map_ref, abs=1e-6)
    np.testing.assert_allclose(ours["cmc"], cmc_ref, atol=1e-6)


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("ties", [False, True])
def test_equals_market_official_reference(seed, ties, path):
    rng = np.random.default_rng(100 + seed)
    d, qp, gp, qc, gc = random_problem(rng, ties=ties, junk=True)
    cmc_ref, map_ref = market_official_eval(d, qp, gp, qc, gc)
    ours = evaluate_rank(d, qp, gp, qc, gc, max_rank=10, ap="market_official")
    assert ours["mAP"] == pytest.approx(map_ref, abs=1e-9)
    np.testing.assert_allclose(ours["cmc"], cmc_ref[:10], atol=1e-9)


def test_ties_are_broken_by_gallery_index(path):
    # a negative and a true match at the same distance: the earlier gallery index ranks first
    q_pids, q_cams = np.array([1]), np.array([0])
    g_cams = np.array([1, 1])
    neg_first = evaluate_rank(np.array([[0.5, 0.5]]), q_pids, np.array([2, 1]), q_cams, g_cams)
    hit_first = evaluate_rank(np.array([[0.5, 0.5]]), q_pids, np.array([1, 2]), q_cams, g_cams)
    assert neg_first["first_match_rank"].tolist() == [1]
    assert hit_first["first_match_rank"].tolist() == [0]


def test_chunking_and_tensor_inputs_give_the_same_result():
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = random_problem(rng)
    a = evaluate_rank(d, qp, gp, qc, gc, chunk_size=3)
    b = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qp), torch.from_numpy(gp), torch.from_numpy(qc),
                      torch.from_numpy(gc), chunk_size=1000)
    assert a["mAP"] == b["mAP"] and a["mINP"] == b["mINP"]
    np.testing.assert_array_equal(a["cmc"], b["cmc"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_same_numbers():
    rng = np.random.default_rng(3)
    d, qp, gp, qc, gc = random_problem(rng)
    cpu = evaluate_rank(d, qp, gp, qc, gc)
    gpu = evaluate_rank(torch.from_numpy(d).cuda(), qp, gp, qc, gc)
    assert gpu["mAP"] == pytest.approx(cpu["mAP"], abs=1e-9)


def test_tied_queries_are_ranked_in_one_batched_stable_sort():
    """Every query with a tie goes through one stable sort on the device (in row chunks); each row
    equals a stable sort of that query alone."""
    rng = np.random.default_rng(3)
    d, qp, gp, qc, gc = random_problem(rng, ties=True)
    d, qp, gp, qc, gc = (torch.as_tensor(x) for x in (d, qp, gp, qc, gc))
    same = gp[None] == qp[:, None]
    hit = same & (gc[None] != qc[:, None])
    neg = ~same
    h = int(hit.sum(1).max())
    batched = rank_mod._stable_ranks(d, hit, neg, h)
    one_row_a_step = rank_mod._stable_ranks(d, hit, neg, h, max_elements=1)
    assert torch.equal(batched, one_row_a_step)
    for i in range(len(d)):
        n = int(hit[i].sum())
        if n == 0:
            continue
        kept = ((hit[i] | neg[i]) & (d[i] <= d[i][hit[i]].max())).nonzero().flatten()
        order = torch.sort(d[i][kept], stable=True).indices
        assert torch.equal(batched[i, :n], hit[i][kept][order].nonzero().flatten())
