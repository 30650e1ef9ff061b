"""Figures of a strategy comparison on a table (the JSON that bench_table_strategies.py --out writes):

  left   best true score found vs evaluations: median over search seeds (line) and IQR (band)
  right  evaluations until a top-1% candidate was evaluated, one box per strategy (never found within the
         budget drawn at budget + 1, their count in the label)

Usage: python benchmarks/plot_table_strategies.py RESULT.json --out FIGURE.png [--json]
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

import numpy as np


def curves(result: dict) -> dict:
    """strategy -> (evaluations 1..budget, median, q25, q75) of the best-true-score curves; a search that
    ended early keeps its last value."""
    budget = result["settings"]["budget"]
    out = {}
    for s, d in result["strategies"].items():
        rows = []
        for r in d["runs"]:
            c = [v if v is not None else np.nan for v in r["curve"]][:budget]
            c += [c[-1] if c else np.nan] * (budget - len(c))
            rows.append(c)
        a = np.array(rows, dtype=float)
        with np.errstate(all="ignore"):
            q25, med, q75 = np.nanpercentile(a, [25, 50, 75], axis=0)
        out[s] = (np.arange(1, budget + 1), med, q25, q75)
    return out


def plot(result: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = result["settings"]["budget"]
    info = result["table"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    for s, (x, med, q25, q75) in curves(result).items():
        (line,) = ax.plot(x, med, label=s)
        ax.fill_between(x, q25, q75, alpha=0.2, color=line.get_color())
    ax.axhline(info["top1_threshold"], color="grey", ls="--", lw=1, label="top-1% threshold")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best true score so far (0 = ReLU)")
    ax.set_title(f"{info['space']} table, {', '.join(info['tasks'])}: median and IQR over "
                 f"{result['settings']['seeds']} search seeds", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    data, labels = [], []
    for s, d in result["strategies"].items():
        runs = d["runs"]
        data.append([r["evals_to_top1"] if r["evals_to_top1"] is not None else budget + 1 for r in runs])
        never = sum(1 for r in runs if r["evals_to_top1"] is None)
        labels.append(f"{s}\n({never} never)" if never else s)
    bx.boxplot(data, showfliers=True)
    bx.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    bx.set_ylabel("evaluations to a top-1% candidate")
    bx.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    with open(a.result) as f:
        result = json.load(f)
    out = {"figure": plot(result, a.out),
           "median_evals_to_top1": {s: d["summary"]["evals_to_top1"]["median"]
                                    for s, d in result["strategies"].items()}}
    print(json.dumps(out, indent=1) if a.json else f"wrote {out['figure']}")
    return out


if __name__ == "__main__":
    main()
