"""How every fused-op function is compiled: torch.compile with Inductor, one setting for all callers
(fused.py compiles lazily in process, cache.py AOT-compiles what it saves to disk)."""
from __future__ import annotations

from typing import Callable

# With dynamic shapes Inductor puts a masked vector tail inside the main loop by default; a scalar tail
# after it gives the main loop the code of a static shape.  Measured side by side on 4M floats, 2
# threads: x*Phi(x) 3.07-3.22 ms against 3.69-3.90 (static shape 3.06-3.17); the SiLU forward with f'
# 2.81-2.92 against 2.91-3.00.  Only the last numel % 16 elements take the scalar path.
INDUCTOR_OPTIONS = {"cpp.enable_loop_tail_vec": False}


def compile_fused(fn: Callable) -> Callable:
    """Dynamic shapes (no recompile per batch size), one graph, INDUCTOR_OPTIONS."""
    import torch

    return torch.compile(fn, dynamic=True, fullgraph=True, options=dict(INDUCTOR_OPTIONS))
