"""Compile time per new candidate: torch.compile (Dynamo + AOTAutograd + Inductor) vs traced graphs
(make_fx + Inductor's compile_fx_inner, kernels.inductor.TracedGraph).

One process, Inductor's caches off; each candidate (catalog + random screened, parametric ones
included) is compiled once per side, in alternating order (kernels.bench.paired_compile_seconds).
The fast linker and ELEMENTWISE_OPTIONS are on for both; only the front end differs.
With --with-backward: candidates with learnable parameters (catalog), both sides traced: their forward
and backward graphs compiled one after the other vs built together (kernels.fused.BUILD_WITH_BACKWARD).
With --population K: population graphs (kernels/population.py, static shapes) of K candidates each,
3 rows of 10,000 elements per candidate, --trials populations, each compiled once per side
(alternating); also the largest output difference between the sides and their run times, interleaved.

    python benchmarks/compile_traced.py [--n 16] [--with-backward] [--population K [--trials 3]] [--json]
"""
from __future__ import annotations

import json
import os
import tempfile


def main() -> None:
    from actsearch.kernels.bench import paired_compile_args, report_paired_compile, suite_candidates

    def extra(ap):
        ap.add_argument("--population", type=int, default=0, help="population graphs of this many candidates")
        ap.add_argument("--trials", type=int, default=3, help="populations compiled (with --population)")
        ap.add_argument("--with-backward", action="store_true",
                        help="parametric candidates: graphs one after the other vs built together")

    args = paired_compile_args(__doc__, extra=extra)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-traced-")
    if args.population:
        return population(args)
    from actsearch.kernels import inductor

    inductor.prepare_inductor()
    default = inductor.TRACED_GRAPHS
    if args.with_backward:
        return with_backward(args)

    def side(traced: bool):
        def setup():
            inductor.TRACED_GRAPHS = traced
        return setup

    report_paired_compile(suite_candidates(max(6, args.n))[: args.n + 1],
                          {"torch_compile": side(False), "traced": side(True)},
                          {"torch_compile": "torch.compile", "traced": "traced"}, args.threads, args.json,
                          restore=side(default))


def with_backward(args) -> None:
    from actsearch.catalog import load_catalog
    from actsearch.kernels import fused
    from actsearch.kernels.bench import report_paired_compile

    default = fused.BUILD_WITH_BACKWARD

    def side(together: bool):
        def setup():
            fused.BUILD_WITH_BACKWARD = together
        return setup

    cands = [e.candidate for e in load_catalog().values() if e.candidate.params][: args.n + 1]
    report_paired_compile(cands, {"one_by_one": side(False), "together": side(True)},
                          {"one_by_one": "one after the other", "together": "built together"}, args.threads,
                          args.json, restore=side(default))


def population(args) -> None:
    import statistics
    import time

    import torch

    from actsearch.kernels import inductor
    from actsearch.kernels.bench import _timeit_interleaved, suite_candidates
    from actsearch.kernels.fused import CompiledKernel
    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.population import PopulationKernel

    torch.set_num_threads(args.threads)
    inductor.prepare_inductor()
    default = inductor.TRACED_GRAPHS
    k = args.population
    cands = suite_candidates(k * (args.trials + 1), seed=11)
    rows_out = []

    def make(cs):
        kernels = [CompiledKernel(generate_source(c)) for c in cs]
        return PopulationKernel(kernels, [(3 * i, 3 * i + 3) for i in range(len(kernels))])

    def compile_once(cs, traced, x, params):
        inductor.TRACED_GRAPHS = traced
        pk = make(cs)
        t0 = time.perf_counter()
        out = pk.forward_with_derivative(x, *params)
        return time.perf_counter() - t0, out, pk

    try:
        with torch._inductor.config.patch(force_disable_caches=True):
            for t in range(args.trials + 1):  # the first population only absorbs Inductor's start-up
                cs = cands[t * k:(t + 1) * k]
                pk = make(cs)
                x = torch.randn(pk.rows, 10_000)
                params = [torch.full((b - a, 1), 1.0 + 0.1 * j) for (a, b), n in zip(pk.bounds, pk.n_params)
                          for j in range(n)]
                sides = {}
                for traced in ((True, False) if t % 2 else (False, True)):
                    sides[traced] = compile_once(cs, traced, x, params)
                if t == 0:
                    continue
                diff = max(float((a - b).abs().max()) for a, b in zip(sides[True][1], sides[False][1]))
                fns = {name: (lambda pk=sides[traced][2]: pk.forward_with_derivative(x, *params))
                       for name, traced in (("torch_compile", False), ("traced", True))}
                run = _timeit_interleaved(fns, reps=15)
                row = {"candidates": len(cs), "torch_compile_s": sides[False][0], "traced_s": sides[True][0],
                       "max_abs_difference": diff, "torch_compile_run_ms": run["torch_compile"],
                       "traced_run_ms": run["traced"]}
                rows_out.append(row)
                if not args.json:
                    print(f"population of {len(cs)}: compile torch.compile {row['torch_compile_s']:.2f} s, traced "
                          f"{row['traced_s']:.2f} s; outputs differ by {diff:.1e}; run {run['torch_compile']:.2f} "
                          f"vs {run['traced']:.2f} ms", flush=True)
    finally:
        inductor.TRACED_GRAPHS = default
    out = {"threads": args.threads, "torch": torch.__version__, "rows": rows_out,
           "median_torch_compile_s": statistics.median(r["torch_compile_s"] for r in rows_out),
           "median_traced_s": statistics.median(r["traced_s"] for r in rows_out)}
    print(json.dumps(out) if args.json else
          f"median population compile: torch.compile {out['median_torch_compile_s']:.2f} s, traced "
          f"{out['median_traced_s']:.2f} s")


if __name__ == "__main__":
    main()
