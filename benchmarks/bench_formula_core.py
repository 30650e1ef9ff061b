"""Time parse + canonicalize + fingerprint of 1000 random formulas (issue #2 target: < 2 s).

Usage: python benchmarks/bench_formula_core.py [--n 1000] [--json]   (same as `actsearch bench formula`)
"""
import sys

from actsearch.cli import app

if __name__ == "__main__":
    app(["bench", "formula", *sys.argv[1:]])
