"""Benchmarks (pytest-benchmark). Run: ``python -m pytest benchmarks --benchmark-only``.

Pairs of benchmarks that measure reidbench against a named baseline in the same run share a
``group``; the summary at the end prints each ratio (baseline mean / reidbench mean).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))  # oracles.py


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        param = bench.name[bench.name.index("["):] if "[" in bench.name else ""
        groups.setdefault((bench.group, param), []).append(bench)
    lines = []
    for (group, param), items in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        base = [b for b in items if "baseline" in b.name]
        ours = [b for b in items if "reidbench" in b.name]
        if base and ours:
            # a benchmark that runs in a subprocess reports the time spent inside the measured call
            tb = (base[0].extra_info or {}).get("seconds_inside", base[0].stats.mean)
            to = (ours[0].extra_info or {}).get("seconds_inside", ours[0].stats.mean)
            lines.append(f"{group}{param}: baseline {base[0].name} {tb:.4f} s, reidbench {ours[0].name} "
                         f"{to:.4f} s: baseline/reidbench = {tb / to:.2f}x")
        for b in items:
            for k, v in (b.extra_info or {}).items():
                lines.append(f"{group}: {b.name} {k} = {v}")
    if lines:
        terminalreporter.write_sep("=", "reidbench ratios against baselines")
        for line in lines:
            terminalreporter.write_line(line)
