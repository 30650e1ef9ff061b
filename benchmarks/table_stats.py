"""The distribution of a tabular benchmark (actsearch.tabular.table_statistics): per task the candidates
that beat or lose to ReLU, GELU and SiLU significantly (paired t-test over the table's seeds, Holm over
the candidates; Benjamini-Hochberg beside it), the Spearman correlation between tasks, where the catalog's named activations rank.

Usage: python benchmarks/table_stats.py TABLE.json.gz [--json]
"""
import argparse
import json

from actsearch.tabular import load_table, table_statistics


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    s = table_statistics(load_table(args.table))
    if args.json:
        print(json.dumps(s, indent=2))
        return s
    print(f"{s['valid']} valid of {s['candidates']} candidates, {s['seeds']} paired seeds, Holm at {s['alpha']}")
    print("| task | baseline | baseline mean | better (Holm) | worse (Holm) | better (BH-FDR) | worse (BH-FDR) "
          "| better (p < alpha, uncorrected) |")
    print("|---|---|---|---|---|---|---|---|")
    for t, d in s["tasks"].items():
        for b, v in d["baselines"].items():
            print(f"| {t} | {b} | {v['mean']:.4f} | {v['better']} | {v['worse']} | {v['better_fdr']} | "
                  f"{v['worse_fdr']} | {v['better_raw']} |")
        if d["best"]:
            print(f"| {t} | best candidate: `{d['best']['formula']}` score {d['best']['score']:+.4f} | | | | | | |")
    for pair, rho in s["spearman"].items():
        print(f"Spearman {pair}: {rho:+.3f}")
    for c in s["catalog"]:
        print(f"catalog {c['name']}: rank {c['rank']} of {c['of']} (score {c['score']:+.3f})")
    return s


if __name__ == "__main__":
    main()
