"""How every fused-op function is compiled: torch.compile with Inductor, one setting for all callers
(fused.py compiles lazily in process, cache.py AOT-compiles what it saves to disk, population.py
compiles population graphs)."""
from __future__ import annotations

import atexit
import operator
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

from actsearch.kernels import torch_compat

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
    """Where the ld shim lives: a directory private to this user (torch_compat.private_directory)."""
    return Path(tempfile.gettempdir()) / f"actsearch-ld-{os.getuid()}"


def _private_link_root() -> Path:
    """_link_root(), made private to this user (torch_compat.private_directory: mode 0700, this user's,
    not a symlink).  Where it belongs to someone else, a private directory under the user's cache
    directory instead; failing that, a fresh one for this process (with a warning: its path, part of
    Inductor's cache keys, then changes per process).  Nothing is ever written into, or run from, a
    directory someone else can write."""
    fallback = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "actsearch" / f"ld-{os.getuid()}"
    for path in (_link_root(), fallback):
        try:
            return torch_compat.private_directory(path)
        except OSError as exc:  # UnsafeDirectory, or an unwritable parent
            error = exc
    root = Path(tempfile.mkdtemp(prefix="actsearch-ld-"))  # mode 0700, ours
    atexit.register(shutil.rmtree, root, True)
    warnings.warn(f"actsearch: not using {error}; the ld shim is in {root} for this process",
                  RuntimeWarning, stacklevel=3)
    return root


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
    """The linker of an ld shim directory a parent process exported in COMPILER_PATH (older actsearch
    versions did, for the whole process and its Ray workers)."""
    if directory.parent.name != _link_root().name:
        return None
    for entry in (directory / "linker", directory / "ld"):  # the shim's target; an older bare symlink
        if entry.is_symlink():
            return os.readlink(entry)
    return None


# The compiler Inductor runs for actsearch's kernels (its cpp.cxx option, in every actsearch compile's
# options, nowhere else): g++ with COMPILER_PATH pointing at the ld shim's directory, for that g++ only.
# Named like the compiler it runs, so Inductor's compiler detection (by name, and --version) is
# unchanged.
_CXX_WRAPPER = """#!/bin/sh
# actsearch's compiler wrapper (actsearch/kernels/inductor.py, use_fast_linker): the cpp.cxx of
# actsearch's own Inductor compiles; this g++ finds the ld shim through COMPILER_PATH
COMPILER_PATH={link_dir}
export COMPILER_PATH
exec {cxx} "$@"
"""

_cxx_options: dict = {}  # {"cpp.cxx": (wrapper,)} once use_fast_linker set a wrapper up


def _gcc_compiler() -> Optional[str]:
    """The path of the g++ Inductor would run (CXX or g++: its cpp.cxx default), when it is a gcc; the
    COMPILER_PATH lookup the shim relies on is gcc's."""
    if os.environ.get("TORCH_INDUCTOR_INSTALL_GXX"):
        return None  # Inductor may install and run its own gcc: left alone
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None or not any(n in Path(name).name for n in ("g++", "gcc", "c++")) or "clang" in name:
        return None
    return path


