import numpy as np
import pytest
import torch

from oracles import torchreid_rerank
from reidbench.evaluation import compute_distance, evaluate_rank, re_ranking


def features(rng, n, d=16, n_ids=None):
    if n_ids is None:
        return rng.standard_normal((n, d)).astype(np.float32)
    centres = rng.standard_normal((n_ids, d)).astype(np.float32)
    ids = rng.integers(0, n_ids, n)
    return centres[ids] + 0.7 * rng.standard_normal((n, d)).astype(np.float32), ids


def dists(q, g, metric="sqeuclidean"):
    return [compute_distance(a, b, metric).numpy() for a, b in ((q, g), (q, q), (g, g))]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 1, 0.3), (7, 3, 0.5), (10, 2, 0.0)])
def test_equals_torchreid_re_ranking(seed, k1, k2, lam):
    rng = np.random.default_rng(seed)
    q, g = features(rng, int(rng.integers(10, 40))), features(rng, int(rng.integers(30, 120)))
    qg, qq, gg = dists(q, g)
    ref = torchreid_rerank().re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    ours = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    assert ours.shape == ref.shape == qg.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_clustered_features_and_small_memory_cap_match_reference():
    rng = np.random.default_rng(11)
    q, _ = features(rng, 60, n_ids=8)
    g, _ = features(rng, 200, n_ids=8)
    qg, qq, gg = dists(q, g, "euclidean")
    ref = torchreid_rerank().re_ranking(qg, qq, gg)
    ours = re_ranking(qg, qq, gg, max_memory_gb=1e-4)  # forces many tiny chunks
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_lambda_one_returns_row_normalised_squared_distances():
    rng = np.random.default_rng(1)
    q, g = features(rng, 30), features(rng, 50)
    qg, qq, gg = dists(q, g, "euclidean")
    out = re_ranking(qg, qq, gg, lambda_value=1.0)
    row_max = np.maximum((qq ** 2).max(0), (qg ** 2).max(1))
    np.testing.assert_allclose(out, qg ** 2 / row_max[:, None], rtol=1e-5, atol=1e-7)
    assert (np.argsort(out, 1, kind="stable") == np.argsort(qg, 1, kind="stable")).all()


def test_tensor_in_tensor_out():
    rng = np.random.default_rng(2)
    q, g = features(rng, 12), features(rng, 40)
    qg, qq, gg = (torch.from_numpy(x) for x in dists(q, g))
    out = re_ranking(qg, qq, gg)
    assert isinstance(out, torch.Tensor) and out.shape == (12, 40)


def test_re_ranking_improves_retrieval_on_clustered_data():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    q_ids, g_ids = rng.integers(0, 20, 60), rng.integers(0, 20, 400)
    q = centres[q_ids] + 1.0 * rng.standard_normal((60, 32)).astype(np.float32)
    g = centres[g_ids] + 1.0 * rng.standard_normal((400, 32)).astype(np.float32)
    qg, qq, gg = dists(q, g, "euclidean")
    cams_q, cams_g = np.zeros(60, int), np.ones(400, int)
    before = evaluate_rank(qg, q_ids, g_ids, cams_q, cams_g)["mAP"]
    after = evaluate_rank(re_ranking(qg, qq, gg), q_ids, g_ids, cams_q, cams_g)["mAP"]
    assert after > before


def test_shape_mismatch_and_nan_are_errors():
    rng = np.random.default_rng(0)
    q, g = features(rng, 5), features(rng, 9)
    qg, qq, gg = dists(q, g)
    with pytest.raises(ValueError, match="shapes do not fit"):
        re_ranking(qg, gg, qq)
    qg[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        re_ranking(qg, qq, gg)


def test_negative_entries_and_asymmetric_inputs_follow_the_reference():
    """The port squares its inputs and reads row i of its matrix from column i of the input; both
    matter for inputs that are not plain distance matrices."""
    rng = np.random.default_rng(9)
    q, g = features(rng, 25), features(rng, 70)
    qg, qq, gg = dists(q, g, "euclidean")
    # similarities shifted to have negative entries (squaring is then not monotone)
    neg = [x - 3.0 for x in (qg, qq, gg)]
    ref = torchreid_rerank().re_ranking(*neg)
    np.testing.assert_allclose(re_ranking(*neg), ref, atol=1e-5, rtol=0)
    # an asymmetric g_g (e.g. a learned, directed score)
    gg_asym = gg * (1 + 0.3 * rng.random(gg.shape).astype(np.float32))
    ref = torchreid_rerank().re_ranking(qg, qq, gg_asym)
    np.testing.assert_allclose(re_ranking(qg, qq, gg_asym), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k1,k2,memory", [(20, 6, 0.25), (7, 1, 1e-4), (5, 3, 2e-5)])
def test_from_features_equals_the_dense_path_without_a_gallery_by_gallery_matrix(k1, k2, memory):
    from reidbench.evaluation import re_ranking_features

    rng = np.random.default_rng(k1)
    q, _ = features(rng, 70, n_ids=9)
    g, _ = features(rng, 260, n_ids=9)
    dense = re_ranking(*dists(q, g), k1=k1, k2=k2)
    ours = re_ranking_features(torch.from_numpy(q), torch.from_numpy(g), k1=k1, k2=k2, max_memory_gb=memory)
    assert isinstance(ours, torch.Tensor) and ours.shape == dense.shape
    np.testing.assert_allclose(ours.numpy(), dense, atol=2e-6, rtol=0)
    ref = torchreid_rerank().re_ranking(*dists(q, g), k1=k1, k2=k2)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5, rtol=0)


def test_evaluation_beyond_the_dense_budget_reads_features_only(monkeypatch):
    import reidbench.evaluation.features as features_mod
    from reidbench.evaluation import evaluate_features

    rng = np.random.default_rng(5)
    q, q_ids = features(rng, 40, n_ids=6)
    g, g_ids = features(rng, 150, n_ids=6)
    q_cams, g_cams = np.zeros(40, np.int64), np.ones(150, np.int64)
    args = (torch.from_numpy(q), torch.from_numpy(g), q_ids, g_ids, q_cams, g_cams)
    dense = evaluate_features(*args, rerank=True)
    shapes = []
    real = features_mod.compute_distance
    monkeypatch.setattr(features_mod, "compute_distance", lambda a, b, m: shapes.append((len(a), len(b))) or real(a, b, m))
    small = evaluate_features(*args, rerank=True, rerank_dense_gb=0)
    assert shapes == [(40, 150)]  # the (Q x G) ranking distances only: no (G x G), no (Q x Q)
    for k in ("R1", "R5", "mAP", "mINP"):
        assert small["rerank"][k] == pytest.approx(dense["rerank"][k], abs=1e-6)
    assert small["rerank"]["mAP"] != pytest.approx(small["mAP"], abs=1e-3)  # re-ranking did change the ranking
