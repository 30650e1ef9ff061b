"""Benchmark of the formula core: parse + canonicalize + fingerprint of random formulas.

Formulas are random texts drawn from the Swish/PANGAEA vocabularies (unary and binary primitive calls,
operators and literals), seeded, so every run measures the same workload.
"""
from __future__ import annotations

import random
import statistics
import time

from actsearch.primitives import PRIMITIVES


def random_formula(rng: random.Random, depth: int = 3) -> str:
    """A random formula text: unary/binary primitive calls over x, operators and small literals."""
    unary = [p.name for p in PRIMITIVES.values() if p.kind == "unary" and not p.params and p.name != "identity"]
    binary = [p.name for p in PRIMITIVES.values() if p.kind in ("binary", "nary") and not p.params]

    def gen(d: int) -> str:
        r = rng.random()
        if d == 0 or r < 0.2:
            return "x" if rng.random() < 0.85 else f"{rng.choice([0.5, 1, 2, 3])}"
        if r < 0.6:
            return f"{rng.choice(unary)}({gen(d - 1)})"
        if r < 0.8:
            return f"{rng.choice(binary)}({gen(d - 1)}, {gen(d - 1)})"
        return f"({gen(d - 1)} {rng.choice('+-*/')} {gen(d - 1)})"

    return gen(depth)


def random_screened_candidates(n: int, seed: int, min_length: int = 0, exclude_ids=()):
    """n distinct scalar candidates drawn with random_formula that pass screening (same seed, same list)."""
    from actsearch.formula import FormulaError, parse_formula
    from actsearch.screening import screen_candidate

    rng, seen, out = random.Random(seed), set(exclude_ids), []
    while len(out) < n:
        try:
            c = parse_formula(random_formula(rng))
        except FormulaError:
            continue
        if c.id in seen or c.is_tensor_op or len(c.formula) < min_length or not screen_candidate(c).passed:
            continue
        seen.add(c.id)
        out.append(c)
    return out


def run(n: int = 1000, seed: int = 0, repeats: int = 3) -> dict:
    from actsearch.formula import FormulaError, parse_formula

    rng = random.Random(seed)
    texts = [random_formula(rng) for _ in range(n)]
    times, ok, refused, ids = [], 0, 0, set()
    for rep in range(repeats):
        # Each repeat is cold for the parser/canonicalizer/fingerprint (no result caching across calls).
        t0 = time.perf_counter()
        ok = refused = 0
        ids.clear()
        for t in texts:
            try:
                c = parse_formula(t)
                ids.add(c.id)  # forces canonical form + fingerprint
                ok += 1
            except FormulaError:
                refused += 1
        times.append(time.perf_counter() - t0)
    return {"n": n, "seed": seed, "parsed": ok, "refused": refused, "distinct_ids": len(ids),
            "seconds": min(times), "seconds_all": times, "ms_per_formula": 1000 * min(times) / n,
            "median_seconds": statistics.median(times), "target_seconds": 2.0,
            "met_target": min(times) < 2.0, "examples": texts[:5]}
