"""Compile time per new candidate with the default linker vs the fast one, or (--stubs) the fast linker
with vs without the libtorch stubs (kernels/inductor.py, _LD_SHIM), side by side.

One process, Inductor's caches off; each candidate without parameters (catalog + random screened) is
compiled twice, once per side, in alternating order, so every pair sees the same formula and nearly
the same machine state (kernels.bench.paired_compile_seconds).  Prints each pair and the medians;
--json prints one object.

    python benchmarks/compile_linker.py [--stubs] [--n 16] [--json]
"""
from __future__ import annotations

import os
import sys
import tempfile


def main() -> None:
    from actsearch.kernels.bench import paired_compile_args, report_paired_compile, suite_candidates

    args = paired_compile_args(__doc__, extra=lambda ap: ap.add_argument(
        "--stubs", action="store_true", help="fast linker without vs with the libtorch stubs"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="actsearch-bench-linker-")
    from actsearch.kernels.inductor import use_fast_linker

    fast = use_fast_linker()
    if fast is None:
        sys.exit("no linker found, or COMPILER_PATH / ACTSEARCH_LINKER=default set")
    fast_dir = os.environ["COMPILER_PATH"]
    stubs = os.environ.pop("ACTSEARCH_LINK_STUBS", None)

    def env(name: str, value):
        return lambda: os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)

    def restore():
        os.environ["COMPILER_PATH"] = fast_dir
        env("ACTSEARCH_LINK_STUBS", stubs)()

    if args.stubs:
        sides = {"no_stubs": env("ACTSEARCH_LINK_STUBS", "0"), "stubs": env("ACTSEARCH_LINK_STUBS", None)}
        labels = {"no_stubs": os.path.basename(fast), "stubs": f"{os.path.basename(fast)}+stubs"}
    else:
        # the default linker is gcc's own, with neither shim nor stubs
        sides = {"default": env("COMPILER_PATH", None), "fast": env("COMPILER_PATH", fast_dir)}
        labels = {"default": "default ld", "fast": f"{os.path.basename(fast)}+stubs"}
    cands = [c for c in suite_candidates(max(6, args.n)) if not c.params][: args.n + 1]
    report_paired_compile(cands, sides, labels, args.threads, args.json, restore=restore, fast_linker=fast)


if __name__ == "__main__":
    main()
