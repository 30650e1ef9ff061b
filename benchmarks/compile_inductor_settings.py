"""Compile time per new candidate with Inductor as torch ships it vs as kernels/inductor.py sets it up.

"torch": INDUCTOR_OPTIONS only, DtypePropagationOpsHandler setting up its rules at every emitted op.
"actsearch": ELEMENTWISE_OPTIONS (values read twice are stored, not re-inlined) and the rule set-up
done once (skip_repeated_dtype_rule_setup).  One process, Inductor's caches off; each candidate
(catalog + random screened, parametric ones included) is compiled once per side, in alternating order,
so every pair sees the same formula and nearly the same machine state.  The fast linker is on for both.

    python benchmarks/compile_inductor_settings.py [--n 16] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="candidates, each compiled once per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-settings-")
    import torch
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    from actsearch.kernels import inductor
    from actsearch.kernels.bench import suite_candidates
    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.fused import CompiledKernel, CompilePolicy, fused_activation

    inductor.prepare_inductor()
    wrapped = DtypePropagationOpsHandler.__init__
    original = getattr(wrapped, "_actsearch_original", wrapped)
    ours = dict(inductor.ELEMENTWISE_OPTIONS)
    torch.set_num_threads(args.threads)
    # the same formula compiles twice: the FX-graph and AOTAutograd caches would make the second a hit
    torch._inductor.config.force_disable_caches = True
    x = torch.randn(4096, requires_grad=True)
    g = torch.randn(4096)
    cands = suite_candidates(max(6, args.n))[: args.n + 1]

    def compile_seconds(c, side: str) -> tuple[float, object]:
        DtypePropagationOpsHandler.__init__ = wrapped if side == "actsearch" else original
        inductor.ELEMENTWISE_OPTIONS = ours if side == "actsearch" else dict(inductor.INDUCTOR_OPTIONS)
        k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
        params = [torch.tensor(v, requires_grad=True) for v in c.params.values()]
        t0 = time.perf_counter()
        fused_activation(k, x, *params, compiled=True).backward(g)  # parametric: two graphs
        x.grad = None
        return time.perf_counter() - t0, k.compile_error

    try:
        compile_seconds(cands[0], "torch")  # Inductor's one-off start-up (ISA checks ...), not timed
        times: dict[str, list[float]] = {"torch": [], "actsearch": []}
        rows = []
        for i, c in enumerate(cands[1:]):
            row = {"formula": c.formula, "params": len(c.params)}
            for side in (("torch", "actsearch") if i % 2 else ("actsearch", "torch")):
                row[f"{side}_s"], err = compile_seconds(c, side)
                times[side].append(row[f"{side}_s"])
                row["compile_error"] = row.get("compile_error") or err
            rows.append(row)
            if not args.json:
                print(f"torch {row['torch_s']:5.2f} s  actsearch {row['actsearch_s']:5.2f} s  {c.formula}", flush=True)
    finally:
        DtypePropagationOpsHandler.__init__ = wrapped
        inductor.ELEMENTWISE_OPTIONS = ours
    med = {k: statistics.median(v) for k, v in times.items()}
    saved = statistics.median(r["torch_s"] - r["actsearch_s"] for r in rows)
    out = {"threads": args.threads, "torch": torch.__version__, "rows": rows,
           "median_torch_s": med["torch"], "median_actsearch_s": med["actsearch"],
           "ratio_torch_over_actsearch": med["torch"] / med["actsearch"], "median_paired_saving_s": saved,
           "actsearch_faster_pairs": sum(r["actsearch_s"] < r["torch_s"] for r in rows), "pairs": len(rows)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: torch's settings {med['torch']:.2f} s, actsearch's "
              f"{med['actsearch']:.2f} s ({out['ratio_torch_over_actsearch']:.2f}x); median saving per pair "
              f"{saved:.2f} s; actsearch faster in {out['actsearch_faster_pairs']} of {out['pairs']}")


if __name__ == "__main__":
    main()
