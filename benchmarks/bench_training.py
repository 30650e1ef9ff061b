"""Population-batched vs one-at-a-time training throughput (issue #4 target), same as `actsearch bench train`.

Usage: python benchmarks/bench_training.py [--task mnist1d-mlp] [--population 16] [--quick] [--json]
"""
import sys

from actsearch.cli import app

if __name__ == "__main__":
    app(["bench", "train", *sys.argv[1:]])
