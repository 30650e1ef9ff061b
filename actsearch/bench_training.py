"""`actsearch bench train`: candidate trainings per minute, population-batched vs one at a time.

Both sides make the same K x S trainings (K candidates: catalog activations and random screened
candidates; S seeds each, as `evaluate` and a search train them) with the same budget and thread count,
in the same process, one after the other:
  alone    train_population(task, [member]) for each (candidate, seed) in turn
  batched  train_population(task, all K*S members) once
Kernels are generated before either side is timed.  The alone side runs each candidate's own fused op
(uncompiled at these sizes, as CompilePolicy decides); the batched side compiles one population kernel
for all candidates (kernels/population.py), and that compile is inside its time.  Inductor's first
compile in a process is paid before either side and reported separately (`inductor_warmup_s`); the
same population trained again (`batched_compiled_s`) shows the cost without the compile.  The batched results are checked against the alone results (same
accuracies to float tolerance) so the speed is not bought with a different computation.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Optional

CATALOG_MEMBERS = ["silu", "gelu", "mish", "elu", "swish_beta", "softplus", "hardswish", "gelu_tanh"]


def bench_candidates(k: int, seed: int = 0):
    from actsearch.bench_formula import random_screened_candidates
    from actsearch.catalog import load_catalog

    cat = load_catalog()
    out = [cat[n].candidate for n in CATALOG_MEMBERS if n in cat][:k]
    if len(out) < k:
        out += random_screened_candidates(k - len(out), seed, exclude_ids={c.id for c in out})
    return out


def run(task: str = "mnist1d-mlp", population: int = 16, seeds: int = 3, steps: Optional[int] = None,
        threads: int = 2, seed: int = 0, progress=None) -> dict:
    # A fresh Inductor cache for this run: a population compiled by an earlier run would otherwise load
    # from the FX graph cache and the batched side's compile time would not be a new population's.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-train-inductor-")
    import torch

    from actsearch.population import Member, make_activation
    from actsearch.tasks import get_task
    from actsearch.training import train_population

    torch.set_num_threads(threads)
    t = get_task(task)
    t.data()
    say = progress or (lambda msg: None)
    cands = bench_candidates(population, seed)
    members = [Member(make_activation(c), s) for c in cands for s in range(seeds)]
    steps = int(steps or t.budget.steps)

    # Inductor's first compile in a process (~10 s) is a once-per-process cost (a search worker pays it
    # once), not a per-population one: pay it before either side is timed, and report it.
    from actsearch.formula import parse_formula
    from actsearch.kernels.fused import get_kernel

    t0 = time.perf_counter()
    get_kernel(parse_formula("x*tanh(x) + 1")).forward_with_derivative(torch.randn(8, 8), compiled=True)
    warmup_s = time.perf_counter() - t0

    say(f"one at a time: {len(cands)} candidates x {seeds} seeds x {steps} steps")
    alone, t0 = [], time.perf_counter()
    for m in members:
        alone.extend(train_population(t, [m], steps=steps))
    alone_s = time.perf_counter() - t0

    say(f"batched: one population of {len(members)} (compiles one population kernel)")
    t0 = time.perf_counter()
    batched = train_population(t, members, steps=steps)
    batched_s = time.perf_counter() - t0

    say("batched again: the same population, kernel compiled")
    t0 = time.perf_counter()
    train_population(t, members, steps=steps)
    batched_warm_s = time.perf_counter() - t0

    max_diff = max(abs(a.accuracy - b.accuracy) for a, b in zip(alone, batched))
    rows = [{"formula": c.formula, "seed": m.seed, "accuracy_alone": a.accuracy, "accuracy_batched": b.accuracy,
             "rejected": a.rejected}
            for c, m, a, b in zip([c for c in cands for _ in range(seeds)], members, alone, batched)]
    n = len(members)
    return {"task": task, "candidates_k": len(cands), "seeds": seeds, "population": n, "steps": steps, "threads": threads, "torch": torch.__version__,
            "alone_s": alone_s, "batched_s": batched_s,
            "alone_per_min": 60 * n / alone_s, "batched_per_min": 60 * n / batched_s,
            "ratio": alone_s / batched_s, "max_accuracy_diff": max_diff,
            "batched_compiled_s": batched_warm_s, "ratio_compiled": alone_s / batched_warm_s,
            "compile_s": batched_s - batched_warm_s, "inductor_warmup_s": warmup_s,
            "rejected": sum(1 for r in alone if r.rejected), "trainings": rows}
