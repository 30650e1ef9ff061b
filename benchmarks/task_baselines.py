"""Each task's budget, wall time of one training alone, and baseline accuracy spread across seeds.

Usage: python benchmarks/task_baselines.py [--seeds 5] [--threads 2] [--tasks a,b] [--json]
Prints a markdown table (the README's task table) or, with --json, the numbers.
"""
import argparse
import json
import statistics
import time

import torch

from actsearch.population import Member, make_activation
from actsearch.tasks import TASKS, get_task
from actsearch.training import train_population


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: every task)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] if args.tasks else list(TASKS)
    tasks = [get_task(n) for n in names]
    rows = []
    for task in tasks:
        t0 = time.perf_counter()
        task.data()
        data_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_population(task, [Member(make_activation("relu"), 0)])
        alone_s = time.perf_counter() - t0
        members = [Member(make_activation(b), s) for b in ("relu", "gelu", "silu") for s in range(args.seeds)]
        t0 = time.perf_counter()
        res = train_population(task, members)
        batched_s = time.perf_counter() - t0
        acc = {b: [r.accuracy for m, r in zip(members, res) if m.activation.key == b] for b in ("relu", "gelu", "silu")}
        rows.append({"task": task.name, "steps": task.budget.steps, "batch": task.budget.batch_size,
                     "data_s": data_s, "relu_alone_s": alone_s, "population_s": batched_s,
                     "population": len(members), "chance": task.chance,
                     **{f"{b}_mean": statistics.fmean(v) for b, v in acc.items()},
                     **{f"{b}_std": statistics.stdev(v) for b, v in acc.items()},
                     "relu_per_seed": acc["relu"]})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| task | steps x batch | one ReLU training | {args.seeds} seeds x 3 baselines batched | ReLU | GELU | SiLU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['steps']} x {r['batch']} | {r['relu_alone_s']:.1f} s | {r['population_s']:.1f} s | "
              + " | ".join(f"{r[b + '_mean']:.3f} ± {r[b + '_std']:.3f}" for b in ("relu", "gelu", "silu")) + " |")


if __name__ == "__main__":
    main()
