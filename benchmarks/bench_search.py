"""Search benchmarks (issue #5), each measured side by side in one run.

  sample      evaluations needed to find a candidate not significantly worse than SiLU on mnist1d-mlp
              (paired 95% CI vs SiLU not entirely below 0, not rejected), and by two stricter criteria
              (mean at least SiLU's; significantly better than ReLU): evolution vs random, median over
              search seeds; a budget + 1 means not found
  throughput  random pangaea candidates (a different seed per path, so no path reuses another's compiled
              kernels) evaluated by evaluate_many called directly, by the driver in-process, and on
              embedded Ray with 1 worker x 2 threads and 2 workers x 1 thread: candidates per minute in
              all and in steady state (after each worker's first batch, which carries its warm-up)

Usage: python benchmarks/bench_search.py [--part sample|throughput|all] [--steps 500] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


CRITERIA = {
    # the criterion: the paired 95% CI vs SiLU is not entirely below 0
    "not_worse_than_silu": lambda t: t["vs"]["silu"]["verdict"] != "worse",
    # stricter ones, which separate strategies better at small budgets
    "mean_at_least_silu": lambda t: t["candidate"]["mean"] >= t["baselines"]["silu"]["mean"],
    "better_than_relu": lambda t: t["vs"]["relu"]["verdict"] == "better",
}


def first_hit(run_dir: str, criterion: str = "not_worse_than_silu"):
    """The evaluation number (arrival order) of the first non-rejected candidate meeting `criterion`."""
    from actsearch.store import ResultStore

    store = ResultStore(run_dir, create=False)
    hit = None
    for r in sorted(store.ranked(), key=lambda r: r["order"]):
        task = next(iter(r["report"].get("tasks", {}).values()), None)
        if r["rejected"] is None and task and CRITERIA[criterion](task):
            hit = r["order"]
            break
    store.close()
    return hit


def steady_rate(run_dir: str, skip: int) -> float:
    """Candidates per minute from the store's result timestamps, after the first `skip` results (each
    worker's first batch carries its one-time warm-up)."""
    import sqlite3

    with sqlite3.connect(os.path.join(run_dir, "results.db")) as con:
        t = [r[0] for r in con.execute("SELECT finished FROM results ORDER BY finished")]
    if len(t) <= skip + 1:
        return float("nan")
    return 60 * (len(t) - skip) / (t[-1] - t[skip - 1]) if skip else 60 * (len(t) - 1) / (t[-1] - t[0])


def sample_efficiency(search_seeds, budget: int, steps: int, seeds: int, batch: int) -> dict:
    from actsearch.search import SearchConfig, SearchDriver

    out = {}
    for strategy, options in (("evolution", {"population": 8, "tournament": 3}), ("random", {})):
        hits = []
        for s in search_seeds:
            run = tempfile.mkdtemp(prefix=f"bench-{strategy}-{s}-")
            cfg = SearchConfig(space="swish", strategy=strategy, strategy_options=options, tasks=["mnist1d-mlp"],
                               budget=budget, seeds=seeds, steps=steps, batch=batch, seed=s,
                               baselines=["relu", "silu"])
            t0 = time.perf_counter()
            SearchDriver(cfg, os.path.join(run, "r")).run()
            hit = {k: first_hit(os.path.join(run, "r"), k) for k in CRITERIA}
            hits.append({"search_seed": s, "first_hit": hit, "seconds": time.perf_counter() - t0,
                         "run_dir": os.path.join(run, "r")})
            print(f"{strategy} seed {s}: first hit (evaluation number) {hit}", file=sys.stderr, flush=True)
        out[strategy] = {"runs": hits, "median_evaluations": {
            k: statistics.median(h["first_hit"][k] if h["first_hit"][k] is not None else budget + 1 for h in hits)
            for k in CRITERIA}}
    return out


def throughput(n: int, steps: int, seeds: int, batch: int) -> dict:
    import torch

    from actsearch.evaluation import BaselineCache, evaluate_many
    from actsearch.search import SearchConfig, SearchDriver
    from actsearch.search_spaces import get_space

    space = get_space("pangaea")
    from actsearch.screening import screen_candidate

    # every path gets its own random candidates (different seeds), so none reuses another's compiled
    # population kernels; the direct path draws them the way the driver does
    import random

    rng = random.Random(100)
    cands, seen = [], set()
    while len(cands) < n:
        try:
            c = space.candidate(space.sample(rng))
        except Exception:  # noqa: BLE001 - invalid genomes are skipped, as the driver does
            continue
        if c.id not in seen and screen_candidate(c).passed:
            seen.add(c.id)
            cands.append(c)
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    torch.set_num_threads(2)
    # baselines once, so every variant below measures candidates only
    evaluate_many(cands[:1], "mnist1d-mlp", seeds=seeds, baselines=["relu"], steps=steps, cache=BaselineCache(cache))
    rows, steady = {}, {}
    t0 = time.perf_counter()
    stamps = []
    for i in range(0, n, batch):
        evaluate_many(cands[i:i + batch], "mnist1d-mlp", seeds=seeds, baselines=["relu"], steps=steps,
                      cache=BaselineCache(cache))
        stamps.append(time.perf_counter())
    rows["direct evaluate_many"] = time.perf_counter() - t0
    # steady state: candidates per minute after the first batch (one-time warm-up excluded)
    steady["direct evaluate_many"] = 60 * batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    os.environ["ACTSEARCH_CACHE_DIR"] = cache
    for seed, (label, executor, workers) in enumerate((("driver, in-process", "local", 0),
                                                       ("Ray, 1 worker x 2 threads", "ray", 1),
                                                       ("Ray, 2 workers x 1 thread", "ray", 2)), start=1):
        run = tempfile.mkdtemp(prefix="bench-tp-")
        cfg = SearchConfig(space="pangaea", strategy="random", seed=seed, tasks=["mnist1d-mlp"], budget=n,
                           seeds=seeds, steps=steps, batch=batch, workers=workers, executor=executor)
        t0 = time.perf_counter()
        SearchDriver(cfg, os.path.join(run, "r")).run()
        rows[label] = time.perf_counter() - t0
        steady[label] = steady_rate(os.path.join(run, "r"), skip=batch * max(1, workers))
        print(f"{label}: {rows[label]:.1f} s, steady {steady[label]:.1f}/min", file=sys.stderr, flush=True)
    direct = rows["direct evaluate_many"]
    return {"candidates": n, "steps": steps, "seeds": seeds, "batch": batch,
            "seconds": rows, "per_min": {k: 60 * n / v for k, v in rows.items()}, "steady_per_min": steady,
            "overhead_s_per_evaluation": {k: (v - direct) / n for k, v in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["sample", "throughput", "all"])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--search-seeds", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=24, help="throughput: candidates evaluated per path")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {}
    if args.part in ("throughput", "all"):
        result["throughput"] = throughput(args.candidates, args.steps, seeds=2, batch=4)
    if args.part in ("sample", "all"):
        result["sample"] = sample_efficiency(range(args.search_seeds), args.budget, args.steps, seeds=3, batch=4)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
