"""The measured kernel cost (actsearch.kernels.bench.kernel_cost) of a cheap and a dear formula, side by
side in one run: was a timed unit test, which failed under load.  The search's `cost` objective is the
static estimate (actsearch.search.candidate_cost); workers time nothing.

Usage: python benchmarks/bench_kernel_cost.py [--reps 5] [--json]
Measured (2 cores): fused max(0, x) 9.5-9.7x ReLU, x*asinh(x)**2 18-20x (eager ATen asinh is slow).
"""
import argparse
import json

from actsearch.formula import parse_formula
from actsearch.kernels.bench import kernel_cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for _ in range(args.reps):  # alternated, so load drift falls on both
        cheap = kernel_cost(parse_formula("max(0, x)"))
        dear = kernel_cost(parse_formula("x*asinh(x)**2"))
        rows.append({"max(0, x)": cheap, "x*asinh(x)**2": dear, "ratio": dear / cheap})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"max(0, x) {r['max(0, x)']:.2f}x relu   x*asinh(x)**2 {r['x*asinh(x)**2']:.2f}x relu   ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    main()
