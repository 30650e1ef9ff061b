"""How every fused-op function is compiled: torch.compile with Inductor, one setting for all callers
(fused.py compiles lazily in process, cache.py AOT-compiles what it saves to disk, population.py
compiles population graphs)."""
from __future__ import annotations

import contextlib
import operator
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

# With dynamic shapes Inductor puts a masked vector tail inside the main loop by default; a scalar tail
# after it gives the main loop the code of a static shape.  Measured side by side on 4M floats, 2
# threads: x*Phi(x) 3.07-3.22 ms against 3.69-3.90 (static shape 3.06-3.17); the SiLU forward with f'
# 2.81-2.92 against 2.91-3.00.  Only the last numel % 16 elements take the scalar path.
INDUCTOR_OPTIONS = {"cpp.enable_loop_tail_vec": False}

# Graphs of elementwise ops only (every candidate with a generated backward) also store every value
# read more than once instead of re-inlining it at each read (Inductor's default: up to 4 reads).
# Re-inlining is exponential in the depth of shared subexpressions, and f and f' share most of theirs:
# Inductor's codegen called the tanh-GELU graph's 53 lowered nodes 3,911 times (1.15 s of a 3.4 s
# compile; 0.37 s with this).  The stored values all fuse into the one loop and their buffers are
# removed, so the kernels run the same (interleaved A/B, 8 formulas, fwd+bwd 4M fp32: 0.98-1.03x
# against a 0.99-1.01x identical-kernel control).  Not for moment ops: a value read by a reduction and
# by a pointwise loop would become a buffer in memory between two kernels.
ELEMENTWISE_OPTIONS = {**INDUCTOR_OPTIONS, "realize_reads_threshold": 1}

# ACTSEARCH_TRACED_GRAPHS=0 compiles every function with torch.compile, as before TracedGraph existed
# (benchmarks/compile_traced.py compares the two).
TRACED_GRAPHS = os.environ.get("ACTSEARCH_TRACED_GRAPHS", "1") != "0"


def error_summary(exc: BaseException) -> str:
    """How a compile failure is recorded (compile_error, trace_error): type and first line, bounded."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"

# Linkers faster than GNU ld (bfd) at linking a kernel against libtorch_cpu.so (434 MB), fastest first.
FAST_LINKERS = ("mold", "ld.lld", "ld.gold")
# What Inductor links every kernel against; the ld shim links Inductor's kernels against symbol-less
# stubs of these (same SONAME) instead of the real libraries.
TORCH_LIBS = ("torch", "torch_cpu", "torch_python")

_linker_lock = threading.Lock()
_linker_done = False
_linker: Optional[str] = None

# The `ld` gcc finds first (COMPILER_PATH).  For a shared object written into Inductor's cache
# directory, it replaces -ltorch, -ltorch_cpu, -ltorch_python by stubs: libraries with the real
# SONAMEs and no symbols, linked --no-as-needed.  The kernel then gets the same DT_NEEDED entries, and
# its undefined symbols (Sleef's vector math, in libtorch_cpu) are bound when Python loads it, from
# those libraries, already loaded: what the real link records, without the linker reading
# libtorch_cpu's 74K dynamic symbols (0.15-0.2 s of every kernel's g++ with gold, ~0.4 s with GNU ld).
# A shared-object link never checks undefined symbols (no -z defs), so nothing is checked later than
# before: a missing symbol fails the load (RTLD_NOW), as it would have.  Every other link a child
# process makes (a torch C++ extension, ...) runs the real linker untouched.  ACTSEARCH_LINK_STUBS=0
# turns the stubs off (benchmarks/compile_linker.py --stubs compares both).
_LD_SHIM = """#!/bin/sh
# actsearch's ld shim (actsearch/kernels/inductor.py, use_fast_linker)
linker={linker}
stubs={stubs}
[ "${{ACTSEARCH_LINK_STUBS:-1}}" = 0 ] && exec "$linker" "$@"
out=; prev=; shared=0
for a do
  [ "$prev" = -o ] && out=$a
  [ "$a" = -shared ] && shared=1
  prev=$a
