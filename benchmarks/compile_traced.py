"""Compile time per new candidate: torch.compile (Dynamo + AOTAutograd + Inductor) vs traced graphs
(make_fx + Inductor's compile_fx_inner, kernels.inductor.TracedGraph).

One process, Inductor's caches off; each candidate (catalog + random screened, parametric ones
included) is compiled once per side, in alternating order (kernels.bench.paired_compile_seconds).
The fast linker and ELEMENTWISE_OPTIONS are on for both; only the front end differs.

    python benchmarks/compile_traced.py [--n 16] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="candidates, each compiled once per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-traced-")
    from actsearch.kernels import inductor
    from actsearch.kernels.bench import paired_compile_seconds, suite_candidates

    inductor.prepare_inductor()
    default = inductor.TRACED_GRAPHS

    def side(traced: bool):
        def setup():
            inductor.TRACED_GRAPHS = traced
        return setup

    show = None if args.json else (
        lambda r: print(f"torch.compile {r['torch_compile_s']:5.2f} s  traced {r['traced_s']:5.2f} s  "
                        f"{r['formula']}", flush=True))
    try:
        out = paired_compile_seconds(suite_candidates(max(6, args.n))[: args.n + 1],
                                     {"torch_compile": side(False), "traced": side(True)}, args.threads, show)
    finally:
        inductor.TRACED_GRAPHS = default
    out["ratio_torch_compile_over_traced"] = out["median_torch_compile_s"] / out["median_traced_s"]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: torch.compile {out['median_torch_compile_s']:.2f} s, traced "
              f"{out['median_traced_s']:.2f} s ({out['ratio_torch_compile_over_traced']:.2f}x); median saving "
              f"per pair {out['median_paired_saving_s']:.2f} s; traced faster in {out['traced_faster_pairs']} "
              f"of {out['pairs']}")


if __name__ == "__main__":
    main()
