"""Population kernels: several candidates' fused ops compiled as one graph.

Population-batched training (actsearch.training) applies member k's activation to slice k of a
(K, ...) tensor.  Run op by op, a small slice costs every candidate its full chain of eager kernels
(measured: 16 catalog/random candidates on 3x100x100 slices, 3.2 ms per forward); compiled per
candidate it costs every candidate a compiled-call overhead (~100 us) and a compile.  A PopulationKernel
traces all candidates' generated functions on their slices into ONE torch.compile graph: one call per
layer, one compile per population (Inductor fuses the slices' loops and the concatenation).

Runs are consecutive slices [a, b) of the member axis, each with one candidate and its parameters
shaped (b - a, 1) (one value per member).  One compiled graph computes f and f' of every run; backward
is grad * f', and learnable parameters get their gradients from each parametric candidate's generated
backward on its own rows (uncompiled, so a population costs exactly one compile).  A compile failure
degrades to the uncompiled generated functions with a RuntimeWarning, never a crash.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable, Optional, Sequence

import torch

from actsearch.kernels.fused import CompiledKernel

_POPULATION_KERNELS: dict[tuple, "PopulationKernel"] = {}
_LOCK = threading.Lock()


class PopulationKernel:
    def __init__(self, kernels: Sequence[CompiledKernel], bounds: Sequence[tuple[int, int]]):
        if len(kernels) != len(bounds):
            raise ValueError("one (start, stop) bound per kernel")
        for k in kernels:
            if not k.source.has_backward:
                raise ValueError(f"{k.source.formula!r}: moment (normalization) ops have no population kernel")
        self.kernels = list(kernels)
        self.bounds = [(int(a), int(b)) for a, b in bounds]
        self.rows = self.bounds[-1][1] if self.bounds else 0
        self.n_params = [len(k.source.params) for k in self.kernels]
        self.compile_error: Optional[str] = None
        self._fns: dict[bool, Callable] = {}

    def _build(self, inductor: bool) -> Callable:
        fns = [(k._inductor_ns if inductor else k.source.namespace())["forward_with_derivative"]
               for k in self.kernels]
        bounds, n_params = self.bounds, self.n_params

        def forward_with_derivative(x, *params):
            ys, ds, i = [], [], 0
            for f, (a, b), n in zip(fns, bounds, n_params):
                y, d = f(x[a:b], *params[i:i + n])
                i += n
                ys.append(y)
                ds.append(d)
            return torch.cat(ys), torch.cat(ds)

        if inductor:
            return torch.compile(forward_with_derivative, dynamic=True, fullgraph=True)
        return forward_with_derivative

    def forward_with_derivative(self, x: torch.Tensor, *params: torch.Tensor, compiled: bool = True):
        """(f, df/dx) of every run on its rows of x (K, N); params flat in run order, each (b - a, 1)."""
        use = compiled and self.compile_error is None
        fn = self._fns.get(use)
        if fn is None:
            fn = self._fns[use] = self._build(inductor=use)
        if not use:
            return fn(x, *params)
        try:
            # no duck sizing: K x B x H tensors with B == H (100 x 100) would otherwise compile a graph
            # specialised to B == H and recompile at the first evaluation batch
            with torch.fx.experimental._config.patch(use_duck_shape=False):
                return fn(x, *params)
        except Exception as exc:  # noqa: BLE001 - any compiler failure must degrade, not crash
            self.compile_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            warnings.warn(f"actsearch: compiling a population kernel of {len(self.kernels)} candidates failed "
                          f"({self.compile_error}); using the uncompiled generated functions",
                          RuntimeWarning, stacklevel=2)
            return self.forward_with_derivative(x, *params, compiled=False)

    def param_grads(self, x: torch.Tensor, grad: torch.Tensor, params: Sequence[torch.Tensor]) -> list:
        """Gradients of the learnable parameters, run by run with each candidate's generated backward
        (uncompiled: only parametric runs pay, and only their rows)."""
        out, i = [], 0
        for k, (a, b), n in zip(self.kernels, self.bounds, self.n_params):
            if n:
                _, *gp = k.eager_backward(x[a:b], grad[a:b], *params[i:i + n])
                out.extend(gp)
            i += n
        return out


class FusedPopulationActivation(torch.autograd.Function):
    """y = population kernel(x); one compiled graph forward, backward grad * f' (plus, for learnable
    parameters, their gradients from the saved x)."""

    @staticmethod
    def forward(ctx, pk: PopulationKernel, compiled: bool, x: torch.Tensor, *params: torch.Tensor):
        ctx.pk, ctx.shape = pk, x.shape
        x2 = x.detach().reshape(x.shape[0], -1)
        # detached: the compiled graph is guarded on requires_grad; training and evaluation share it
        y, d = pk.forward_with_derivative(x2, *[p.detach() for p in params], compiled=compiled)
        ctx.need_params = any(ctx.needs_input_grad[3:])
        ctx.n_params = len(params)
        ctx.save_for_backward(d, *((x2, *params) if ctx.need_params else ()))
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        d, *rest = ctx.saved_tensors
        g2 = grad.reshape(ctx.shape[0], -1)
        gx = (g2 * d).view(ctx.shape)
        if not ctx.need_params:
            return (None, None, gx, *([None] * ctx.n_params))
        x2, *params = rest
        return (None, None, gx, *ctx.pk.param_grads(x2, g2, params))


def population_kernel(kernels: Sequence[CompiledKernel], bounds: Sequence[tuple[int, int]]) -> PopulationKernel:
    """The process-wide PopulationKernel for these candidates on these slices (compiled once)."""
    key = (tuple(k.source.candidate_id for k in kernels), tuple(map(tuple, bounds)))
    with _LOCK:
        pk = _POPULATION_KERNELS.get(key)
        if pk is None:
            pk = _POPULATION_KERNELS[key] = PopulationKernel(kernels, bounds)
    return pk


def population_activation(pk: PopulationKernel, x: torch.Tensor, params: Sequence[torch.Tensor],
                          compiled: bool = True) -> torch.Tensor:
    """Apply the population kernel to x (pk.rows, ...); params flat in run order, each of shape (b - a,)."""
    return FusedPopulationActivation.apply(pk, compiled, x, *[p.view(-1, 1) for p in params])
