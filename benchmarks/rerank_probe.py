"""Run one re-ranking implementation on the Market-sized problem in this process and print JSON:
seconds inside the call and peak resident memory above the inputs (Linux /proc).

``reidbench`` and ``torchreid`` read the three dense distance matrices; ``features`` is reidbench's
path from the features (no dense input); ``msmt17`` is the whole evaluation (ranking metrics and
re-ranking from features) on an MSMT17-shaped problem, with the peak resident memory of the process."""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from problems import MARKET, MSMT17, make_problem  # noqa: E402
from reidbench.evaluation import compute_distance, re_ranking  # noqa: E402


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def msmt17() -> None:
    from reidbench.evaluation import evaluate_features

    t = time.perf_counter()
    qf, gf, qp, gp, qc, gc = make_problem(**MSMT17)
    base = rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    res = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=True)
    seconds = time.perf_counter() - t0
    print(json.dumps({"impl": "msmt17", "seconds": seconds, "make_seconds": t0 - t, "peak_gb": rss_kb("VmHWM") / 2**20,
                      "peak_above_inputs_gb": (rss_kb("VmHWM") - base) / 2**20, "inputs_gb": base / 2**20,
                      "mAP": res["mAP"], "rerank_mAP": res["rerank"]["mAP"]}))


def main(impl: str) -> None:
    if impl == "msmt17":
        return msmt17()
    qf, gf, *_ = make_problem(**MARKET)
    if impl == "features":
        from reidbench.evaluation import re_ranking_features

        base = rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        t = time.perf_counter()
        out = re_ranking_features(qf, gf)
        seconds = time.perf_counter() - t
        print(json.dumps({"impl": impl, "seconds": seconds, "peak_above_inputs_gb": (rss_kb("VmHWM") - base) / 2**20,
                          "shape": list(out.shape)}))
        return
    qg, qq, gg = (compute_distance(a, b, "sqeuclidean").numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    del qf, gf
    import gc
    gc.collect()
    base = rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    t = time.perf_counter()
    if impl == "reidbench":
        out = re_ranking(qg, qq, gg)
    else:
        from oracles import torchreid_rerank

        out = torchreid_rerank().re_ranking(qg, qq, gg)
    seconds = time.perf_counter() - t
    peak = rss_kb("VmHWM")
    print(json.dumps({"impl": impl, "seconds": seconds, "peak_above_inputs_gb": (peak - base) / 2**20,
                      "shape": list(out.shape)}))


if __name__ == "__main__":
    main(sys.argv[1])
