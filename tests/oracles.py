"""Reference implementations used as test oracles.

torchreid==0.2.5 (the PyPI repackaging of deep-person-reid) ships the reference ``rank.py`` and
``rerank.py``, which need only numpy; its package ``__init__`` imports cv2, gdown and tensorboard,
so the two files are loaded on their own, by path, without importing the package.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np


def _load(relpath: str, name: str):
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchreid==0.2.5 is needed for the oracle tests: pip install -e '.[test]'")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    mspec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mspec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cython evaluation is unavailable"
        mspec.loader.exec_module(module)
    return module


def torchreid_rank():
    return _load("reid/metrics/rank.py", "_torchreid_rank_oracle")


def torchreid_rerank():
    return _load("reid/utils/rerank.py", "_torchreid_rerank_oracle")


def market_official_eval(distmat, q_pids, g_pids, q_camids, g_camids):
    """The Python port of the official Market-1501 evaluation (Zheng / Gong / Bai code lineage):
    trapezoidal AP, junk = pid -1 and same-pid-same-camera, every query in the denominator.
    Written from the protocol description (spec section 5.2b) as an independent oracle."""
    num_q, num_g = distmat.shape
    cmc_sum = np.zeros(num_g)
    ap_sum = 0.0
    for i in range(num_q):
        index = np.argsort(distmat[i], kind="stable")
        good = np.flatnonzero((g_pids[index] == q_pids[i]) & (g_camids[index] != q_camids[i]))
        junk_mask = ((g_pids[index] == q_pids[i]) & (g_camids[index] == q_camids[i])) | (g_pids[index] == -1)
        good = good[~junk_mask[good]]
        if len(good) == 0:
            continue
        # rank of each good item after removing junk items from the list
        keep = ~junk_mask
        kept_pos = np.cumsum(keep) - 1
        rows = kept_pos[good]
        ngood = len(good)
        ap = 0.0
        for k, r in enumerate(rows):
            d_recall = 1.0 / ngood
            precision = (k + 1) / (r + 1)
            old_precision = k / r if r != 0 else 1.0
            ap += d_recall * (old_precision + precision) / 2
        ap_sum += ap
        cmc_sum[rows[0]:] += 1
    return cmc_sum / num_q, ap_sum / num_q
