"""`actsearch bench kernels`: fused compiled kernels vs eager autograd, measured side by side.

One run measures, with torch.set_num_threads(threads):
  suite     forward+backward of eager autograd (the generated formula, unfused: every op a kernel and
            every intermediate saved) vs the fused compiled op, on N-element fp32 tensors, for >= 20
            formulas (catalog + random screened candidates) and one tensor larger than the L3 cache;
            bytes saved for backward by each (saved_tensors_hooks, unique storages)
  builtins  generated SiLU/GELU/Mish (fused op) vs F.silu / F.gelu / F.mish, forward+backward
  bandwidth a measured copy gives bytes/s; the fused op must move >= 5 N floats (read x, write y;
            read x and grad, write grad_x), so bound_ms = 5*N*4 bytes / copy bandwidth; measured
            with the operands in cache (bound_ms) and with caches flushed (bound_cold_ms)
  compile   seconds to compile forward+backward of each new candidate after the first in this
            process (cold Inductor cache), and in a fresh process with the on-disk cache warm
  policy    compiled vs uncompiled fused op at small sizes: the break-even behind CompilePolicy
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

SUITE_CATALOG = ["silu", "gelu", "gelu_tanh", "mish", "elu", "selu", "softplus", "hardswish", "swish_beta",
                 "smelu", "serf", "logish", "tanhexp", "swish_max_sigmoid", "swish_cos_minus_x",
                 "swish_x_asinh_sq", "gcu", "snake"]
BUILTINS = [("silu", "silu(x)", "silu"), ("gelu", "gelu(x)", "gelu"), ("mish", "mish(x)", "mish")]


def _timeit(fn: Callable[[], None], reps: int, warmup: int = 1) -> float:
    return _timeit_interleaved({"fn": fn}, reps, warmup)["fn"]


def _timeit_interleaved(fns: dict[str, Callable[[], None]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median ms of each function, timed in alternation (a b a b ...): drift in machine load or memory
    bandwidth during the run falls on all of them alike instead of on whichever was timed second."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def paired_compile_seconds(cands, sides: dict[str, Callable[[], None]], threads: int = 2,
                           progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Compile each candidate once per side, sides alternating in order, Inductor's caches off, in this
    process: paired compile seconds per new candidate (benchmarks/compile_linker.py and
    compile_inductor_settings.py).  `sides` maps a name to what sets that side up before a compile;
    the first candidate only absorbs Inductor's one-off start-up (ISA checks ...) and is not timed."""
    import torch

    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.fused import CompiledKernel, CompilePolicy, fused_activation

    torch.set_num_threads(threads)
    x = torch.randn(4096, requires_grad=True)
    g = torch.randn(4096)
    names = list(sides)

    def compile_seconds(c, side: str):
        sides[side]()
        k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
        params = [torch.tensor(v, requires_grad=True) for v in c.params.values()]
        t0 = time.perf_counter()
        fused_activation(k, x, *params, compiled=True).backward(g)  # with parameters: two graphs
        x.grad = None
        return time.perf_counter() - t0, k.compile_error

    rows = []
    # the same formula compiles once per side: the FX-graph and AOTAutograd caches would make later hits
    from actsearch.kernels.torch_compat import inductor_config_patch

    with inductor_config_patch({"force_disable_caches": True}):
        compile_seconds(cands[0], names[0])
        for i, c in enumerate(cands[1:]):
            row = {"formula": c.formula, "params": len(c.params), "compile_error": None}
            for side in (names if i % 2 else names[::-1]):
                row[f"{side}_s"], err = compile_seconds(c, side)
                row["compile_error"] = row["compile_error"] or err
            rows.append(row)
            if progress:
                progress(row)
    a, b = names
    return {"threads": threads, "torch": torch.__version__, "rows": rows,
            **{f"median_{n}_s": statistics.median(r[f"{n}_s"] for r in rows) for n in names},
            "median_paired_saving_s": statistics.median(r[f"{a}_s"] - r[f"{b}_s"] for r in rows),
            f"{b}_faster_pairs": sum(r[f"{b}_s"] < r[f"{a}_s"] for r in rows), "pairs": len(rows)}


