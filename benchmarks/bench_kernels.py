"""Fused compiled kernels vs eager autograd (issue #3 targets), same as `actsearch bench kernels`.

Usage: python benchmarks/bench_kernels.py [--quick] [--json]
"""
import sys

from actsearch.cli import app

if __name__ == "__main__":
    app(["bench", "kernels", *sys.argv[1:]])
