"""What explaining an evaluation costs: ``fastxent bench``'s runner on the plain ``evaluate``,
``evaluate_slices`` (per-class table and 1000 groups) and ``compare`` workloads alone, at
(1000000, 10) and (20000, 1000) float32, in several rounds.

Each round prints the medians and each explaining workload's multiple of the plain
evaluation of its shape in the same round. On a shared machine the times move from round to
round: read the multiples as a range.

Usage: ``python bench/evaluation_costs.py [ROUNDS [REPEAT [THREADS]]]`` (default 5 rounds of
medians of 15 calls, 2 threads).
"""

import sys

from fastxent._bench.runner import run_suite
from fastxent._bench.workloads import COMPARE, EVALUATE, EVALUATE_SLICES, Workload

SHAPES = [(1_000_000, 10), (20_000, 1000)]


def main(rounds=5, repeat=15, threads=2):
    workloads = [Workload(kind, "float32", shape) for shape in SHAPES
                 for kind in (EVALUATE, EVALUATE_SLICES, COMPARE)]
    for index in range(rounds):
        results = run_suite(workloads, threads=threads, repeat=repeat)["results"]
        cells = [f"{r['workload']} {'x'.join(map(str, r['shape']))} "
                 f"{r['fastxent_median_s'] * 1e3:.1f}ms"
                 + (f" ({r['x_evaluate']:.2f}x)" if "x_evaluate" in r else "")
                 for r in results]
        print(f"round {index}: " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
