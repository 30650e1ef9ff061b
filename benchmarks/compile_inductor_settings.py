"""Compile time per new candidate with Inductor as torch ships it vs as kernels/inductor.py sets it up.

"torch": INDUCTOR_OPTIONS only, DtypePropagationOpsHandler setting up its rules at every emitted op.
"actsearch": ELEMENTWISE_OPTIONS (values read twice are stored, not re-inlined) and the rule set-up
done once (skip_repeated_dtype_rule_setup).  One process, Inductor's caches off; each candidate
(catalog + random screened, parametric ones included) is compiled once per side, in alternating order
(kernels.bench.paired_compile_seconds).  The fast linker is on for both.

    python benchmarks/compile_inductor_settings.py [--n 16] [--json]
"""
from __future__ import annotations

import os
import tempfile


def main() -> None:
    from actsearch.kernels.bench import paired_compile_args, report_paired_compile, suite_candidates

    args = paired_compile_args(__doc__)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-settings-")
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    from actsearch.kernels import inductor

    inductor.prepare_inductor()
    wrapped = DtypePropagationOpsHandler.__init__
    original = getattr(wrapped, "_actsearch_original", wrapped)
    ours, theirs = dict(inductor.ELEMENTWISE_OPTIONS), dict(inductor.INDUCTOR_OPTIONS)

    def side(init, options):
        def setup():
            DtypePropagationOpsHandler.__init__ = init
            inductor.ELEMENTWISE_OPTIONS = options
        return setup

    report_paired_compile(suite_candidates(max(6, args.n))[: args.n + 1],
                          {"torch": side(original, theirs), "actsearch": side(wrapped, ours)},
                          {"torch": "torch's settings", "actsearch": "actsearch's"}, args.threads, args.json,
                          restore=side(wrapped, ours))


if __name__ == "__main__":
    main()
