"""Compile time per new candidate with the default linker vs the fast one (kernels/inductor.py), side by side.

One process, Inductor's caches off; each candidate without parameters (catalog + random screened) is
compiled twice, once per linker, in alternating order, so every pair sees the same formula and nearly
the same machine state (kernels.bench.paired_compile_seconds).  Prints each pair and the medians;
--json prints one object.

    python benchmarks/compile_linker.py [--n 16] [--json]
"""
from __future__ import annotations

import os
import sys
import tempfile


def main() -> None:
    from actsearch.kernels.bench import paired_compile_args, report_paired_compile, suite_candidates

    args = paired_compile_args(__doc__)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-linker-")
    from actsearch.kernels.inductor import use_fast_linker

    fast = use_fast_linker()
    if fast is None:
        sys.exit("no fast linker (mold, ld.lld, ld.gold) on PATH, or COMPILER_PATH / ACTSEARCH_LINKER=default set")
    fast_dir = os.environ["COMPILER_PATH"]
    sides = {"default": lambda: os.environ.pop("COMPILER_PATH", None),
             "fast": lambda: os.environ.__setitem__("COMPILER_PATH", fast_dir)}
    cands = [c for c in suite_candidates(max(6, args.n)) if not c.params][: args.n + 1]
    report_paired_compile(cands, sides, {"default": "default ld", "fast": fast}, args.threads, args.json,
                          restore=lambda: os.environ.__setitem__("COMPILER_PATH", fast_dir), fast_linker=fast)


if __name__ == "__main__":
    main()