def paired_compile_args(doc: str, argv=None, extra: Optional[Callable] = None):
    """The command line the paired compile benchmarks share (benchmarks/compile_*.py): --n, --threads,
    --json, plus whatever `extra(parser)` adds."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="candidates, each compiled once per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    if extra is not None:
        extra(ap)
    return ap.parse_args(argv)


def report_paired_compile(cands, sides: dict[str, Callable[[], None]], labels: dict[str, str], threads: int,
                          as_json: bool, restore: Callable[[], None] = lambda: None, **extra) -> dict:
    """paired_compile_seconds with each pair printed as it finishes (unless as_json), restore() run
    afterwards, then the medians printed (or one JSON object with `extra` and the ratio)."""
    a, b = list(sides)
    show = None if as_json else (lambda r: print(
        "  ".join(f"{labels[n]} {r[f'{n}_s']:5.2f} s" for n in (a, b)) + f"  {r['formula']}", flush=True))
    try:
        out = paired_compile_seconds(cands, sides, threads, show)
    finally:
        restore()
    out.update(extra)
    ratio = out[f"ratio_{a}_over_{b}"] = out[f"median_{a}_s"] / out[f"median_{b}_s"]
    if as_json:
        print(json.dumps(out))
    else:
        print(f"median compile per new candidate: {labels[a]} {out[f'median_{a}_s']:.2f} s, {labels[b]} "
              f"{out[f'median_{b}_s']:.2f} s ({ratio:.2f}x); median saving per pair "
              f"{out['median_paired_saving_s']:.2f} s; {labels[b]} faster in {out[f'{b}_faster_pairs']} of "
              f"{out['pairs']}")
    return out


def _saved_bytes(run: Callable[[], None]) -> int:
    import torch

    seen: dict = {}

    def pack(t):
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def kernel_cost(candidate, numel: int = 2**18, reps: int = 7) -> float:
    """Forward+backward time of a candidate's fused op relative to F.relu's, measured side by side (in
    alternation, so load drift falls on both) on one fp32 tensor in this process (the search's cost
    objective).  The op runs uncompiled (the generated eager functions, f' saved in forward): compiling
    each candidate just to time it would cost ~1 s, and the uncompiled op's time tracks the number and
    price of the primitives it calls."""
    import torch

    from actsearch.kernels.fused import fused_activation, get_kernel

    k = get_kernel(candidate)
    x = torch.randn(numel, generator=torch.Generator().manual_seed(0)).requires_grad_()
    g = torch.ones(numel)
    params = [torch.tensor(float(v)) for v in candidate.params.values()]

    def fused():
        fused_activation(k, x, *params, compiled=False).backward(g)
        x.grad = None

    def relu():
        torch.relu(x).backward(g)
        x.grad = None

    t = _timeit_interleaved({"fused": fused, "relu": relu}, reps)
    return t["fused"] / t["relu"]


def suite_candidates(n_random: int, seed: int = 3):
    from actsearch.bench_formula import random_screened_candidates
    from actsearch.catalog import load_catalog

    cat = load_catalog()
    out = [cat[n].candidate for n in SUITE_CATALOG if n in cat]
    return out + random_screened_candidates(n_random, seed, min_length=12, exclude_ids={c.id for c in out})


def _pair(kernel, x, params, grad):
    """(eager fwd+bwd, fused fwd+bwd) closures over the same data."""
    from actsearch.kernels.fused import fused_activation

    def eager():
        y = kernel.eager_forward(x, *params)
        y.backward(grad)
        x.grad = None

    def fused():
        y = fused_activation(kernel, x, *params, compiled=True)
        y.backward(grad)
        x.grad = None

    return eager, fused


def run(numel: int = 4 * 2**20, big_numel: Optional[int] = 64 * 2**20, n_random: int = 6, reps: int = 7,
        threads: int = 2, quick: bool = False, cache_dir: Optional[str] = None, progress=None) -> dict:
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="actsearch-bench-")
    # A fresh Inductor cache for this run: "cold" compile times are cold, and the warm-cache check in a
    # new process reads exactly what this run wrote.  Set before torch compiles anything.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_dir, "inductor")
    import torch

    from actsearch.kernels.cache import KernelCache
    from actsearch.kernels.fused import CompilePolicy, get_kernel
    from actsearch.kernels.inductor import use_fast_linker

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cache = KernelCache(cache_dir)
    policy = CompilePolicy(min_numel=0)
    say = progress or (lambda msg: None)

    x = torch.randn(numel)
    grad = torch.randn(numel)
    xr = x.clone().requires_grad_()
    # Grow and touch the heap once (with the pinned allocator freed blocks stay mapped): otherwise the
    # first formula timed pays for faulting in the heap that every later one reuses (measured: 10.3 ms
    # vs 1.9 ms for the same fused SiLU forward).
    scratch = [torch.ones(numel) for _ in range(32)]
    del scratch

    # -- bandwidth from a measured copy
    dst = torch.empty_like(x)
    copy_ms = _timeit(lambda: dst.copy_(x), reps=reps * 2)
    bandwidth = 2 * numel * 4 / (copy_ms / 1000)  # bytes/s (read + write)
    bound_ms = 5 * numel * 4 / bandwidth * 1000
    # The same copy with the caches flushed first (a 256 MiB read between copies): x and dst come from
    # DRAM, as in the suite, where eager and fused alternate and each evicts the other's data (fused
    # x*sigmoid(x) measured 2.4 ms timed alone, 2.9 ms after an eager run or a 256 MiB read).
    flush = torch.ones(64 * 2**20)
    cold = []
    for _ in range(reps * 2):
        flush.sum()
        t0 = time.perf_counter()
        dst.copy_(x)
        cold.append(time.perf_counter() - t0)
    del flush
    copy_cold_ms = 1000 * statistics.median(cold)
    bandwidth_cold = 2 * numel * 4 / (copy_cold_ms / 1000)

    # -- suite
    cands = suite_candidates(n_random)
    rows, compile_s = [], []
    for i, c in enumerate(cands):
        say(f"[{i + 1}/{len(cands)}] {c.formula}")
        k = get_kernel(c, cache, policy)
        params = [torch.tensor(v, requires_grad=True) for v in c.params.values()]
        eager, fused = _pair(k, xr, params, grad)
        t0 = time.perf_counter()
        fused()  # first call compiles forward and backward
        compile_s.append(time.perf_counter() - t0)
        t = _timeit_interleaved({"eager": eager, "fused": fused}, reps)
        eager_ms, fused_ms = t["eager"], t["fused"]
        rows.append({"formula": c.formula, "id": c.id, "eager_ms": eager_ms, "fused_ms": fused_ms,
                     "speedup": eager_ms / fused_ms, "saved_bytes_eager": _saved_bytes(eager),
                     "saved_bytes_fused": _saved_bytes(fused), "compile_s": compile_s[-1],
                     "fused_vs_bound": fused_ms / bound_ms, "compile_error": k.compile_error})
    after_first = compile_s[1:]

    # -- builtins
    builtins = []
    for name, formula, fn in BUILTINS:
        from actsearch.formula import parse_formula

        k = get_kernel(parse_formula(formula), cache, policy)
        _, fused = _pair(k, xr, [], grad)
        f = getattr(torch.nn.functional, fn)

        def builtin(f=f):
            y = f(xr)
            y.backward(grad)
            xr.grad = None

        fused()
        t = _timeit_interleaved({"builtin": builtin, "generated": fused}, 2 * reps)
        b_ms, g_ms = t["builtin"], t["generated"]
        builtins.append({"name": name, "builtin_ms": b_ms, "generated_ms": g_ms, "ratio": g_ms / b_ms})

    # -- a tensor larger than L3
    big = None
    if big_numel:
        say(f"large tensor: {big_numel} elements")
        c = cands[0]
        k = get_kernel(c, cache, policy)
        xb = torch.randn(big_numel).requires_grad_()
        gb = torch.randn(big_numel)
        eager, fused = _pair(k, xb, [torch.tensor(v, requires_grad=True) for v in c.params.values()], gb)
        t = _timeit_interleaved({"eager": eager, "fused": fused}, max(2, reps // 2))
        e_ms, f_ms = t["eager"], t["fused"]
        big = {"formula": c.formula, "numel": big_numel, "eager_ms": e_ms, "fused_ms": f_ms, "speedup": e_ms / f_ms,
               "saved_bytes_eager": _saved_bytes(eager), "saved_bytes_fused": _saved_bytes(fused)}
        del xb, gb

    # -- compile policy: compiled vs uncompiled fused op at small sizes
    policy_rows = []
    if not quick:
        c = cands[0]
        k = get_kernel(c, cache, policy)
        from actsearch.kernels.fused import fused_activation

        for n in (1024, 4096, 16384, 65536, 262144):
            xs = torch.randn(n).requires_grad_()
            gs = torch.randn(n)
            ps = [torch.tensor(v, requires_grad=True) for v in c.params.values()]

            def step(compiled, xs=xs, gs=gs, ps=ps):
                fused_activation(k, xs, *ps, compiled=compiled).backward(gs)
                xs.grad = None

            policy_rows.append({"numel": n, "uncompiled_us": 1000 * _timeit(lambda: step(False), 20, 3),
                                "compiled_us": 1000 * _timeit(lambda: step(True), 20, 3)})

    # -- warm on-disk cache, in a fresh process
    say("warm-cache compile check in a fresh process")
    warm = warm_compile_times([c.formula for c in cands[: (4 if quick else 8)]],
                              [dict(c.params) for c in cands[: (4 if quick else 8)]], cache_dir, threads)

    speedups = [r["speedup"] for r in rows]
    return {
        "numel": numel, "threads": threads, "torch": torch.__version__,
        "suite": rows, "median_speedup": statistics.median(speedups), "min_speedup": min(speedups),
        "builtins": builtins, "large": big,
        "bandwidth_GBps": bandwidth / 1e9, "copy_ms": copy_ms, "bound_ms": bound_ms,
        "bandwidth_cold_GBps": bandwidth_cold / 1e9, "copy_cold_ms": copy_cold_ms,
        "bound_cold_ms": 5 * numel * 4 / bandwidth_cold * 1000,
        "compile": {"first_s": compile_s[0], "median_after_first_s": statistics.median(after_first),
                    "max_after_first_s": max(after_first),
                    # one graph each (f and f'); with learnable parameters forward and backward are two
                    "median_after_first_without_params_s": statistics.median(
                        [t for t, c in zip(compile_s[1:], cands[1:]) if not c.params] or [float("nan")]),
                    "linker": use_fast_linker() or "default", "warm_cache": warm},
        "policy": policy_rows, "cache_dir": cache_dir,
    }


# glibc serves large blocks by mmap and returns them on free, so every fresh 16 MiB output is
# page-faulted back in (x*1.0 on 4M floats: 1.30 ms, against 0.70 ms with this setting and 0.59 ms for
# an in-place copy).  Raising the mmap threshold to glibc's maximum (32 MiB; larger values are silently
# ignored) and the trim threshold keeps freed blocks in the heap, so eager and fused are timed on compute
# and bandwidth, not page faults.  Tensors above 32 MiB (the 64M case) are still mmap-backed.
PINNED_ALLOCATOR = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def run_isolated(**kwargs) -> dict:
    """`run` in a child process with the pinned allocator; progress lines pass through on stderr."""
    env = dict(os.environ, GLIBC_TUNABLES=PINNED_ALLOCATOR)
    proc = subprocess.Popen([sys.executable, "-m", "actsearch.kernels.bench", "--run", json.dumps(kwargs)],
                            stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark process failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["allocator"] = PINNED_ALLOCATOR
    return result


def warm_compile_times(formulas, params, cache_dir: str, threads: int) -> dict:
    """Compile the given (already cached) candidates in a new process; seconds per candidate after the first."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(cache_dir, "inductor"))
    r = subprocess.run([sys.executable, "-m", "actsearch.kernels.bench", "--warm", cache_dir, str(threads),
                        json.dumps([formulas, params])], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    times = json.loads(r.stdout.strip().splitlines()[-1])
    return {"first_s": times[0], "per_candidate_s": times[1:], "median_after_first_s": statistics.median(times[1:]),
            "max_after_first_s": max(times[1:])}


def _warm_main(cache_dir: str, threads: int, spec: str) -> None:
    import torch

    from actsearch.formula import parse_formula
    from actsearch.kernels.cache import KernelCache
    from actsearch.kernels.fused import CompilePolicy, fused_activation, get_kernel

    torch.set_num_threads(threads)
    formulas, params = json.loads(spec)
    cache = KernelCache(cache_dir)
    times = []
    x = torch.randn(4096).requires_grad_()
    g = torch.randn(4096)
    for f, p in zip(formulas, params):
        c = parse_formula(f, params=p)
        t0 = time.perf_counter()
        k = get_kernel(c, cache, CompilePolicy(min_numel=0))
        fused_activation(k, x, *[torch.tensor(v, requires_grad=True) for v in p.values()], compiled=True).backward(g)
        times.append(time.perf_counter() - t0)
        x.grad = None
    print(json.dumps(times))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--warm":
        _warm_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 3 and sys.argv[1] == "--run":
        kwargs = json.loads(sys.argv[2])
        if kwargs.pop("progress", False):
            kwargs["progress"] = lambda msg: print(msg, file=sys.stderr, flush=True)
        print(json.dumps(run(**kwargs)))
    else:
        print("usage: actsearch bench kernels [--quick] [--json]", file=sys.stderr)
        sys.exit(2)
