"""Compile time per new candidate with Inductor as torch ships it vs as kernels/inductor.py sets it up.

"torch": INDUCTOR_OPTIONS only, DtypePropagationOpsHandler setting up its rules at every emitted op.
"actsearch": ELEMENTWISE_OPTIONS (values read twice are stored, not re-inlined) and the rule set-up
done once (skip_repeated_dtype_rule_setup).  One process, Inductor's caches off; each candidate
(catalog + random screened, parametric ones included) is compiled once per side, in alternating order
(kernels.bench.paired_compile_seconds).  The fast linker is on for both.

    python benchmarks/compile_inductor_settings.py [--n 16] [--json]
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

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-settings-")
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    from actsearch.kernels import inductor
    from actsearch.kernels.bench import paired_compile_seconds, suite_candidates

    inductor.prepare_inductor()
    wrapped = DtypePropagationOpsHandler.__init__
    original = getattr(wrapped, "_actsearch_original", wrapped)
    ours, theirs = dict(inductor.ELEMENTWISE_OPTIONS), dict(inductor.INDUCTOR_OPTIONS)

    def side(init, options):
        def setup():
            DtypePropagationOpsHandler.__init__ = init
            inductor.ELEMENTWISE_OPTIONS = options
        return setup

    show = None if args.json else (
        lambda r: print(f"torch {r['torch_s']:5.2f} s  actsearch {r['actsearch_s']:5.2f} s  {r['formula']}", flush=True))
    try:
        out = paired_compile_seconds(suite_candidates(max(6, args.n))[: args.n + 1],
                                     {"torch": side(original, theirs), "actsearch": side(wrapped, ours)},
                                     args.threads, show)
    finally:
        side(wrapped, ours)()
    out["ratio_torch_over_actsearch"] = out["median_torch_s"] / out["median_actsearch_s"]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: torch's settings {out['median_torch_s']:.2f} s, actsearch's "
              f"{out['median_actsearch_s']:.2f} s ({out['ratio_torch_over_actsearch']:.2f}x); median saving per "
              f"pair {out['median_paired_saving_s']:.2f} s; actsearch faster in {out['actsearch_faster_pairs']} "
              f"of {out['pairs']}")


if __name__ == "__main__":
    main()
