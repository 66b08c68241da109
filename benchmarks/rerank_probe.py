"""Run one re-ranking implementation on the Market-sized problem in this process and print JSON:
seconds inside the call and peak resident memory above the inputs (Linux /proc)."""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from problems import MARKET, make_problem  # noqa: E402
from reidbench.evaluation import compute_distance, re_ranking  # noqa: E402


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def main(impl: str) -> None:
    qf, gf, *_ = make_problem(**MARKET)
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
