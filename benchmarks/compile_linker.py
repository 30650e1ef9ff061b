"""Compile time per new candidate with the default linker vs the fast one (kernels/inductor.py), side by side.

One process, a fresh Inductor cache; new candidates (catalog + random screened, none compiled before)
alternate between GNU ld and the fast linker, so both sides see the same machine state.  Prints each
candidate's compile seconds and the medians; --json prints one object.

    python benchmarks/compile_linker.py [--n 16] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="candidates timed (half per linker)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-linker-")
    import torch

    from actsearch.kernels.bench import suite_candidates
    from actsearch.kernels.fused import CompilePolicy, fused_activation, get_kernel
    from actsearch.kernels.inductor import use_fast_linker

    fast = use_fast_linker()
    if fast is None:
        sys.exit("no fast linker (mold, ld.lld, ld.gold) on PATH, or COMPILER_PATH / ACTSEARCH_LINKER=default set")
    fast_dir = os.environ["COMPILER_PATH"]
    torch.set_num_threads(args.threads)
    x = torch.randn(4096, requires_grad=True)
    g = torch.randn(4096)
    cands = [c for c in suite_candidates(max(6, args.n)) if not c.params][: args.n + 1]
    times: dict[str, list[float]] = {"default": [], "fast": []}
    rows = []
    for i, c in enumerate(cands):
        side = "fast" if i % 2 else "default"
        if side == "fast":
            os.environ["COMPILER_PATH"] = fast_dir
        else:
            os.environ.pop("COMPILER_PATH", None)
        t0 = time.perf_counter()
        k = get_kernel(c, None, CompilePolicy(min_numel=0))
        fused_activation(k, x, compiled=True).backward(g)
        x.grad = None
        dt = time.perf_counter() - t0
        if i == 0:
            continue  # the first compile in a process pays Inductor's one-off start-up (ISA checks ...)
        times[side].append(dt)
        rows.append({"formula": c.formula, "linker": side, "compile_s": dt, "compile_error": k.compile_error})
        if not args.json:
            print(f"{side:8s} {dt:6.2f} s  {c.formula}", flush=True)
    os.environ["COMPILER_PATH"] = fast_dir
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"fast_linker": fast, "threads": args.threads, "torch": torch.__version__, "rows": rows,
           "median_default_s": med["default"], "median_fast_s": med["fast"],
           "ratio_default_over_fast": med["default"] / med["fast"]}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: default ld {med['default']:.2f} s, {fast} {med['fast']:.2f} s "
              f"({out['ratio_default_over_fast']:.2f}x)")


if __name__ == "__main__":
    main()
