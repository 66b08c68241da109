"""Hand-made records for the leaderboard tests: no model, no dataset, known per-query results."""

import hashlib
from pathlib import Path

import numpy as np

from reidbench.matrix import encode_hits, write_record
from reidbench.matrix.records import RECORD_FORMAT, record_path

N = 8


def weights_sha(model: str) -> str:
    """The fake SHA-256 of a model's weights."""
    return hashlib.sha256(model.encode()).hexdigest()


def record(model, defense, attack, threat, r1_hits, ap, seed=0, eps=5 / 255, eot=None, deterministic=True,
           version="0.1.0", rerank_shift=5.0, dataset="synthreid", hyper=None, fingerprint="f" * 64, ap_def="torchreid",
           salt=""):
    """``(slug, record dict)``; ``hyper``: attack hyper-parameters besides eps; ``salt`` changes the key
    (another run of the same cell)."""
    hits = np.asarray(r1_hits, dtype=bool)
    ap = np.asarray(ap, dtype=float)
    valid = ap >= 0
    r1, m_ap = 100 * hits[valid].mean(), 100 * ap[valid].mean()
    metrics = {"R1": round(r1, 4), "R5": min(100.0, r1 + 10), "R10": min(100.0, r1 + 15), "mAP": round(m_ap, 4),
               "mINP": round(m_ap / 2, 4)}
    rr = {k: round(min(100.0, v + rerank_shift), 4) for k, v in metrics.items()}
    clean = attack == "clean"
    cell = {"model": model, "defense": defense, "attack": attack, "threat": threat, "dataset": dataset,
            "seed": seed, "eps": None if clean else eps, "steps": None, "attack_kwargs": {}}
    slug = f"{model}__{defense}__{attack}__{threat}__s{seed}"
    key = hashlib.sha256(f"{dataset}/{slug}/{eps}/{salt}".encode()).hexdigest()
    return slug, {
        "format": RECORD_FORMAT, "key": key, "slug": slug, "cell": cell, "metrics": metrics,
        "metrics_rerank": rr, "clean_metrics": metrics, "perturbation": None if clean else {"linf_max": eps},
        "per_query": {"n": N, "r1_hits": encode_hits(hits), "ap": ap.tolist(), "r1_hits_rerank": encode_hits(hits),
                      "ap_rerank": ap.tolist()},
        "config": {"eot": eot, "attack_hyperparameters": None if clean else {"eps": eps, **(hyper or {})},
                   "dataset": {"name": dataset, "fingerprint": fingerprint}, "ap": ap_def,
                   "model": {"preset": model, "arch": "resnet-small", "sha256": weights_sha(model)},
                   "defense": None if defense == "none" else {"name": defense, "deterministic": deterministic},
                   "matrix": {"models": ["baseline", "jad"]}},
        "seeds": {"model": seed, "attack": seed},
        "provenance": {"reidbench_version": version, "git_sha": "0123456789abcdef", "device_name": "test-cpu"},
    }


ALL = [1, 1, 1, 1, 1, 1, 1, 0]
AP_CLEAN = [1, 1, 0.9, 0.8, 1, 0.7, 1, 0.2]


def fixed_records(folder: Path) -> Path:
    recs = [
        record("baseline", "none", "clean", "clean", ALL, AP_CLEAN),
        record("baseline", "none", "sma", "white-box", [0, 1, 0, 0, 0, 0, 0, 0], [0.1, 0.6, 0.1, 0, 0.2, 0, 0.1, 0]),
        record("baseline", "none", "lta", "white-box", [1, 0, 0, 1, 0, 0, 0, 0], [0.7, 0.2, 0.1, 0.5, 0, 0, 0.1, 0]),
        record("baseline", "none", "dmr", "transfer", [1, 1, 1, 0, 1, 0, 1, 0], [0.9, 0.8, 0.6, 0.3, 0.9, 0.2, 1, 0],
               eps=16 / 255),
        record("jad", "cs", "clean", "clean", ALL, AP_CLEAN),
        record("jad", "cs", "sma", "oblivious", [1, 1, 1, 1, 1, 0, 1, 0], [1, 0.9, 0.8, 0.7, 0.9, 0.3, 1, 0.1]),
        record("jad", "cs", "sma", "adaptive", [1, 0, 1, 0, 1, 0, 0, 0], [0.8, 0.3, 0.5, 0.2, 0.6, 0.1, 0.2, 0]),
        record("jad", "cs", "lta", "oblivious", [1, 1, 0, 1, 1, 1, 1, 0], [0.9, 0.9, 0.4, 0.8, 0.9, 0.6, 1, 0.1]),
        # broken adaptive attack: weaker than the oblivious one
        record("jad", "cs", "lta", "adaptive", [1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 0.9, 0.8, 1, 0.7, 1, 0.2]),
        record("jad", "cs", "dmr", "transfer", [1, 1, 1, 1, 1, 0, 1, 0], [1, 0.9, 0.8, 0.7, 0.9, 0.4, 1, 0.1],
               eps=16 / 255),
    ]
    return write_all(folder, recs)


def write_all(folder: Path, recs) -> Path:
    """Write ``(slug, record)`` pairs under ``folder/records`` as the matrix names them."""
    for slug, rec in recs:
        write_record(record_path(folder, slug, rec["key"]), rec)
    return folder
