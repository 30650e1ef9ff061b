"""Every private torch access of actsearch's kernels, each behind one guarded function.

Each private feature here is feature-detected (an import or attribute that is missing turns it off,
never fails a compile), has a fallback through public torch that computes the same numbers, and is
off when the switch is off:

    ACTSEARCH_TORCH_PRIVATE=0     every private feature off: torch.compile(options=...) and eager
                                  autograd only (the public fallbacks)
    ACTSEARCH_TORCH_PRIVATE=1     every detected feature on, also on a torch release not tested here
    unset / "auto"                every detected feature on; those that depend on torch internals
                                  staying as they are (TESTED_TORCH) only on a tested torch release

`set_private(False)` / `private_disabled()` do the same from Python (for kernels built afterwards).
`features()` reports which features are active.  docs/kernels-compat.md lists every access, what it
gains and its fallback.

Process-wide changes to torch are confined to actsearch's own compiles: the two class patches
(dtype rules set up once, deferrable module loads) are installed by `compile_scope()` while one of
actsearch's compiles runs and restored after it, so a user's own torch.compile outside it runs
torch's own code.
"""
from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
import warnings
from pathlib import Path
from typing import Callable, Optional

# The torch releases (major, minor) this code is tested on; pyproject declares the same range.
TESTED_TORCH = ((2, 13),)

_SWITCH_ENV = "ACTSEARCH_TORCH_PRIVATE"
_override: Optional[str] = None  # set_private's choice; None: the environment's


class Unavailable(RuntimeError):
    """A private feature is switched off or missing here: the caller takes its public fallback."""


class UnsafeDirectory(OSError):
    """A directory actsearch would write executables into is not private to this user."""