def use_fast_linker() -> Optional[str]:
    """Make g++ link actsearch's Inductor kernels with a fast linker and against libtorch stubs
    (_LD_SHIM); returns the linker's path, or None when nothing was set up.

    Every CPU kernel Inductor builds is one g++ call that compiles and then links the kernel against
    libtorch, libtorch_cpu and libtorch_python.  GNU ld (bfd) spends ~0.4 s of that reading
    libtorch_cpu's symbol table, gold ~0.15-0.2 s, and the stubs make the link itself ~0.01 s (measured
    per candidate by benchmarks/compile_linker.py [--stubs]).  Inductor has no setting for linker
    flags, so this uses gcc's own lookup: gcc searches the directories in COMPILER_PATH for its
    subprograms (`ld` among them) before PATH.  That directory holds `ld` (the shim) and `linker` (a
    link to the linker the shim runs: the first of FAST_LINKERS on PATH, else `ld`), so the assembler
    and compiler are unchanged.  COMPILER_PATH is set by a g++ wrapper (_CXX_WRAPPER) that actsearch's
    compiles name as Inductor's compiler (linker_options: the cpp.cxx option), never in this
    process's environment: the user's own torch.compile, and every other program this process or its
    Ray workers start, run the real g++ and linker.  All of it lives in a directory private to this
    user (_private_link_root).

    Left alone when the user set COMPILER_PATH (one that an older actsearch parent process set is
    reported as that linker), or ACTSEARCH_LINKER=default, or ACTSEARCH_TORCH_PRIVATE=0 (the
    compile's own g++ then); ACTSEARCH_LINKER=<name or path> picks a linker.  Idempotent and
    thread-safe."""
    global _linker_done, _linker, _cxx_options
    if _linker_done:
        return _linker
    with _linker_lock:
        if _linker_done:
            return _linker
        _linker_done = True
        _cxx_options = {}
        choice = os.environ.get("ACTSEARCH_LINKER", "")
        inherited = os.environ.get("COMPILER_PATH")
        if inherited:
            _linker = _inherited_linker(Path(inherited))
            return _linker
        if choice == "default" or not torch_compat.active("fast_linker"):
            return None
        candidates = (choice,) if choice else (*FAST_LINKERS, "ld")
        found = next((p for p in (shutil.which(c) for c in candidates) if p), None)
        cxx = _gcc_compiler()
        if found is None or cxx is None:
            return None
        try:
            root = _private_link_root()
            link_dir = root / Path(found).name
            link_dir.mkdir(mode=0o700, exist_ok=True)
            linker, ld = link_dir / "linker", link_dir / "ld"
            if not (linker.is_symlink() and os.readlink(linker) == found):
                _write_atomically(linker, lambda tmp: tmp.symlink_to(found))
            try:
                shim: Optional[str] = _LD_SHIM.format(
                    linker=shlex.quote(found), stubs=shlex.quote(str(_link_stubs(root))),
                    torch_libs="|".join(f"-l{name}" for name in TORCH_LIBS))
            except (OSError, subprocess.SubprocessError):
                shim = None  # no gcc to build the stubs with: the fast linker alone
            _write_script(ld, shim)
            # a script in a noexec /tmp would make every link fail: then the bare linker, no stubs
            if shim is None or subprocess.run([str(ld), "--version"], capture_output=True, timeout=30).returncode:
                if not (ld.is_symlink() and os.readlink(ld) == found):
                    _write_atomically(ld, lambda tmp: tmp.symlink_to(found))
            wrapper = link_dir / "bin" / Path(cxx).name
            wrapper.parent.mkdir(mode=0o700, exist_ok=True)
            _write_script(wrapper, _CXX_WRAPPER.format(link_dir=shlex.quote(str(link_dir)), cxx=shlex.quote(cxx)))
            if subprocess.run([str(wrapper), "--version"], capture_output=True, timeout=30).returncode:
                return None  # the wrapper cannot run (noexec): Inductor's own g++ and linker
        except (OSError, subprocess.SubprocessError):
            return None  # read-only /tmp and the like: keep the default linker
        _cxx_options = {"cpp.cxx": (str(wrapper),)}
        _linker = found
        return found


def _write_script(path: Path, text: Optional[str]) -> None:
    """An executable script with `text` at `path` (atomically), unless it is there already."""
    if text is not None and (path.is_symlink() or not path.exists() or path.read_text() != text):
        def write(tmp: Path) -> None:
            tmp.write_text(text)
            tmp.chmod(0o700)

        _write_atomically(path, write)


def linker_options() -> dict:
    """The Inductor options that make a compile use the fast linker (use_fast_linker): the g++
    wrapper as cpp.cxx; {} when there is none."""
    use_fast_linker()
    return dict(_cxx_options)


def inductor_options(options: dict) -> dict:
    """What every actsearch compile hands Inductor: `options` plus linker_options, without the keys
    this torch's Inductor does not have (torch_compat.filter_inductor_options: dropped with a warning)."""
    return torch_compat.filter_inductor_options({**options, **linker_options()})


def skip_repeated_dtype_rule_setup() -> bool:
    """Whether actsearch's compiles set Inductor's dtype rules up once rather than at every emitted op
    (torch_compat "dtype_rules_once": DtypePropagationOpsHandler.__init__ wrapped inside
    torch_compat.compile_scope only, restored after).  A torch without this class is left alone."""
    return torch_compat.active("dtype_rules_once")


def defer_builds_possible() -> bool:
    """Whether Inductor's module loads inside actsearch's compiles are deferrable (`deferred_builds`).

    A module Inductor loads starts its kernels' C++ builds in Inductor's compile thread pool (with more
    than one compile thread) and ends in `AsyncCompile.wait(globals())`, which waits for them.  Inside
    torch_compat.compile_scope, a thread inside `deferred_builds` skips that wait and finishes it later
    (`finish_builds`): two graphs then build at once, each g++ on its own core, while their Python
    compile (trace, lowering, codegen) stays one at a time under the compile lock.  Every other
    thread, and this one outside the block, waits as before."""
    return torch_compat.active("deferred_builds")