done
inductor=0
if [ -n "$TORCHINDUCTOR_CACHE_DIR" ]; then
  case $out in "$TORCHINDUCTOR_CACHE_DIR"/*) inductor=1 ;; esac
fi
case $out in "${{TMPDIR:-/tmp}}"/torchinductor_*/*) inductor=1 ;; esac
[ $shared = 1 ] && [ $inductor = 1 ] || exec "$linker" "$@"
for a do
  shift
  case $a in
    {torch_libs}) set -- "$@" --push-state --no-as-needed "$stubs/lib${{a#-l}}.so" --pop-state ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec "$linker" "$@"
"""


def _link_root() -> Path:
    return Path(tempfile.gettempdir()) / f"actsearch-ld-{os.getuid()}"


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Concurrent workers never see a missing or half-made file: write a private name, then rename."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def _link_stubs(root: Path) -> Path:
    """Symbol-less stubs of TORCH_LIBS, each with its library's SONAME (lib<name>.so in torch's wheels)."""
    stubs = root / "stubs"
    stubs.mkdir(parents=True, exist_ok=True)
    for name in TORCH_LIBS:
        lib = stubs / f"lib{name}.so"
        if not lib.exists():
            _write_atomically(lib, lambda tmp, name=name: subprocess.run(
                ["gcc", "-shared", "-nostdlib", f"-Wl,-soname,lib{name}.so", "-o", str(tmp), "-x", "c", os.devnull],
                check=True, capture_output=True))
    return stubs


def _inherited_linker(directory: Path) -> Optional[str]:
    """The linker of an ld shim directory a parent process made (Ray workers inherit COMPILER_PATH)."""
    if directory.parent.name != _link_root().name:
        return None
    for entry in (directory / "linker", directory / "ld"):  # the shim's target; an older bare symlink
        if entry.is_symlink():
            return os.readlink(entry)
    return None


def use_fast_linker() -> Optional[str]:
    """Make g++ link Inductor's kernels with a fast linker and against libtorch stubs (_LD_SHIM);
    returns the linker's path, or None when nothing was changed.

    Every CPU kernel Inductor builds is one g++ call that compiles and then links the kernel against
    libtorch, libtorch_cpu and libtorch_python.  GNU ld (bfd) spends ~0.4 s of that reading
    libtorch_cpu's symbol table, gold ~0.15-0.2 s, and the stubs make the link itself ~0.01 s (measured
    per candidate by benchmarks/compile_linker.py [--stubs]).  Inductor has no setting for linker
    flags, so this uses gcc's own lookup: gcc searches the directories in COMPILER_PATH for its
    subprograms (`ld` among them) before PATH, and Inductor's g++ calls inherit this process's
    environment.  That directory holds `ld` (the shim) and `linker` (a link to the linker the shim
    runs: the first of FAST_LINKERS on PATH, else `ld`), so the assembler and compiler are unchanged.

    Left alone when the user set COMPILER_PATH (one that a parent process set here, as Ray workers
    inherit it, is reported as that linker), or ACTSEARCH_LINKER=default; ACTSEARCH_LINKER=<name or
    path> picks a linker.  Idempotent and thread-safe; call before anything compiles."""
    global _linker_done, _linker
    if _linker_done:
        return _linker
    with _linker_lock:
        if _linker_done:
            return _linker
        _linker_done = True
        choice = os.environ.get("ACTSEARCH_LINKER", "")
        inherited = os.environ.get("COMPILER_PATH")
        if inherited:
            _linker = _inherited_linker(Path(inherited))
            return _linker
        if choice == "default":
            return None
        candidates = (choice,) if choice else (*FAST_LINKERS, "ld")
        found = next((p for p in (shutil.which(c) for c in candidates) if p), None)
        if found is None:
            return None
        root = _link_root()
        link_dir = root / Path(found).name
        try:
            link_dir.mkdir(parents=True, exist_ok=True)
            linker, ld = link_dir / "linker", link_dir / "ld"
            if not (linker.is_symlink() and os.readlink(linker) == found):
                _write_atomically(linker, lambda tmp: tmp.symlink_to(found))
            try:
                shim: Optional[str] = _LD_SHIM.format(
                    linker=shlex.quote(found), stubs=shlex.quote(str(_link_stubs(root))),
                    torch_libs="|".join(f"-l{name}" for name in TORCH_LIBS))
            except (OSError, subprocess.SubprocessError):
                shim = None  # no gcc to build the stubs with: the fast linker alone
            if shim is not None and (ld.is_symlink() or not ld.exists() or ld.read_text() != shim):
                def write(tmp: Path) -> None:
                    tmp.write_text(shim)
                    tmp.chmod(0o755)

                _write_atomically(ld, write)
            # a script in a noexec /tmp would make every link fail: then the bare linker, no stubs
            if shim is None or subprocess.run([str(ld), "--version"], capture_output=True, timeout=30).returncode:
                if not (ld.is_symlink() and os.readlink(ld) == found):
                    _write_atomically(ld, lambda tmp: tmp.symlink_to(found))
        except (OSError, subprocess.SubprocessError):
            return None  # read-only /tmp and the like: keep the default linker
        os.environ["COMPILER_PATH"] = str(link_dir)
        _linker = found
        return found


_patch_lock = threading.Lock()  # Inductor classes wrapped here are wrapped once


def skip_repeated_dtype_rule_setup() -> bool:
    """Make Inductor's DtypePropagationOpsHandler set up its dtype rules once, not at every op it emits.

    The handler is a singleton made in __new__, but Python runs __init__ after every construction, and
    Inductor constructs it for every op of every kernel it writes: each time, __init__ sets one rule per
    op (~200 setattr) and checks them against dir(self).  In our compiles that cost 0.2-0.4 ms per
    emitted op, 0.4 s of the tanh-GELU compile.  pytorch PR #192820 makes the same change upstream
    (skip while the rule registry is unchanged, so a rule registered later still gets picked up); this
    wrapper does it for torch releases without it, and only wraps the class once.  Returns whether
    the wrapper is installed; a torch without this class is left alone."""
    try:
        from torch._inductor import dtype_propagation, utils
    except ImportError:
        return False
    cls = getattr(dtype_propagation, "DtypePropagationOpsHandler", None)
    rules = getattr(utils, "op_dtype_propagation_rules", None)
    if cls is None or not isinstance(rules, dict):
        return False
    with _patch_lock:
        setup = cls.__init__
        if getattr(setup, "_actsearch_once", False):
            return True

        def __init__(self) -> None:
            rules = utils.op_dtype_propagation_rules
            if self.__dict__.get("_actsearch_rules") == rules:
                return  # the common case, at every emitted op: one dict comparison, no copy
            snapshot = dict(rules)
            setup(self)
            self._actsearch_rules = snapshot

        __init__._actsearch_once = True  # type: ignore[attr-defined]
        __init__._actsearch_original = setup  # type: ignore[attr-defined]  # benchmarks compare both
        cls.__init__ = __init__
    return True


_deferral = threading.local()


def defer_builds_possible() -> bool:
    """Make Inductor's module loads deferrable (`deferred_builds`); returns whether they are.

    A module Inductor loads starts its kernels' C++ builds in Inductor's compile thread pool (with more
    than one compile thread) and ends in `AsyncCompile.wait(globals())`, which waits for them.  The
    wrapper lets a thread inside `deferred_builds` skip that wait and finish it later
    (`finish_builds`): two graphs then build at once, each g++ on its own core, while their Python
    compile (trace, lowering, codegen) stays one at a time under the compile lock.  Every other
    thread, and this one outside the block, waits as before.  Idempotent; a torch without this
    AsyncCompile.wait is left alone."""
    try:
        from torch._inductor.async_compile import AsyncCompile, get_compile_threads
    except ImportError:
        return False
    if get_compile_threads() <= 1:
        return False  # builds run synchronously inside the load: nothing to overlap
    with _patch_lock:
        original = AsyncCompile.wait
        if getattr(original, "_actsearch_deferrable", False):
            return True

        def wait(self, scope) -> None:
            pending = getattr(_deferral, "pending", None)
            if pending is None:
                return original(self, scope)
            pending.append((self, scope))  # finish_builds waits, after the compile lock is released

        wait._actsearch_deferrable = True  # type: ignore[attr-defined]
        wait._actsearch_original = original  # type: ignore[attr-defined]
        AsyncCompile.wait = wait
    return True


@contextlib.contextmanager
def deferred_builds():
    """Within the block, this thread's Inductor module loads return before their C++ builds finish;
    yields the list of pending waits to hand to finish_builds (after which the module's kernels are
    callable, or the build's error is raised)."""
    pending: list = []
    outer = getattr(_deferral, "pending", None)
    _deferral.pending = pending
    try:
        yield pending
    finally:
        _deferral.pending = outer


def finish_builds(pending: list) -> None:
    from torch._inductor.async_compile import AsyncCompile

    original = getattr(AsyncCompile.wait, "_actsearch_original", AsyncCompile.wait)
    while pending:
        compiler, scope = pending.pop(0)
        original(compiler, scope)


def prepare_inductor() -> None:
    """What every compile here needs first: the fast linker and the dtype-rule setup done once.
    ACTSEARCH_INDUCTOR_PATCHES=0 leaves Inductor's classes untouched."""
    use_fast_linker()
    if os.environ.get("ACTSEARCH_INDUCTOR_PATCHES", "1") != "0":
        skip_repeated_dtype_rule_setup()
        defer_builds_possible()


def compile_fused(fn: Callable, elementwise: bool = False) -> Callable:
    """Dynamic shapes (no recompile per batch size), one graph, INDUCTOR_OPTIONS; ELEMENTWISE_OPTIONS
    for a graph of elementwise ops only."""
    import torch

    prepare_inductor()
    options = ELEMENTWISE_OPTIONS if elementwise else INDUCTOR_OPTIONS
    return torch.compile(fn, dynamic=True, fullgraph=True, options=dict(options))


# Population graphs (kernels/population.py) are elementwise too; static shapes, so no loop-tail setting.
# 16 random candidates on 4 x 30,000 rows each: compile 31.7-32.3 s -> 16.2-17.1 s (Inductor codegen
# 19-20 s -> 5.2-5.7 s), outputs bit-identical, run time 1.03-1.04x faster (control 1.01-1.03x).
POPULATION_OPTIONS = {"realize_reads_threshold": 1}


class PopulationGraph:
    """A population graph (kernels/population.py) compiled for static shapes: traced and compiled by
    Inductor without Dynamo (compile_graph, dynamic=False), one graph per exact input layout (shapes,
    strides, dtypes, devices), which training keeps fixed.  Dynamo's analysis of a 16-candidate
    population (hundreds of ops) made its compile slow: three 16-candidate populations compiled in
    10.5 / 12.6 / 19.5 s through torch.compile, 8.3 / 7.4 / 13.4 s traced, outputs bit-identical, and
    the traced call ran 1.2-1.3x faster (no guards on ~30 inputs; benchmarks/compile_traced.py
    --population 16).  A layout whose trace fails goes to torch.compile (static, POPULATION_OPTIONS);
    if that fails, the caller's fallback applies."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.graphs: dict[tuple, Callable] = {}
        self.trace_error: Optional[str] = None
        self._compiled: Optional[Callable] = None

    def __call__(self, *args):
        import torch

        layout = tuple((tuple(a.shape), tuple(a.stride()), a.dtype, a.device.type) if isinstance(a, torch.Tensor)
                       else (type(a), a) for a in args)
        graph = self.graphs.get(layout)
        if graph is None:
            if TRACED_GRAPHS and all(isinstance(a, torch.Tensor) for a in args):
                try:
                    graph = compile_graph(self.fn, args, dynamic=False, options=POPULATION_OPTIONS)
                except Exception as exc:  # noqa: BLE001 - degrade to torch.compile, never crash
                    self.trace_error = error_summary(exc)
            if graph is None:
                if self._compiled is None:
                    self._compiled = torch.compile(self.fn, dynamic=False, fullgraph=True,
                                                   options=dict(POPULATION_OPTIONS))
                graph = self._compiled
            self.graphs[layout] = graph
        return graph(*args)


def compile_population(fn: Callable) -> Callable:
    """A population graph (kernels/population.py): static shapes, one graph, POPULATION_OPTIONS."""
    prepare_inductor()
    return PopulationGraph(fn)


def shape_pattern(args) -> Optional[tuple]:
    """What a graph traced from `args` assumes about its inputs beyond its guards, as a hashable key;
    None when the inputs do not suit a traced graph (a non-tensor, a non-contiguous tensor).

    Symbolic tracing makes every size >= 2 a symbol and gives equal sizes one symbol (duck sizing;
    x and grad share theirs), while sizes 0 and 1 are constants in the graph; a contiguous tensor's
    strides are then expressions of its sizes.  A graph is valid for the inputs with the same dtypes,
    devices, ranks, 0/1 sizes and equalities between sizes >= 2 (this pattern) on which its guards
    hold (TracedGraph.holds: Inductor may specialise a reduction on the size it was traced with)."""
    import torch

    ids: dict[int, int] = {}
    out = []
    for a in args:
        if not isinstance(a, torch.Tensor) or not a.is_contiguous():
            return None
        out.append((str(a.dtype), a.device.type,
                    tuple(s if s < 2 else -1 - ids.setdefault(s, len(ids)) for s in a.shape)))
    return tuple(out)


def _product(*factors):
    out = 1
    for f in factors:
        out *= f
    return out


# What a size guard may contain (sympy class name -> Python integer op), for encode_guard/evaluate_guard.
_GUARD_OPS: dict = {
    "Add": lambda *a: sum(a), "Mul": _product, "Pow": operator.pow, "Max": max, "Min": min,
    "FloorDiv": operator.floordiv, "CeilDiv": lambda a, b: -(-a // b), "PythonMod": operator.mod,
    "Mod": operator.mod, "Eq": operator.eq, "Ne": operator.ne, "Le": operator.le, "Lt": operator.lt,
    "Ge": operator.ge, "Gt": operator.gt, "And": lambda *a: all(a), "Or": lambda *a: any(a),
    "Not": operator.not_,
}
_SYMPY_RELATIONS = {"Equality": "Eq", "Unequality": "Ne", "LessThan": "Le", "StrictLessThan": "Lt",
                    "GreaterThan": "Ge", "StrictGreaterThan": "Gt", "BooleanTrue": True, "BooleanFalse": False}


def encode_guard(expr):
    """A size guard (a sympy expression over size symbols) as JSON: ["Symbol", name], an int,
    ["Rational", p, q], or [op, *args] for an op of _GUARD_OPS.  Raises ValueError on anything else,
    so a graph with a guard this cannot check is not used."""
    import sympy

    if isinstance(expr, sympy.Symbol):
        return ["Symbol", expr.name]
    if isinstance(expr, sympy.Integer):
        return int(expr)
    if isinstance(expr, sympy.Rational):
        return ["Rational", int(expr.p), int(expr.q)]
    name = _SYMPY_RELATIONS.get(type(expr).__name__, type(expr).__name__)
    if isinstance(name, bool):
        return int(name)
    if name not in _GUARD_OPS:
        raise ValueError(f"unsupported guard term {name}: {expr}")
    return [name, *[encode_guard(a) for a in expr.args]]


def evaluate_guard(tree, sizes: dict):
    """The value of an encode_guard tree with the size symbols bound to `sizes` (name -> int)."""
    if isinstance(tree, int):
        return tree
    if tree[0] == "Symbol":
        return sizes[tree[1]]
    if tree[0] == "Rational":
        return Fraction(tree[1], tree[2])
    return _GUARD_OPS[tree[0]](*[evaluate_guard(a, sizes) for a in tree[1:]])


class TracedGraph:
    """A generated function compiled by Inductor from its traced graph, without Dynamo or AOTAutograd.

    torch.compile spends ~0.4 s in Dynamo (bytecode analysis, fake-tensor propagation) and ~0.3 s in
    AOTAutograd on one of our graphs before Inductor starts; a generated function needs neither: its
    body is straight-line torch ops without side effects, and its outputs need no autograd here
    (FusedActivation differentiates symbolically).  make_fx traces it with symbolic sizes and
    Inductor's decompositions (what AOTAutograd would hand Inductor), and compile_fx_inner compiles
    that graph.  Guards: the shape pattern (shape_pattern, checked by the caller) and the size guards
    the trace or Inductor added (`holds`).  The compiled module's source is kept (`source_code`), so
    the on-disk cache reloads it without tracing; its C++ kernel comes from Inductor's own cache
    (rebuilt if that was cleared)."""

    def __init__(self, source_code: str, single: bool, symbols: dict, guards: list,
                 call: Optional[Callable] = None):
        self.source_code, self.single = source_code, single
        self.symbols = symbols  # size symbol -> [argument index, dimension] it is read from
        self.guards = guards    # encode_guard trees; all must hold
        if call is None:
            from torch._inductor.codecache import PyCodeCache

            call = PyCodeCache.load(source_code).call
        self._call = call

    def holds(self, args) -> bool:
        if not self.guards:
            return True
        sizes = {name: args[i].shape[d] for name, (i, d) in self.symbols.items()}
        return all(evaluate_guard(g, sizes) for g in self.guards)

    def __call__(self, *args):
        out = self._call(list(args))  # the compiled module's call() consumes its argument list
        return out[0] if self.single else tuple(out)

    def to_dict(self) -> dict:
        import torch

        return {"torch": torch.__version__, "single": self.single, "symbols": self.symbols,
                "guards": self.guards, "source_code": self.source_code}

    @classmethod
    def from_dict(cls, d: dict) -> "TracedGraph":
        import torch

        if d.get("torch") != torch.__version__:
            raise ValueError(f"compiled by torch {d.get('torch')}, this is {torch.__version__}")
        return cls(d["source_code"], bool(d["single"]), dict(d["symbols"]), list(d["guards"]))


_trace_lock = threading.Lock()


def _compile_lock():
    """Dynamo's own compile lock where torch has it, so a traced compile and a torch.compile in another
    thread never share Inductor's process-wide state (its config patches, tracing context); else ours."""
    try:
        from torch._dynamo.convert_frame import compile_lock
    except ImportError:
        return _trace_lock
    return compile_lock


def compile_graph(fn: Callable, args, elementwise: bool = True, dynamic: bool = True,
                  options: Optional[dict] = None) -> TracedGraph:
    """Trace `fn` on `args` and compile it with Inductor: with symbolic sizes (dynamic; contiguous
    tensors, see shape_pattern) or for exactly these shapes and strides (static; PopulationGraph);
    ELEMENTWISE_OPTIONS for graphs of elementwise ops unless `options` are given.  Raises when tracing
    or compiling fails or a guard cannot be encoded; callers then fall back to torch.compile."""
    import sympy
    import torch
    from torch._guards import detect_fake_mode
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.decomposition import select_decomp_table
    from torch.fx.experimental.proxy_tensor import make_fx

    prepare_inductor()
    single = []

    def as_tuple(*a):
        out = fn(*a)
        single.append(isinstance(out, torch.Tensor))
        return (out,) if single[-1] else tuple(out)

    if options is None:
        options = ELEMENTWISE_OPTIONS if elementwise else INDUCTOR_OPTIONS
    # make_fx raises FX's process-wide "symbolic tracing" flag, and a torch.compile'd function called
    # in another thread meanwhile would refuse to run ("FX to symbolically trace a dynamo-optimized
    # function"); inside a compile session (the flag Dynamo raises while AOTAutograd traces) it runs.
    session = getattr(torch.compiler, "_compile_session_context", contextlib.nullcontext)
    with _compile_lock(), session(), torch.no_grad():  # Inductor's compile state is process-wide
        gm = make_fx(as_tuple, tracing_mode="symbolic" if dynamic else "fake",
                     decomposition_table=select_decomp_table())(*[a.detach() for a in args])
        inputs = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
        shape_env = detect_fake_mode(inputs).shape_env
        with torch._inductor.config.patch(dict(options)):
            compiled = compile_fx_inner(gm, inputs, is_inference=True)
    if getattr(compiled, "constants", None) or not isinstance(getattr(compiled, "source_code", None), str):
        raise RuntimeError("graph has tensor constants or no module source")
    # Each size >= 2 was traced as its own symbol (equal sizes: one symbol), read back from the input
    # it came from.  The guards are the trace's and Inductor's, as recorded, plus every replacement the
    # shape environment made (a size specialised to a constant, or set equal to another): written
    # as guards, so a size that a replacement folded into the code is checked, never assumed.
    symbols: dict = {}
    for i, t in enumerate(inputs):
        for d, size in enumerate(t.shape):
            if isinstance(size, torch.SymInt):
                raw = size.node._expr
                if not isinstance(raw, sympy.Symbol):
                    raise RuntimeError(f"input size traced as {raw}, not a symbol")
                symbols.setdefault(raw.name, [i, d])
    guard_exprs = []
    if shape_env is not None:  # static traces have none
        guard_exprs = [g.expr for g in shape_env.guards]
        guard_exprs += [sympy.Eq(sym, value) for sym, value in shape_env.replacements.items()]
    guards = [encode_guard(e) for e in guard_exprs]
    missing = {name for tree in guards for name in _symbol_names(tree)} - set(symbols)
    if missing:
        raise RuntimeError(f"guards on sizes that are not input sizes: {sorted(missing)}")
    return TracedGraph(compiled.source_code, single[0], symbols, guards, compiled.current_callable)


def _symbol_names(tree):
    if isinstance(tree, list):
        if tree[0] == "Symbol":
            yield tree[1]
        else:
            for a in tree[1:]:
                yield from _symbol_names(a)
