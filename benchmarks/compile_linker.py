"""Compile time per new candidate with the default linker vs the fast one (kernels/inductor.py), side by side.

One process, Inductor's caches off; each candidate without parameters (catalog + random screened) is
compiled twice, once per linker, in alternating order, so every pair sees the same formula and nearly
the same machine state (kernels.bench.paired_compile_seconds).  Prints each pair and the medians;
--json prints one object.

    python benchmarks/compile_linker.py [--n 16] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="candidates, each compiled once per linker")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-linker-")
    from actsearch.kernels.bench import paired_compile_seconds, suite_candidates
    from actsearch.kernels.inductor import use_fast_linker

    fast = use_fast_linker()
    if fast is None:
        sys.exit("no fast linker (mold, ld.lld, ld.gold) on PATH, or COMPILER_PATH / ACTSEARCH_LINKER=default set")
    fast_dir = os.environ["COMPILER_PATH"]
    sides = {"default": lambda: os.environ.pop("COMPILER_PATH", None),
             "fast": lambda: os.environ.__setitem__("COMPILER_PATH", fast_dir)}
    cands = [c for c in suite_candidates(max(6, args.n)) if not c.params][: args.n + 1]
    show = None if args.json else (
        lambda r: print(f"default {r['default_s']:5.2f} s  fast {r['fast_s']:5.2f} s  {r['formula']}", flush=True))
    try:
        out = paired_compile_seconds(cands, sides, args.threads, show)
    finally:
        os.environ["COMPILER_PATH"] = fast_dir
    out.update(fast_linker=fast, ratio_default_over_fast=out["median_default_s"] / out["median_fast_s"])
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: default ld {out['median_default_s']:.2f} s, {fast} "
              f"{out['median_fast_s']:.2f} s ({out['ratio_default_over_fast']:.2f}x); median saving per pair "
              f"{out['median_paired_saving_s']:.2f} s; fast faster in {out['fast_faster_pairs']} of {out['pairs']}")


if __name__ == "__main__":
    main()
