"""Parametric families from the literature against ReLU / GELU / SiLU (issue 18, item 5): PAU(5,4)
initialised to leaky ReLU (actsearch.families), APA, xGELU, PolyReLU and ReLU^2 (catalog entries), trained
with learnable parameters on each task with paired seeds (all candidates and the baselines of a task in
one population: actsearch.evaluation.evaluate_many).  Prints a markdown table: per task, each candidate's
mean accuracy and its paired difference with each baseline, 95% CI (Student t over seeds), and the
verdict; writes the reports with --out.

Usage: python benchmarks/bench_families.py [--tasks mnist1d-mlp,tiny-lm] [--seeds 5] [--steps N]
           [--out FILE.json] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

CATALOG_NAMES = ("apa", "xgelu", "polyrelu", "squared_relu")


def candidates() -> dict:
    from actsearch.catalog import load_catalog
    from actsearch.families import rational_candidate

    catalog = load_catalog()
    out = {"pau_5_4_leaky_relu": rational_candidate(5, 4, "leaky_relu")}
    out.update({name: catalog[name].candidate for name in CATALOG_NAMES})
    return out


def run(tasks: Sequence[str], seeds: int, steps: Optional[int] = None) -> dict:
    from actsearch.evaluation import evaluate_many

    cands = candidates()
    t0 = time.time()
    reports = evaluate_many(list(cands.values()), tasks, seeds, steps=steps, cache=False)
    return {"tasks": list(tasks), "seeds": seeds, "steps": steps, "wall_s": time.time() - t0,
            "candidates": {name: {"formula": c.formula, "params": dict(c.params), "report": r}
                           for (name, c), r in zip(cands.items(), reports)}}


def markdown(result: dict) -> str:
    lines = []
    for t in result["tasks"]:
        first = next(iter(result["candidates"].values()))["report"]["tasks"][t]
        base = first["baselines"]
        lines += [f"{t} ({result['seeds']} paired seeds; baselines: "
                  + ", ".join(f"{b} {v['mean']:.4f}" for b, v in base.items()) + ")", "",
                  "| candidate | mean | vs ReLU | vs GELU | vs SiLU |", "|---|---|---|---|---|"]
        for name, d in result["candidates"].items():
            rep = d["report"]["tasks"][t]
            if rep.get("rejected"):
                lines.append(f"| {name} | rejected: {rep['rejected']} | | | |")
                continue
            cells = []
            for b in ("relu", "gelu", "silu"):
                v = rep["vs"].get(b)
                cells.append("-" if not v else f"{v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] {v['verdict']}")
            lines.append(f"| {name} | {rep['candidate']['mean']:.4f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"wall time {result['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="mnist1d-mlp,tiny-lm")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    result = run([t.strip() for t in a.tasks.split(",") if t.strip()], a.seeds, a.steps)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print(json.dumps(result, indent=1, default=str) if a.json else markdown(result), file=sys.stdout)
    return result


if __name__ == "__main__":
    main()