deferred_builds = torch_compat.deferred_builds
finish_builds = torch_compat.finish_builds


def prepare_inductor() -> None:
    """What every compile here needs first: the fast linker's directory.  Inductor's classes are
    patched only within actsearch's compiles (torch_compat.compile_scope); ACTSEARCH_INDUCTOR_PATCHES=0
    or ACTSEARCH_TORCH_PRIVATE=0 leaves them untouched."""
    use_fast_linker()


def traced_graphs_enabled() -> bool:
    """Whether generated functions are traced and compiled without Dynamo (TracedGraph): on unless
    ACTSEARCH_TRACED_GRAPHS=0 or the private feature is off (torch_compat "traced_graphs")."""
    return TRACED_GRAPHS and torch_compat.active("traced_graphs")


def compile_fused(fn: Callable, elementwise: bool = False) -> Callable:
    """Dynamic shapes (no recompile per batch size), one graph, INDUCTOR_OPTIONS; ELEMENTWISE_OPTIONS
    for a graph of elementwise ops only."""
    import torch

    prepare_inductor()
    options = ELEMENTWISE_OPTIONS if elementwise else INDUCTOR_OPTIONS
    return torch.compile(fn, dynamic=True, fullgraph=True, options=inductor_options(options))


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
            if traced_graphs_enabled() and all(isinstance(a, torch.Tensor) for a in args):
                try:
                    graph = compile_graph(self.fn, args, dynamic=False, options=POPULATION_OPTIONS)
                except Exception as exc:  # noqa: BLE001 - degrade to torch.compile, never crash
                    self.trace_error = error_summary(exc)
            if graph is None:
                if self._compiled is None:
                    self._compiled = torch.compile(self.fn, dynamic=False, fullgraph=True,
                                                   options=inductor_options(POPULATION_OPTIONS))
                with torch_compat.compile_scope():  # torch.compile compiles this layout now
                    out = self._compiled(*args)
                self.graphs[layout] = self._compiled
                return out
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
        if call is None:  # the options it was compiled with: its kernel is the same Inductor cache entry
            call = torch_compat.load_module(source_code, linker_options())
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


def compile_graph(fn: Callable, args, elementwise: bool = True, dynamic: bool = True,
                  options: Optional[dict] = None) -> TracedGraph:
    """Trace `fn` on `args` and compile it with Inductor: with symbolic sizes (dynamic; contiguous
    tensors, see shape_pattern) or for exactly these shapes and strides (static; PopulationGraph);
    ELEMENTWISE_OPTIONS for graphs of elementwise ops unless `options` are given.  Raises when tracing
    or compiling fails or a guard cannot be encoded; callers then fall back to torch.compile."""
    import torch

    prepare_inductor()
    single = []

    def as_tuple(*a):
        out = fn(*a)
        single.append(isinstance(out, torch.Tensor))
        return (out,) if single[-1] else tuple(out)

    if options is None:
        options = ELEMENTWISE_OPTIONS if elementwise else INDUCTOR_OPTIONS
    # make_fx, compile_fx_inner, Dynamo's compile lock, the compile session: torch_compat (Unavailable
    # when traced graphs are off there: the caller's torch.compile then)
    compiled, inputs, shape_env = torch_compat.trace_and_compile(as_tuple, args, dynamic, inductor_options(options))
    if getattr(compiled, "constants", None) or not isinstance(getattr(compiled, "source_code", None), str):
        raise RuntimeError("graph has tensor constants or no module source")
    # Each size >= 2 was traced as its own symbol (equal sizes: one symbol), read back from the input
    # it came from.  The guards are the trace's and Inductor's, as recorded, plus every replacement the
    # shape environment made (a size specialised to a constant, or set equal to another): written
    # as guards, so a size that a replacement folded into the code is checked, never assumed.
    import sympy

    symbols: dict = {}
    for i, t in enumerate(inputs):
        for d, size in enumerate(t.shape):
            raw = torch_compat.size_symbol(size)
            if raw is None:
                continue
            if not isinstance(raw, sympy.Symbol):
                raise RuntimeError(f"input size traced as {raw}, not a symbol")
            symbols.setdefault(raw.name, [i, d])
    guard_exprs = torch_compat.shape_guards(shape_env)  # static traces have none
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
