import numpy as np
import pytest
import torch

from reidbench.evaluation import compute_distance


def test_metrics_against_direct_formulas():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((9, 5))
    direct = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    np.testing.assert_allclose(compute_distance(a, b, "euclidean").numpy(), direct, atol=1e-9)
    np.testing.assert_allclose(compute_distance(a, b, "sqeuclidean").numpy(), direct ** 2, atol=1e-9)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(compute_distance(a, b, "cosine").numpy(), 1 - an @ bn.T, atol=1e-9)


def test_self_distance_is_zero_not_negative():
    x = torch.randn(20, 64) * 100
    d = compute_distance(x, x, "sqeuclidean")
    assert (d >= 0).all() and torch.diagonal(d).max() <= 1e-6 * d.max()


def test_nan_feature_is_reported_with_its_row():
    a = torch.randn(4, 3)
    a[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"query features: 1 of 4 feature vectors contain NaN or inf \(rows 2\)"):
        compute_distance(a, torch.randn(3, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_distance(torch.randn(2, 3), torch.randn(2, 3), "manhattan")
    with pytest.raises(ValueError, match=r"\(M, D\) and \(N, D\)"):
        compute_distance(torch.randn(2, 3), torch.randn(2, 4))
