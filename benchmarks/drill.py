"""Reliability drill (issue 21): random candidates of every search space through parse, fingerprint,
screening, codegen, eager and compiled kernels; reports outcomes per space and reason code, and every
unexplained exception and NaN/Inf (actsearch/drill.py).

Usage: python benchmarks/drill.py [--n 500 | --total 10000] [--compiled-sample 20] [--seed 0]
                                  [--spaces swish,tree] [--json] [--out report.json]
--n is per space variant (each registered space, and `name[parametric]` where a space takes it);
--total splits that many candidates evenly over the variants.  Exit status 1 when the drill found an
unexplained exception or a NaN/Inf.
"""
import argparse
import math
import sys
import time

from actsearch.drill import run_drill, space_variants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--n", type=int, default=None, help="candidates per space variant (default 100)")
    size.add_argument("--total", type=int, default=None, help="candidates in all, split over the variants")
    ap.add_argument("--compiled-sample", type=int, default=10, help="passing candidates that also run compiled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spaces", default=None, help="comma-separated space names (default: every variant)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON document")
    ap.add_argument("--out", default=None, help="also write the JSON report to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    spaces = args.spaces.split(",") if args.spaces else None
    n = args.n if args.n is not None else 100
    if args.total is not None:
        n = math.ceil(args.total / len(space_variants(spaces)))
    t0 = time.perf_counter()

    def progress(space, i, total):
        if not args.quiet and (i % 250 == 0 or i == total):
            print(f"[{time.perf_counter() - t0:7.1f} s] {space}: {i}/{total}", file=sys.stderr, flush=True)

    report = run_drill(n, spaces=spaces, compiled_sample=args.compiled_sample, seed=args.seed, progress=progress)
    text = report.to_json(indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
