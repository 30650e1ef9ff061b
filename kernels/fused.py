"""Fused activation ops: a custom autograd.Function over generated, torch.compile'd forward/backward.

One input-sized tensor is saved for backward - f'(x), computed in the forward's pass, or with
learnable parameters (or save="input") x and the parameters, from which backward recomputes f' - so
an activation costs one tensor of activation memory, not one per intermediate as eager autograd does.
Forward and backward are each compiled by Inductor (fused C++/OpenMP loops on CPU, Triton on GPU;
kernels/inductor.py): traced with make_fx and compiled without Dynamo where they can be
(TracedGraph), else with `torch.compile(dynamic=True, fullgraph=True)`; new batch sizes do not
recompile.  With learnable parameters, a training step's first forward builds the backward graph too,
the two C++ builds at once (CompiledKernel._build_with_backward).  A compile failure falls back to the uncompiled generated functions with a recorded warning
(`kernel.compile_error`) - still correct, just slower.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from actsearch.formula import Candidate
from actsearch.kernels.cache import KernelCache
from actsearch.kernels.codegen import KernelSource, generate_source
from actsearch.kernels import inductor, torch_compat
from actsearch.kernels.inductor import TracedGraph, compile_fused, compile_graph, error_summary, shape_pattern


# ACTSEARCH_BUILD_WITH_BACKWARD=0: a forward graph and its backward graph compile one after the other,
# each when first called (benchmarks/compile_traced.py --with-backward compares both).
BUILD_WITH_BACKWARD = os.environ.get("ACTSEARCH_BUILD_WITH_BACKWARD", "1") != "0"


@dataclass(frozen=True)
class CompilePolicy:
    """When compiling pays.  Measured by `actsearch bench kernels` (policy rows; README): a compiled
    fused fwd+bwd call (a traced graph) costs less than the uncompiled op at every size measured
    (1K elements 104-113 us vs 130-147 us, 64K 196-205 vs 303-393 us), so `min_numel` is about repaying
    the compile (~1.5 s, ~2 s with learnable parameters): ~30 us saved per call on a small tensor
    needs ~50K calls, ~100-190 us at 64K ~10K.  With fewer than `min_calls` expected calls a cold
    compile is not repaid either."""

    enabled: bool = True
    min_numel: int = 65536
    min_calls: int = 200

    def should_compile(self, numel: int, expected_calls: Optional[int] = None) -> bool:
        if not self.enabled or numel < self.min_numel:
            return False
        return expected_calls is None or expected_calls >= self.min_calls


class CompiledKernel:
    """Generated functions of one candidate, compiled lazily on first use."""

    def __init__(self, source: KernelSource, policy: CompilePolicy = CompilePolicy(),
                 cache: Optional[KernelCache] = None):
        self.source = source
        self.policy = policy
        self.cache = cache  # with a cache, compiled functions are saved and reloaded across processes
        ns = source.namespace()
        self.eager_forward: Callable = ns["forward"]
        self.eager_backward: Optional[Callable] = ns.get("backward")
        self.eager_backward_x: Optional[Callable] = ns.get("backward_x")
        self.eager_forward_with_derivative: Optional[Callable] = ns.get("forward_with_derivative")
        self._inductor_ns = source.namespace(inductor=True)  # what torch.compile gets
        self._compiled: dict[str, Callable] = {}
        self._lock = threading.Lock()
        self.compile_error: Optional[str] = None
        self.compile_seconds: dict[str, float] = {}

    def _get(self, name: str, fn: Callable, use_compiled: bool) -> Callable:
        if not use_compiled or self.compile_error is not None:
            return fn
        c = self._compiled.get(name)
        if c is None:
            with self._lock:
                c = self._compiled.get(name)
                if c is None:
                    c = self._compiled[name] = _SafeCompiled(self, name, self._inductor_ns[name], fallback=fn)
        return c

    def _flattens(self, compiled: bool, params, *tensors: torch.Tensor) -> bool:
        """Whether a compiled elementwise call may see its tensors as 1-D: contiguous, not already 1-D,
        and every parameter a scalar (per-channel parameters broadcast along a dimension).  Dynamo
        specializes a graph on its inputs' ranks, so without this an activation applied to 2-D and
        4-D tensors compiles (and caches) one graph per rank; flattened, one graph serves them all."""
        return (compiled and self.source.has_backward and tensors[0].dim() != 1
                and all(t.is_contiguous() for t in tensors)
                and all(not isinstance(p, torch.Tensor) or p.dim() == 0 for p in params))

    def forward(self, x: torch.Tensor, *params, compiled: bool = True, with_backward: Optional[str] = None,
                **layer_settings) -> torch.Tensor:
        """f(x; params).  with_backward: the backward function ("backward" or "backward_x") the caller
        will need next; a new forward graph is then built together with it (_build_with_backward).
        layer_settings: `groups` of group moments (normalization-activation candidates only)."""
        fn = self._get("forward", self.eager_forward, compiled)
        flat = self._flattens(compiled, params, x)
        if with_backward is not None and isinstance(fn, _SafeCompiled):
            self._build_with_backward(fn, with_backward, x.view(-1) if flat else x, params)
        if flat:
            return fn(x.view(-1), *params).view(x.shape)
        return fn(x, *params, **layer_settings)

    def _build_with_backward(self, forward: "_SafeCompiled", name: str, x: torch.Tensor, params) -> None:
        """Compile a new forward graph and the backward graph its gradient will call (a contiguous
        grad shaped like x, CompiledKernel.backward's arguments) at once: their Python compiles one
        after the other, their two g++ builds at the same time (kernels.inductor.deferred_builds).
        With learnable parameters these are a candidate's two graphs, and its compile took the two
        builds' time end to end."""
        if not BUILD_WITH_BACKWARD or x.device.type != "cpu":
            return  # CPU only: the deferred wait has not been run on Triton's GPU builds yet
        backward = self._get(name, getattr(self, f"eager_{name}"), True)
        if not isinstance(backward, _SafeCompiled):
            return
        jobs = ((forward, (x, *params)), (backward, (x, torch.empty_like(x), *params)))
        patterns = [sc.pattern_to_build(args) for sc, args in jobs]
        if None in patterns:
            return  # one of them exists already (or cannot be traced): nothing to overlap
        t0 = time.perf_counter()
        started = [(sc, sc.start_graph(args, pattern)) for (sc, args), pattern in zip(jobs, patterns)]
        for sc, st in started:
            if st is not None and sc.finish_graph(st) and sc.first:
                # each function's compile time: from the start of the joint build to its graph ready
                self.compile_seconds[sc.name] = time.perf_counter() - t0
                sc.first = False

    def forward_with_derivative(self, x: torch.Tensor, *params, compiled: bool = True):
        fn = self._get("forward_with_derivative", self.eager_forward_with_derivative, compiled)
        if self._flattens(compiled, params, x):
            y, d = fn(x.view(-1), *params)
            return y.view(x.shape), d.view(x.shape)
        return fn(x, *params)

    def backward(self, x, grad, *params, need_params: bool = True, compiled: bool = True):
        name = "backward" if need_params and params else "backward_x"
        fn = self._get(name, getattr(self, f"eager_{name}"), compiled)
        flat = self._flattens(compiled, params, x, grad)
        out = fn(x.view(-1), grad.view(-1), *params) if flat else fn(x, grad, *params)
        if name == "backward_x":
            out = (out, *([None] * len(params)))
        return (out[0].view(x.shape), *out[1:]) if flat else tuple(out)

    def _fail(self, name: str, exc: BaseException) -> None:
        self.compile_error = f"{name}: {error_summary(exc)}"
        warnings.warn(f"actsearch: compiling {self.source.formula!r} failed ({self.compile_error}); "
                      f"using the uncompiled generated kernel", RuntimeWarning, stacklevel=3)


class _SafeCompiled:
    """A compiled generated function that degrades, never crashes.

    Functions of candidates with a generated backward (elementwise graphs) are traced and compiled by
    Inductor directly (kernels.inductor.compile_graph: no Dynamo, no AOTAutograd; median 0.28 s, up to
    1.8 s less per candidate), one graph per input shape pattern and size guards, when no input needs
    autograd (under create_graph backward must stay differentiable).  With a KernelCache those graphs are saved and
    reloaded by a later process without tracing.  Otherwise, or when tracing fails: with a cache, each
    input signature (dtype, rank, device, requires_grad per tensor) is AOT-compiled once
    (`torch.compile(...).aot_compile`, dynamic shapes), saved and reloaded without Dynamo tracing;
    without one, or when that fails, the plain torch.compile'd function; if that fails too, the eager
    generated function, permanently, with a warning (kernel.compile_error)."""

    def __init__(self, kernel: CompiledKernel, name: str, fn: Callable, fallback: Callable):
        self.kernel, self.name, self.source_fn, self.fn = kernel, name, fn, fallback
        self.compiled = compile_fused(fn, elementwise=kernel.source.has_backward)
        self.first = True
        self.precompiled: dict[tuple, Optional[Callable]] = {}
        self.traced: dict[tuple, Optional[list[TracedGraph]]] = {}  # shape pattern -> graphs; None: failed
        self.use_traced = kernel.source.has_backward and inductor.traced_graphs_enabled()  # elementwise only
        self._compile_pending = True  # torch.compile's first call (its compile) runs in compile_scope
        self.trace_error: Optional[str] = None  # the last trace or traced-call failure (that pattern then
        # goes to torch.compile)

    def __call__(self, *args, **settings):
        """settings: keyword-only layer settings of moment candidates' forward (`groups`); such calls go
        to torch.compile (traced graphs and AOT artifacts are keyed by the tensor arguments only)."""
        if self.kernel.compile_error is not None:
            return self.fn(*args, **settings)
        t0 = time.perf_counter() if self.first else 0.0
        out = self._traced_call(args) if self.use_traced and not settings else None
        if out is None and self.kernel.cache is not None and not settings:
            out = self._precompiled_call(args)
        if out is None:
            try:
                if self._compile_pending:
                    with torch_compat.compile_scope():
                        out = self.compiled(*args, **settings)
                    self._compile_pending = False
                else:
                    out = self.compiled(*args, **settings)
            except Exception as exc:  # noqa: BLE001 - any compiler failure must degrade, not crash
                self.kernel._fail(self.name, exc)
                return self.fn(*args, **settings)
        if self.first:
            self.kernel.compile_seconds[self.name] = time.perf_counter() - t0
            self.first = False
        return out

    def _traced_call(self, args):
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return None  # a traced graph's outputs have no autograd history
        pattern = shape_pattern(args)
        if pattern is None:
            return None
        graphs = self._graphs(pattern)
        if graphs is None:
            return None  # tracing failed for this pattern before
        graph = next((g for g in graphs if g.holds(args)), None)
        if graph is None:
            started = self.start_graph(args, pattern)
            if started is None or not self.finish_graph(started):
                return None
            graph = started[1]
        try:
            return graph(*args)
        except Exception as exc:  # noqa: BLE001 - degrade to torch.compile for this pattern, never crash
            self._trace_failed(pattern, exc)
            return None

    def _graphs(self, pattern) -> Optional[list[TracedGraph]]:
        """The pattern's traced graphs (read from the cache first), or None if it failed before."""
        graphs = self.traced.get(pattern, False)
        if graphs is False:
            cache = self.kernel.cache
            graphs = self.traced[pattern] = (
                cache.traced_graphs(self.kernel.source.candidate_id, self.name, pattern) if cache else [])
        return graphs

    def _trace_failed(self, pattern, exc: BaseException) -> None:
        self.traced[pattern] = None  # this pattern goes to torch.compile from now on
        self.trace_error = error_summary(exc)

    def pattern_to_build(self, args):
        """The shape pattern of `args` when a traced graph for them is still to be built; else None."""
        if not self.use_traced or self.kernel.compile_error is not None:
            return None
        pattern = shape_pattern(args)
        graphs = None if pattern is None else self._graphs(pattern)
        if graphs is None or any(g.holds(args) for g in graphs):
            return None
        return pattern

    def start_graph(self, args, pattern):
        """Trace and compile a graph for `args` (of shape pattern `pattern`) with its C++ build left
        running: (pattern, graph, pending builds) for finish_graph, or None when that failed
        (recorded; torch.compile then)."""
        try:
            with inductor.deferred_builds() as pending:
                graph = compile_graph(self.source_fn, args, elementwise=True)
        except Exception as exc:  # noqa: BLE001 - degrade to torch.compile for this pattern, never crash
            self._trace_failed(pattern, exc)
            return None
        return pattern, graph, pending

    def finish_graph(self, started) -> bool:
        """Wait for a started graph's build; keep (and cache) the graph.  False when the build failed."""
        pattern, graph, pending = started
        try:
            inductor.finish_builds(pending)
        except Exception as exc:  # noqa: BLE001 - degrade to torch.compile for this pattern, never crash
            self._trace_failed(pattern, exc)
            return False
        graphs = self._graphs(pattern)
        if graphs is None:
            return False
        graphs.append(graph)
        cache = self.kernel.cache
        if cache is not None:
            cache.store_traced_graphs(self.kernel.source.candidate_id, self.name, pattern, graphs)
        return True

    def _precompiled_call(self, args):
        sig = tuple((a.dtype, a.dim(), a.device.type, a.requires_grad) if isinstance(a, torch.Tensor) else type(a)
                    for a in args)
        fn = self.precompiled.get(sig, False)
        if fn is False:
            fn = self.precompiled[sig] = self.kernel.cache.precompiled(
                self.kernel.source.candidate_id, self.name, sig, self.source_fn, args,
                elementwise=self.kernel.source.has_backward)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - degrade to torch.compile, never crash
            if "Guard" not in str(exc):
                # not a guard the signature misses (size 1 ...): this artifact is unusable, drop it
                self.precompiled[sig] = None
            return None
_KERNELS: dict[str, CompiledKernel] = {}
_KERNELS_LOCK = threading.Lock()


def get_kernel(candidate: Candidate, cache: Optional[KernelCache] = None,
               policy: CompilePolicy = CompilePolicy()) -> CompiledKernel:
    """The process-wide kernel of a candidate: from memory, else from the on-disk cache, else generated."""
    key = f"{candidate.id}:{policy}:{cache.dir if cache is not None else ''}"
    k = _KERNELS.get(key)
    if k is not None:
        return k
    with _KERNELS_LOCK:
        k = _KERNELS.get(key)
        if k is None:
            source = cache.load(candidate.id) if cache is not None else None
            if source is None:
                source = generate_source(candidate)
                if cache is not None:
                    cache.store(source)
            k = _KERNELS[key] = CompiledKernel(source, policy, cache)
    return k


def owns_buffer(d: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether `d` is a dense buffer of its own, shared with none of `others` (the op's input and
    output): a compiled or generated function may return its input, or one tensor twice (f = exp)."""
    if not d.is_contiguous():
        return False
    ptr = d.untyped_storage().data_ptr()
    return all(o.untyped_storage().data_ptr() != ptr for o in others)


def grad_times_derivative(grad: torch.Tensor, d: torch.Tensor, owned: bool) -> torch.Tensor:
    """grad * f'(x) in backward from a saved f', written into f''s buffer when nothing can read it again.

    Backward's output in a fresh buffer costs a write to memory that is not in cache; in place it
    overwrites f', which it has just read (measured ~1 ms of 4-6 ms for fused fwd+bwd on 4M floats).
    f' is read again only when the graph is kept (retain_graph / create_graph) - the rule
    AOTAutograd uses to donate saved buffers - so then the product gets a new buffer.  Under
    create_graph the product is marked as having no second derivative (x was not saved)."""
    if torch.is_grad_enabled():
        return no_second_derivative(grad * d)
    if (owned and grad.shape == d.shape and grad.dtype == d.dtype and grad.device == d.device
            and not torch_compat.keep_graph()):
        return d.mul_(grad)
    return grad * d


class _NoSecondDerivative(torch.autograd.Function):
    """Identity whose backward raises: marks a first derivative computed from a saved f' (without x)."""

    @staticmethod
    def forward(ctx, t, token):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("actsearch: this fused activation saved f'(x), not x, so it has no second "
                           "derivative; for double backward (gradient penalties, Hessian-vector products) "
                           "build it with save='input' (ActivationModule(..., save='input') or "
                           "fused_activation(..., save='input'))")


def no_second_derivative(t: torch.Tensor) -> torch.Tensor:
    """t as a graph node that raises when differentiated.  The true first derivative depends on x
    (through f'), so it must require grad even when grad does not - otherwise a gradient penalty
    built on it would silently lose the second-order term.  The token makes it require grad."""
    return _NoSecondDerivative.apply(t, torch.zeros((), requires_grad=True))


SAVE_CHOICES = ("auto", "derivative", "input")


def _check_save(save: str) -> None:
    if save not in SAVE_CHOICES:
        raise ValueError(f"save must be one of {SAVE_CHOICES}, got {save!r}")


class FusedActivation(torch.autograd.Function):
    """y = f(x; params) saving one input-sized tensor for backward.

    save="derivative" (what "auto" picks when no parameter needs a gradient): forward computes f and
    f' in one fused pass and saves f'(x); backward is grad * f' (written into f''s buffer when the
    graph is not kept), and the forward's compiled graph is the only one.  Its result has no second
    derivative (only f' was saved): differentiating it again raises.
    save="input" (what "auto" picks with learnable parameters): saves x and the parameters; backward
    recomputes f' and the parameter gradients from them, itself differentiable (double backward)."""

    @staticmethod
    def forward(ctx, kernel: CompiledKernel, use_compiled: bool, save: str, x: torch.Tensor,
                *params: torch.Tensor):
        ctx.kernel, ctx.use_compiled = kernel, use_compiled
        need_params = any(ctx.needs_input_grad[4:])
        ctx.saved_derivative = save == "derivative" or (save == "auto" and ctx.needs_input_grad[3]
                                                          and not need_params)
        ctx.n_params = len(params)
        if ctx.saved_derivative:
            y, d = kernel.forward_with_derivative(x, *params, compiled=use_compiled)
            ctx.save_for_backward(d)
            ctx.owns_derivative = owns_buffer(d, x, y)
            return y
        ctx.save_for_backward(x, *params)
        # the backward function this op's backward will call: built together with a new forward graph
        with_backward = None
        if use_compiled and any(ctx.needs_input_grad[3:]):
            with_backward = "backward" if need_params and params else "backward_x"
        return kernel.forward(x, *params, compiled=use_compiled, with_backward=with_backward)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.saved_derivative:
            (d,) = ctx.saved_tensors
            return (None, None, None, grad_times_derivative(grad, d, ctx.owns_derivative),
                    *([None] * ctx.n_params))
        x, *params = ctx.saved_tensors
        need_params = any(ctx.needs_input_grad[4:])
        grads = ctx.kernel.backward(x, grad.contiguous(), *params, need_params=need_params,
                                    compiled=ctx.use_compiled)
        return (None, None, None, *grads)


def fused_activation(candidate_or_kernel, x: torch.Tensor, *params: torch.Tensor,
                     compiled: Optional[bool] = None, groups: Optional[int] = None,
                     save: str = "auto") -> torch.Tensor:
    """Apply a candidate's fused op.  `compiled=None` lets the kernel's CompilePolicy decide; `save`
    picks what backward keeps (FusedActivation): "input" for double backward."""
    _check_save(save)
    kernel = candidate_or_kernel if isinstance(candidate_or_kernel, CompiledKernel) else get_kernel(candidate_or_kernel)
    use = kernel.policy.should_compile(x.numel()) if compiled is None else compiled
    if not kernel.source.has_backward:  # moment ops: autograd differentiates the generated forward
        return kernel.forward(x, *params, compiled=use, **({"groups": groups} if groups else {}))
    if save == "derivative" and any(p.requires_grad for p in params):
        raise ValueError("save='derivative' keeps no parameters for their gradients; use save='auto' or 'input'")
    return FusedActivation.apply(kernel, use, save, x, *params)


class ActivationModule(nn.Module):
    """Drop-in nn.Module for a candidate.  Parameters are nn.Parameters initialised from the candidate's
    initial values: scalars by default, or one per channel with `channels=C` (broadcast along
    `channel_dim`, default 1 as in (N, C, ...) tensors; use -1 for (..., C) transformer features)."""

    def __init__(self, candidate: Candidate, channels: Optional[int] = None, channel_dim: int = 1,
                 learnable: bool = True, cache: Optional[KernelCache] = None,
                 policy: CompilePolicy = CompilePolicy(), compiled: Optional[bool] = None,
                 groups: Optional[int] = None, save: str = "auto"):
        super().__init__()
        _check_save(save)  # at construction, not at the first forward
        self.save = save  # what backward keeps (FusedActivation); "input" supports double backward
        self.groups = groups  # group count of group moments (normalization-activation candidates)
        self.candidate = candidate
        self.channels, self.channel_dim = channels, channel_dim
        self.kernel = get_kernel(candidate, cache, policy)
        self.compiled = compiled
        self.param_names = list(candidate.params)
        for name, init in candidate.params.items():
            value = torch.full((channels,) if channels else (), float(init))
            if learnable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def _params(self, x: torch.Tensor) -> list[torch.Tensor]:
        ps = [getattr(self, n) for n in self.param_names]
        if not self.channels:
            return [p.to(x.dtype) for p in ps]
        shape = [1] * x.dim()
        shape[self.channel_dim] = self.channels
        return [p.to(x.dtype).view(shape) for p in ps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_activation(self.kernel, x, *self._params(x), compiled=self.compiled, groups=self.groups,
                                save=self.save)

    def extra_repr(self) -> str:
        extra = f", channels={self.channels}" if self.channels else ""
        return f"{self.candidate.formula!r}{extra}"


DEFAULT_SWAP_TYPES = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.LeakyReLU, nn.Mish,
                      nn.Softplus, nn.Hardswish, nn.SELU, nn.CELU, nn.ReLU6)


def swap_activations(model: nn.Module, factory: Callable[[nn.Module], nn.Module],
                     types: Iterable[type] = DEFAULT_SWAP_TYPES) -> int:
    """Replace every submodule of the given types by factory(old_module), in place; returns the count."""
    types = tuple(types)
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, types):
            setattr(model, name, factory(child))
            count += 1
        else:
            count += swap_activations(child, factory, types)
    return count
