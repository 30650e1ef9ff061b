"""How every fused-op function is compiled: torch.compile with Inductor, one setting for all callers
(fused.py compiles lazily in process, cache.py AOT-compiles what it saves to disk, population.py
compiles population graphs)."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional

# With dynamic shapes Inductor puts a masked vector tail inside the main loop by default; a scalar tail
# after it gives the main loop the code of a static shape.  Measured side by side on 4M floats, 2
# threads: x*Phi(x) 3.07-3.22 ms against 3.69-3.90 (static shape 3.06-3.17); the SiLU forward with f'
# 2.81-2.92 against 2.91-3.00.  Only the last numel % 16 elements take the scalar path.
INDUCTOR_OPTIONS = {"cpp.enable_loop_tail_vec": False}

# Linkers faster than GNU ld (bfd) at linking a kernel against libtorch_cpu.so (434 MB), fastest first.
FAST_LINKERS = ("mold", "ld.lld", "ld.gold")

_linker_lock = threading.Lock()
_linker_done = False
_linker: Optional[str] = None


def use_fast_linker() -> Optional[str]:
    """Make g++ link Inductor's kernels with a fast linker, if one is installed; returns its path or None.

    Every CPU kernel Inductor builds is one g++ call that compiles and then links the kernel against
    libtorch, libtorch_cpu and libtorch_python.  GNU ld (bfd) spends ~0.4 s of that reading
    libtorch_cpu's symbol table; gold does the same link in ~0.15 s (measured on the object of one
    generated kernel, and per candidate by benchmarks/compile_linker.py).  Inductor has no setting for
    linker flags, so this uses gcc's own lookup: gcc searches the directories in COMPILER_PATH for
    its subprograms (`ld` among them) before PATH, and Inductor's g++ calls inherit this process's
    environment.  Only `ld` is in that directory, so the assembler and compiler proper are unchanged.

    Left alone when the user set COMPILER_PATH, or ACTSEARCH_LINKER=default; ACTSEARCH_LINKER=<name or
    path> picks a linker.  Idempotent and thread-safe; call before anything compiles."""
    global _linker_done, _linker
    if _linker_done:
        return _linker
    with _linker_lock:
        if _linker_done:
            return _linker
        _linker_done = True
        choice = os.environ.get("ACTSEARCH_LINKER", "")
        if choice == "default" or os.environ.get("COMPILER_PATH"):
            return None
        candidates = (choice,) if choice else FAST_LINKERS
        found = next((p for p in (shutil.which(c) for c in candidates) if p), None)
        if found is None:
            return None
        link_dir = Path(tempfile.gettempdir()) / f"actsearch-ld-{os.getuid()}" / Path(found).name
        ld = link_dir / "ld"
        try:
            link_dir.mkdir(parents=True, exist_ok=True)
            if not (ld.is_symlink() and os.readlink(ld) == found):
                tmp = link_dir / f"ld.{os.getpid()}"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(found)
                os.replace(tmp, ld)  # atomic: concurrent workers never see a missing or half-made link
        except OSError:
            return None  # read-only /tmp and the like: keep the default linker
        os.environ["COMPILER_PATH"] = str(link_dir)
        _linker = found
        return found


def compile_fused(fn: Callable) -> Callable:
    """Dynamic shapes (no recompile per batch size), one graph, INDUCTOR_OPTIONS."""
    import torch

    use_fast_linker()
    return torch.compile(fn, dynamic=True, fullgraph=True, options=dict(INDUCTOR_OPTIONS))


def compile_population(fn: Callable) -> Callable:
    """A population graph (kernels/population.py): static shapes, one graph."""
    import torch

    use_fast_linker()
    return torch.compile(fn, dynamic=False, fullgraph=True)
