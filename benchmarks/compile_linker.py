"""Compile time per new candidate with the default linker vs the fast one (kernels/inductor.py), side by side.

One process, Inductor's caches off; each candidate (catalog + random screened) is compiled twice, once
per linker, in alternating order, so every pair sees the same formula and nearly the same machine state.
Prints each pair and the medians; --json prints one object.

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
    ap.add_argument("--n", type=int, default=16, help="candidates, each compiled once per linker")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-linker-")
    import torch

    from actsearch.kernels.bench import suite_candidates
    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.fused import CompiledKernel, CompilePolicy, fused_activation
    from actsearch.kernels.inductor import use_fast_linker

    fast = use_fast_linker()
    if fast is None:
        sys.exit("no fast linker (mold, ld.lld, ld.gold) on PATH, or COMPILER_PATH / ACTSEARCH_LINKER=default set")
    fast_dir = os.environ["COMPILER_PATH"]
    torch.set_num_threads(args.threads)
    # the same formula compiles twice: the FX-graph and AOTAutograd caches would make the second a hit
    torch._inductor.config.force_disable_caches = True
    x = torch.randn(4096, requires_grad=True)
    g = torch.randn(4096)
    cands = [c for c in suite_candidates(max(6, args.n)) if not c.params][: args.n + 1]

    def compile_seconds(c, side: str) -> tuple[float, object]:
        if side == "fast":
            os.environ["COMPILER_PATH"] = fast_dir
        else:
            os.environ.pop("COMPILER_PATH", None)
        k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
        t0 = time.perf_counter()
        fused_activation(k, x, compiled=True).backward(g)
        x.grad = None
        return time.perf_counter() - t0, k.compile_error

    compile_seconds(cands[0], "default")  # Inductor's one-off start-up (ISA checks ...), not timed
    times: dict[str, list[float]] = {"default": [], "fast": []}
    rows = []
    for i, c in enumerate(cands[1:]):
        row = {"formula": c.formula}
        for side in (("default", "fast") if i % 2 else ("fast", "default")):
            row[f"{side}_s"], err = compile_seconds(c, side)
            times[side].append(row[f"{side}_s"])
            row["compile_error"] = row.get("compile_error") or err
        rows.append(row)
        if not args.json:
            print(f"default {row['default_s']:5.2f} s  fast {row['fast_s']:5.2f} s  {c.formula}", flush=True)
    os.environ["COMPILER_PATH"] = fast_dir
    med = {k: statistics.median(v) for k, v in times.items()}
    saved = statistics.median(r["default_s"] - r["fast_s"] for r in rows)
    out = {"fast_linker": fast, "threads": args.threads, "torch": torch.__version__, "rows": rows,
           "median_default_s": med["default"], "median_fast_s": med["fast"],
           "ratio_default_over_fast": med["default"] / med["fast"], "median_paired_saving_s": saved}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: default ld {med['default']:.2f} s, {fast} {med['fast']:.2f} s "
              f"({out['ratio_default_over_fast']:.2f}x); median saving per pair {saved:.2f} s")


if __name__ == "__main__":
    main()
