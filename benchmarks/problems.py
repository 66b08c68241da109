"""Synthetic retrieval problems of the shape of real ReID test sets, for the benchmarks."""

from __future__ import annotations

import numpy as np
import torch

# Market-1501 test split: 3,368 queries, 15,913 gallery images (pid -1 removed), 750 test
# identities plus distractors (pid 0), 6 cameras; features are 512-d like the seed's ft_net.
MARKET = dict(num_query=3368, num_gallery=15913, num_ids=750, num_cams=6, dim=512)
# MSMT17 test split: 11,659 queries, 82,161 gallery images, 3,060 test identities, 15 cameras
MSMT17 = dict(num_query=11659, num_gallery=82161, num_ids=3060, num_cams=15, dim=512)


def make_problem(num_query, num_gallery, num_ids, num_cams, dim, distractor_frac=0.15, noise=2.5, seed=0):
    """Features drawn around one random centre per identity; gallery distractors are pid 0."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids + 1, dim)).astype(np.float32)
    q_pids = rng.integers(1, num_ids + 1, num_query)
    n_distr = int(distractor_frac * num_gallery)
    g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_gallery - n_distr), np.zeros(n_distr, np.int64)])
    q_cams = rng.integers(0, num_cams, num_query)
    g_cams = rng.integers(0, num_cams, num_gallery)
    qf = centres[q_pids] + noise * rng.standard_normal((num_query, dim)).astype(np.float32)
    gf = centres[g_pids] + noise * rng.standard_normal((num_gallery, dim)).astype(np.float32)
    gf[g_pids == 0] = rng.standard_normal((n_distr, dim)).astype(np.float32) * 1.5
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    return torch.from_numpy(qf), torch.from_numpy(gf), q_pids, g_pids, q_cams, g_cams