def _env_mode() -> str:
    value = os.environ.get(_SWITCH_ENV, "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("1", "on", "true", "yes", "force"):
        return "force"
    return "auto"


_ENV_MODE = _env_mode()  # read once, at import: set ACTSEARCH_TORCH_PRIVATE before importing actsearch


def _mode() -> str:
    return _override if _override is not None else _ENV_MODE


def private_enabled() -> bool:
    """Whether private torch features may be used at all (the switch)."""
    return _mode() != "off"


def set_private(enabled: Optional[bool]) -> Optional[str]:
    """Switch every private feature on (True: also on untested torch) or off (False); None: back to
    ACTSEARCH_TORCH_PRIVATE.  Kernels built before keep what they chose.  Returns the previous override."""
    global _override
    previous = _override
    _override = None if enabled is None else ("force" if enabled else "off")
    return previous


@contextlib.contextmanager
def private_disabled():
    """Within the block, every private feature is off (for kernels built inside it)."""
    global _override
    previous = _override
    _override = "off"
    try:
        yield
    finally:
        _override = previous


def torch_version() -> tuple[int, int]:
    import torch

    parts = torch.__version__.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def tested_torch() -> bool:
    return torch_version() in TESTED_TORCH


# ---------------------------------------------------------------- feature detection

@functools.lru_cache(maxsize=None)
def _detect_traced_graphs() -> bool:
    try:
        import torch
        from torch._guards import detect_fake_mode  # noqa: F401
        from torch._inductor.codecache import PyCodeCache  # noqa: F401
        from torch._inductor.compile_fx import compile_fx_inner  # noqa: F401
        from torch._inductor.decomposition import select_decomp_table  # noqa: F401
        from torch.fx.experimental.proxy_tensor import make_fx  # noqa: F401
    except ImportError:
        return False
    return hasattr(PyCodeCache, "load") and hasattr(torch, "SymInt")


@functools.lru_cache(maxsize=None)
def _detect_dtype_rules_once() -> bool:
    try:
        from torch._inductor import dtype_propagation, utils
    except ImportError:
        return False
    cls = getattr(dtype_propagation, "DtypePropagationOpsHandler", None)
    return cls is not None and isinstance(getattr(utils, "op_dtype_propagation_rules", None), dict)


@functools.lru_cache(maxsize=None)
def _detect_deferred_builds() -> bool:
    try:
        from torch._inductor.async_compile import AsyncCompile, get_compile_threads
    except ImportError:
        return False
    return callable(getattr(AsyncCompile, "wait", None)) and get_compile_threads() > 1


@functools.lru_cache(maxsize=None)
def _detect_keep_graph() -> bool:
    import torch

    return callable(getattr(getattr(torch._C, "_autograd", None), "_get_current_graph_task_keep_graph", None))


@functools.lru_cache(maxsize=None)
def _detect_inductor_config() -> bool:
    try:
        from torch._inductor import config
    except ImportError:
        return False
    return callable(getattr(config, "patch", None))


@functools.lru_cache(maxsize=None)
def _detect_aot_precompile() -> bool:
    import torch

    return callable(getattr(torch.compiler, "load_compiled_function", None))


@functools.lru_cache(maxsize=None)
def _detect_recompile_limit() -> bool:
    try:
        import torch._dynamo.config as dynamo_config
    except ImportError:
        return False
    return hasattr(dynamo_config, "accumulated_recompile_limit")


def _detect_fast_linker() -> bool:
    return _detect_inductor_config() and "cpp.cxx" in valid_inductor_options()


# name -> (detector, needs a tested torch in "auto" mode, what it is, its public fallback)
FEATURES: dict[str, tuple[Callable[[], bool], bool, str, str]] = {
    "traced_graphs": (_detect_traced_graphs, True,
                      "make_fx + compile_fx_inner without Dynamo/AOTAutograd, hand-written size guards "
                      "from the ShapeEnv, Dynamo's compile lock, PyCodeCache.load of cached graphs",
                      "torch.compile(dynamic=True, fullgraph=True, options=...)"),
    "dtype_rules_once": (_detect_dtype_rules_once, True,
                         "DtypePropagationOpsHandler.__init__ sets up its dtype rules once (while "
                         "actsearch compiles)", "torch's own __init__ (rules set up at every op)"),
    "deferred_builds": (_detect_deferred_builds, True,
                        "AsyncCompile.wait deferrable (while actsearch compiles): a forward and a "
                        "backward graph build their C++ at once", "each build waited for in its load"),
    "keep_graph": (_detect_keep_graph, False,
                   "torch._C._autograd._get_current_graph_task_keep_graph: backward writes grad*f' "
                   "into f''s buffer when the graph is not kept", "a new buffer for grad*f'"),
    "inductor_config": (_detect_inductor_config, False,
                        "torch._inductor.config.patch around a traced compile",
                        "options passed to torch.compile only"),
    "fast_linker": (_detect_fast_linker, False,
                    "Inductor option cpp.cxx: a g++ wrapper that links actsearch's kernels with a "
                    "fast linker and libtorch stubs", "Inductor's g++ and the system linker"),
    "aot_precompile": (_detect_aot_precompile, False,
                       "torch.compile(...).aot_compile / torch.compiler.load_compiled_function: "
                       "saved compiled functions", "torch.compile, compiled in each process"),
    "recompile_limit": (_detect_recompile_limit, False,
                        "torch._dynamo.config.accumulated_recompile_limit raised for search workers",
                        "Dynamo's default limit (later graphs run uncompiled: same numbers)"),
}


def _patches_allowed() -> bool:
    return os.environ.get("ACTSEARCH_INDUCTOR_PATCHES", "1") != "0"


_active: dict = {}  # (name, mode) -> detected and allowed; detection runs once per process


def active(name: str) -> bool:
    """Whether private feature `name` is used now: switch on, detected, and (in auto mode) on a tested
    torch where it needs one.  ACTSEARCH_INDUCTOR_PATCHES=0 turns off the two class patches only."""
    mode = _mode()
    if mode == "off":
        return False
    if name in ("dtype_rules_once", "deferred_builds") and not _patches_allowed():
        return False
    key = (name, mode)
    on = _active.get(key)
    if on is None:
        detect, needs_tested, _, _ = FEATURES[name]
        try:
            on = bool(detect()) and not (needs_tested and mode == "auto" and not tested_torch())
        except Exception:  # noqa: BLE001 - a detector that breaks means: not available
            on = False
        _active[key] = on
    return on


def features() -> dict:
    """{name: {"active", "detected", "what", "fallback"}} for every private feature, plus the torch
    version, whether it is a tested one and the switch's mode (for diagnostics and the docs)."""
    import torch

    out: dict = {"torch": torch.__version__, "tested_torch": tested_torch(), "mode": _mode()}
    for name, (detect, _, what, fallback) in FEATURES.items():
        try:
            detected = bool(detect())
        except Exception:  # noqa: BLE001
            detected = False
        out[name] = {"active": active(name), "detected": detected, "what": what, "fallback": fallback}
    return out


# ---------------------------------------------------------------- Inductor options

_warned_options: set = set()


@functools.lru_cache(maxsize=1)
def valid_inductor_options() -> frozenset:
    """The option keys Inductor's config has here (torch._inductor.config.get_config_copy(), what
    torch.compile(options=...) and config.patch check against; torch._inductor.list_options() is a
    subset: it leaves out e.g. force_disable_caches); empty when it cannot be read."""
    keys: set = set()
    try:
        from torch._inductor import config

        keys |= set(config.get_config_copy())
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch._inductor

        keys |= set(torch._inductor.list_options())
    except Exception:  # noqa: BLE001
        pass
    return frozenset(keys)


def filter_inductor_options(options: dict) -> dict:
    """`options` without the keys this torch's Inductor does not have (renamed or removed), each
    dropped with one warning: a missing key would otherwise make every compile fail.  The options are
    speed settings, so dropping one changes no result."""
    valid = valid_inductor_options()
    if not valid:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key in valid:
            out[key] = value
        elif key not in _warned_options:
            _warned_options.add(key)
            warnings.warn(f"actsearch: this torch's Inductor has no option {key!r}; compiling without it",
                          RuntimeWarning, stacklevel=2)
    return out


@contextlib.contextmanager
def inductor_config_patch(options: dict):
    """Inductor's config patched with (filtered) `options` within the block; nothing without the feature."""
    options = filter_inductor_options(options)
    if not options or not active("inductor_config"):
        yield
        return
    from torch._inductor import config

    with config.patch(options):
        yield


# ---------------------------------------------------------------- class patches, scoped

_patch_lock = threading.Lock()
_scope_depth = 0
_installed: list = []  # (cls, attribute, wrapper, original or None when inherited)
_wrappers: dict = {}   # (cls, attribute) -> wrapper, made once
_deferral = threading.local()


def _dtype_rules_wrapper():
    """DtypePropagationOpsHandler.__init__ that sets up the rules only when the rule registry changed.

    The handler is a singleton made in __new__, but Python runs __init__ after every construction, and
    Inductor constructs it for every op of every kernel it writes: each time, __init__ sets one rule per
    op (~200 setattr) and checks them against dir(self).  In our compiles that cost 0.2-0.4 ms per
    emitted op, 0.4 s of the tanh-GELU compile.  pytorch PR #192820 makes the same change upstream."""
    from torch._inductor import dtype_propagation, utils

    cls = dtype_propagation.DtypePropagationOpsHandler
    setup = cls.__init__

    def __init__(self) -> None:
        rules = utils.op_dtype_propagation_rules
        if self.__dict__.get("_actsearch_rules") == rules:
            return  # the common case, at every emitted op: one dict comparison, no copy
        snapshot = dict(rules)
        setup(self)
        self._actsearch_rules = snapshot

    __init__._actsearch_once = True  # type: ignore[attr-defined]
    __init__._actsearch_original = setup  # type: ignore[attr-defined]  # benchmarks compare both
    return cls, "__init__", __init__


def _deferrable_wait_wrapper():
    """AsyncCompile.wait that a thread inside `deferred_builds` skips (finish_builds waits later)."""
    from torch._inductor.async_compile import AsyncCompile

    original = AsyncCompile.wait

    def wait(self, scope) -> None:
        pending = getattr(_deferral, "pending", None)
        if pending is None:
            return original(self, scope)
        pending.append((self, scope))  # finish_builds waits, after the compile lock is released

    wait._actsearch_deferrable = True  # type: ignore[attr-defined]
    wait._actsearch_original = original  # type: ignore[attr-defined]
    return AsyncCompile, "wait", wait


_PATCHES = (("dtype_rules_once", _dtype_rules_wrapper), ("deferred_builds", _deferrable_wait_wrapper))


def _install() -> None:
    for name, make in _PATCHES:
        if not active(name):
            continue
        try:
            key = name
            if key not in _wrappers:
                _wrappers[key] = make()
            cls, attr, wrapper = _wrappers[key]
        except Exception:  # noqa: BLE001 - a torch without it: left alone
            continue
        current = cls.__dict__.get(attr)
        if current is wrapper:
            continue
        if current is not getattr(wrapper, "_actsearch_original", None) and attr in cls.__dict__:
            continue  # someone else replaced it since: leave theirs alone
        setattr(cls, attr, wrapper)
        _installed.append((cls, attr, wrapper, current))


def _uninstall() -> None:
    while _installed:
        cls, attr, wrapper, original = _installed.pop()
        if cls.__dict__.get(attr) is not wrapper:
            continue  # replaced by someone else meanwhile: theirs stays
        if original is None:
            delattr(cls, attr)
        else:
            setattr(cls, attr, original)


@contextlib.contextmanager
def compile_scope():
    """Within the block (one of actsearch's compiles), Inductor runs with actsearch's class patches;
    they are restored when the last such block in the process ends.  Nested and concurrent blocks
    share one installation.  Another thread's compile meanwhile sees the patched classes, which compute
    exactly what torch's own code does (dtype rules set up once; deferral only for actsearch's thread)."""
    global _scope_depth
    with _patch_lock:
        _scope_depth += 1
        if _scope_depth == 1:
            _enter_cache_dir()
            try:
                _install()
            except Exception:  # noqa: BLE001 - never fail a compile over an optimisation
                _uninstall()
    try:
        yield
    finally:
        with _patch_lock:
            _scope_depth -= 1
            if _scope_depth == 0:
                _uninstall()
                _leave_cache_dir()


# ---------------------------------------------------------------- Inductor's cache directory, scoped
# actsearch keeps Inductor's artifacts under its own cache (<cache>/inductor) so that a kernel's second
# compile is a cache hit; Inductor reads the directory from TORCHINDUCTOR_CACHE_DIR at each compile.  The
# variable is set only inside compile_scope (and only when the user has not chosen a directory), so the
# user's own torch.compile calls keep Inductor's default directory.
_INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"
_inductor_dir: Optional[str] = None   # set only when the user chose no directory (kernels.cache)
_saved_env: list = []                 # the value to restore (None: unset) while a scope has set ours


def use_inductor_cache_dir(path: os.PathLike) -> None:
    """The directory actsearch's compiles give Inductor (kernels.cache.KernelCache sets it when the user
    has no TORCHINDUCTOR_CACHE_DIR of their own)."""
    global _inductor_dir
    _inductor_dir = str(path)


def _enter_cache_dir() -> None:
    # torch itself writes its default directory into the environment the first time anything asks for
    # it (even torch.compile's wrapper does), so the value found here is torch's, not the user's
    if _inductor_dir is not None:
        _saved_env.append(os.environ.get(_INDUCTOR_ENV))
        os.environ[_INDUCTOR_ENV] = _inductor_dir


def _leave_cache_dir() -> None:
    if _saved_env:
        before = _saved_env.pop()
        if before is None:
            os.environ.pop(_INDUCTOR_ENV, None)
        else:
            os.environ[_INDUCTOR_ENV] = before


@contextlib.contextmanager
def deferred_builds():
    """Within the block, this thread's Inductor module loads (inside compile_scope) return before
    their C++ builds finish; yields the list of pending waits to hand to finish_builds."""
    pending: list = []
    outer = getattr(_deferral, "pending", None)
    _deferral.pending = pending
    try:
        yield pending
    finally:
        _deferral.pending = outer


def finish_builds(pending: list) -> None:
    """Wait for deferred builds (torch's own AsyncCompile.wait); then the modules' kernels are callable."""
    if not pending:
        return
    from torch._inductor.async_compile import AsyncCompile

    wait = AsyncCompile.__dict__.get("wait", AsyncCompile.wait)
    original = getattr(wait, "_actsearch_original", wait)
    while pending:
        compiler, scope = pending.pop(0)
        original(compiler, scope)


# ---------------------------------------------------------------- traced compile (no Dynamo)

_own_compile_lock = threading.Lock()


def _compile_lock():
    """Dynamo's own compile lock where torch has it, so a traced compile and a torch.compile in another
    thread never share Inductor's process-wide state; else ours."""
    try:
        from torch._dynamo.convert_frame import compile_lock
    except ImportError:
        return _own_compile_lock
    return compile_lock


def trace_and_compile(fn: Callable, args, dynamic: bool, options: dict):
    """make_fx-trace `fn` on `args` (symbolic sizes when dynamic, else fake) with Inductor's
    decompositions and compile the graph with compile_fx_inner under `options`.  Returns (compiled
    graph, the traced placeholders' fake values, the shape environment or None).  Raises Unavailable
    when traced graphs are off here (callers then use torch.compile)."""
    if not active("traced_graphs"):
        raise Unavailable("traced graphs are off (ACTSEARCH_TORCH_PRIVATE or this torch)")
    import torch
    from torch._guards import detect_fake_mode
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.decomposition import select_decomp_table
    from torch.fx.experimental.proxy_tensor import make_fx

    # make_fx raises FX's process-wide "symbolic tracing" flag, and a torch.compile'd function called
    # in another thread meanwhile would refuse to run ("FX to symbolically trace a dynamo-optimized
    # function"); inside a compile session (the flag Dynamo raises while AOTAutograd traces) it runs.
    session = getattr(torch.compiler, "_compile_session_context", contextlib.nullcontext)
    with _compile_lock(), session(), torch.no_grad(), compile_scope():  # Inductor's state is process-wide
        gm = make_fx(fn, tracing_mode="symbolic" if dynamic else "fake",
                     decomposition_table=select_decomp_table())(*[a.detach() for a in args])
        inputs = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
        fake_mode = detect_fake_mode(inputs)
        shape_env = getattr(fake_mode, "shape_env", None)
        with inductor_config_patch(options):
            compiled = compile_fx_inner(gm, inputs, is_inference=True)
    return compiled, inputs, shape_env


def size_symbol(size):
    """The sympy expression a traced SymInt size stands for (None for a plain int)."""
    import torch

    if not isinstance(size, torch.SymInt):
        return None
    node = size.node
    expr = getattr(node, "_expr", None)
    return expr if expr is not None else node.expr


def shape_guards(shape_env) -> list:
    """The size guards a trace and Inductor recorded, plus the shape environment's replacements (a
    size specialised to a constant or set equal to another) as equalities."""
    import sympy

    if shape_env is None:
        return []
    exprs = [g.expr for g in shape_env.guards]
    exprs += [sympy.Eq(sym, value) for sym, value in shape_env.replacements.items()]
    return exprs


def load_module(source_code: str, options: Optional[dict] = None) -> Callable:
    """The `call` of an Inductor module from its source (PyCodeCache.load), built under `options`
    (the ones it was compiled with, so its kernel is the same cache entry).  Raises Unavailable when
    traced graphs are off."""
    if not active("traced_graphs"):
        raise Unavailable("traced graphs are off (ACTSEARCH_TORCH_PRIVATE or this torch)")
    from torch._inductor.codecache import PyCodeCache

    with inductor_config_patch(options or {}):
        return PyCodeCache.load(source_code).call


# ---------------------------------------------------------------- autograd

def keep_graph() -> bool:
    """Whether the running backward keeps its graph (retain_graph/create_graph).  Without the private
    query: True, the answer that never lets backward overwrite a saved buffer (a new buffer instead:
    same numbers, one more allocation)."""
    if not active("keep_graph"):
        return True
    return bool(_keep_graph_query()())


@functools.lru_cache(maxsize=1)
def _keep_graph_query() -> Callable[[], bool]:
    import torch

    return torch._C._autograd._get_current_graph_task_keep_graph


# ---------------------------------------------------------------- AOT precompiled functions

def aot_compile(compiled_fn, example_args):
    """torch.compile(...).aot_compile(((args), {})): raises Unavailable when the feature is off."""
    if not active("aot_precompile") or not hasattr(compiled_fn, "aot_compile"):
        raise Unavailable("AOT precompiled functions are off")
    with compile_scope():
        return compiled_fn.aot_compile((tuple(example_args), {}))


def load_compiled_function(fh):
    if not active("aot_precompile"):
        raise Unavailable("AOT precompiled functions are off")
    import torch

    return torch.compiler.load_compiled_function(fh)


# ---------------------------------------------------------------- Dynamo settings

def raise_recompile_limit(limit: int) -> bool:
    """Raise Dynamo's per-process limit of compiled graphs to at least `limit`; whether it was."""
    if not active("recompile_limit"):
        return False
    import torch._dynamo.config as dynamo_config

    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, limit)
    return True


# ---------------------------------------------------------------- private directories

def private_directory(path: os.PathLike) -> Path:
    """`path` as a directory only this user can use, mode 0700: created so, or checked when it exists.

    An existing directory must be a real directory (not a symlink) owned by this user, else
    UnsafeDirectory is raised and nothing is written into it.  One of ours that others could read
    (0755, as older actsearch versions made it) is set to 0700.  One of ours that others could write
    (group/other write bits: its files may not be ours) is renamed aside (<name>.unsafe-<random>, kept
    for inspection) and a fresh one made in its place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory (a symlink or a file)")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} is owned by uid {st.st_uid}, not by this user ({os.getuid()})")
    if st.st_mode & 0o022:
        import secrets

        aside = path.with_name(f"{path.name}.unsafe-{secrets.token_hex(4)}")
        os.rename(path, aside)
        warnings.warn(f"actsearch: {path} was writable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                      f"moved to {aside}, a new private directory made", RuntimeWarning, stacklevel=2)
        return private_directory(path)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UnsafeDirectory(f"{path} could not be made private")
    return path
