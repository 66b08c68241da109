"""ReID evaluation: distances, CMC / mAP / mINP (Market protocol), k-reciprocal re-ranking.

Everything runs in torch on the device of the input tensors, chunked so that Market-scale problems
(3,368 queries x 15,913 gallery images) fit on one machine.
"""

from .distance import compute_distance, check_finite_features
from .rank import evaluate_rank
from .rerank import re_ranking, re_ranking_features
from .features import EVAL_NUMERICS, METRIC_KEYS, evaluate_features, evaluate_model, extract_features, summarize

__all__ = ["compute_distance", "check_finite_features", "evaluate_rank", "re_ranking", "re_ranking_features", "extract_features",
           "evaluate_features", "evaluate_model", "summarize", "METRIC_KEYS", "EVAL_NUMERICS"]
