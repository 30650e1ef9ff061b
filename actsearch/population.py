"""Population-batched models: K independent networks trained as one.

Every learnable tensor has the member axis first (shape (K, ...)), so member k's network is the slice
[k] of every parameter; layers compute all members at once (torch.bmm, grouped convolutions, one
attention call over K*B sequences) and each member applies its own activation to its slice.  Nothing
mixes members: member k's outputs, loss and gradients depend only on its own slice, which is why
training a member in a population equals training it alone (tests/test_population.py), and why a
member whose activation produced NaN can be dropped (`keep`) without touching the others.

Members are initialised from their own seed (one torch.Generator per member, layers created in a fixed
order), so member k gets the same initial weights whatever the population around it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from actsearch.formula import Candidate

# Built-in baselines run torch's own kernels; their keys double as the names `--baselines` accepts.
BUILTIN_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "mish": F.mish, "elu": F.elu, "softplus": F.softplus, "leaky_relu": F.leaky_relu, "identity": lambda x: x,
}


@dataclass(frozen=True)
class Activation:
    """What a member applies: a torch built-in (by name) or a candidate's fused op, with its learnable
    scalar parameters (trained per member).  `key` identifies it: the built-in's name or the candidate id."""

    key: str
    label: str
    fn: Callable = field(repr=False, compare=False)
    params: tuple = ()  # ((name, initial value), ...)
    candidate: Optional[Candidate] = field(default=None, repr=False, compare=False)


def make_activation(spec: Union[str, Candidate, Activation]) -> Activation:
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        if spec not in BUILTIN_ACTIVATIONS:
            raise ValueError(f"unknown built-in activation {spec!r}; known: {', '.join(BUILTIN_ACTIVATIONS)}")
        return Activation(spec, spec, BUILTIN_ACTIVATIONS[spec])
    if not isinstance(spec, Candidate):
        raise ValueError(f"expected an activation (a built-in name or a Candidate), got {spec!r}")
    if spec.is_tensor_op:
        raise ValueError(f"{spec.formula!r} is a normalization-activation layer (it uses moment ops); the "
                         "activation tasks train scalar activations: evaluate it on a layer task "
                         "(`--tasks layers`; `actsearch tasks` lists each task's kind)")
    from actsearch.kernels.fused import fused_activation, get_kernel

    kernel = get_kernel(spec)
    return Activation(spec.id, spec.formula,
                      lambda x, *p, compiled=None: fused_activation(kernel, x, *p, compiled=compiled),
                      tuple(spec.params.items()), spec)


@dataclass(frozen=True)
class Member:
    """One network of a population: an activation (on a layer task a layer, actsearch.pop_layers.Layer)
    and the seed of its initial weights and data order."""

    activation: Activation
    seed: int


class PopulationContext:
    """Per-member generators for initialisation, consumed in layer-creation order."""

    def __init__(self, members: Sequence[Member], fuse_candidates: bool = False):
        self.members = list(members)
        self.K = len(self.members)
        self.fuse_candidates = fuse_candidates
        self.generators = [torch.Generator().manual_seed(int(m.seed) * 1_000_003 + 17) for m in self.members]

    def uniform(self, shape: tuple, bound: float) -> torch.Tensor:
        """(K, *shape), member k drawn from U(-bound, bound) with its own generator."""
        out = torch.empty((self.K, *shape))
        for k, g in enumerate(self.generators):
            out[k].uniform_(-bound, bound, generator=g)
        return out

    def normal(self, shape: tuple, std: float) -> torch.Tensor:
        out = torch.empty((self.K, *shape))
        for k, g in enumerate(self.generators):
            out[k].normal_(0.0, std, generator=g)
        return out


class PopLinear(nn.Module):
    """y[k] = x[k] @ W[k] + b[k] for x of shape (K, ..., in); torch.nn.Linear's default initialisation."""

    def __init__(self, ctx: PopulationContext, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = nn.Parameter(ctx.uniform((n_in, n_out), bound))
        self.bias = nn.Parameter(ctx.uniform((1, n_out), bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, n_out = x.shape[0], self.weight.shape[-1]
        flat = x.reshape(K, -1, x.shape[-1])
        y = torch.baddbmm(self.bias, flat, self.weight) if self.bias is not None else torch.bmm(flat, self.weight)
        return y.reshape(*x.shape[:-1], n_out)


class PopConv(nn.Module):
    """Per-member Conv1d/Conv2d as one grouped convolution: x (K, B, C, *spatial) -> (K, B, C', *spatial').

    `groups` is each member's own grouping (c_in for a depthwise convolution), `bias=False` leaves the
    bias out (a convolution followed by a normalization); initialisation as torch.nn.Conv*d's (fan-in
    c_in/groups * kernel**dims).  The output is a (K, B, ...) view of a contiguous (B, K*C', ...) tensor,
    which the next PopConv (or PopNormAct) reads without a copy."""

    def __init__(self, ctx: PopulationContext, dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True):
        super().__init__()
        if c_in % groups or c_out % groups:
            raise ValueError(f"c_in ({c_in}) and c_out ({c_out}) must be divisible by groups ({groups})")
        ks = (kernel,) * dims
        bound = 1 / math.sqrt(c_in // groups * kernel ** dims)
        self.weight = nn.Parameter(ctx.uniform((c_out, c_in // groups, *ks), bound))
        self.bias = nn.Parameter(ctx.uniform((c_out,), bound)) if bias else None
        self.conv = F.conv1d if dims == 1 else F.conv2d
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, B = x.shape[:2]
        # (K, B, C, ...) -> (B, K*C, ...): member k's channels form group k (groups of it, with `groups`)
        xg = x.transpose(0, 1).reshape(B, K * x.shape[2], *x.shape[3:])
        y = self.conv(xg, self.weight.reshape(-1, *self.weight.shape[2:]),
                      None if self.bias is None else self.bias.reshape(-1),
                      stride=self.stride, padding=self.padding, groups=K * self.groups)
        return y.reshape(B, K, -1, *y.shape[2:]).transpose(0, 1)


class PopLayerNorm(nn.Module):
    def __init__(self, ctx: PopulationContext, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ctx.K, dim))
        self.bias = nn.Parameter(torch.zeros(ctx.K, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return F.layer_norm(x, x.shape[-1:]) * self.weight.view(shape) + self.bias.view(shape)


class PopEmbedding(nn.Module):
    def __init__(self, ctx: PopulationContext, n: int, dim: int, std: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(ctx.normal((n, dim), std))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx (K, ...) of integers
        K = idx.shape[0]
        members = torch.arange(K).view(K, *([1] * (idx.dim() - 1)))
        return self.weight[members, idx]


class MemberwiseModule(nn.Module):
    """A module that keeps its per-member state in a layout of its own (runs of members sharing an
    activation or a layer) rather than on a leading member axis: `PopulationModel.keep` asks it to drop
    members itself.  `keep(idx)` returns (old parameter, its replacement, the rows of it kept) for every
    surviving parameter, so the caller can slice the optimizer's state the same way.
    `compile_candidates`: None lets each kernel's policy decide; False for evaluation passes."""

    compile_candidates: Optional[bool] = None

    def keep(self, idx: torch.Tensor) -> list[tuple[nn.Parameter, nn.Parameter, torch.Tensor]]:
        raise NotImplementedError


def member_runs(members: Sequence["Member"]) -> list[tuple[object, int, int]]:
    """(unit, start, stop) for each run of consecutive members sharing `member.activation.key`."""
    runs, start = [], 0
    for k in range(1, len(members) + 1):
        if k == len(members) or members[k].activation.key != members[start].activation.key:
            runs.append((members[start].activation, start, k))
            start = k
    return runs


class PopActivation(MemberwiseModule):
    """Applies member k's activation to x[k].  Members sharing an activation are contiguous (the
    population orders them so: built-ins first, then candidates) and each run of them is one call;
    a candidate's learnable parameters are one value per member, broadcast over that member's slice.

    With `fuse_candidates` the candidates' runs are one PopulationKernel call (one compiled graph for
    the whole population, actsearch.kernels.population) instead of one fused op per candidate:
    training pays one compile per population and then a fraction of the per-step cost."""

    def __init__(self, ctx: "PopulationContext"):
        super().__init__()
        self.fuse_candidates = ctx.fuse_candidates
        self.compile_candidates: Optional[bool] = None  # None: each kernel's CompilePolicy decides
        self.runs: list[tuple[Activation, int, int]] = member_runs(ctx.members)
        self.run_params = nn.ModuleList()
        for act, a, b in self.runs:
            self.run_params.append(nn.ParameterList(
                [nn.Parameter(torch.full((b - a,), float(v))) for _, v in act.params]))
        self._population_kernel = None

    def _fused_runs(self):
        """(first candidate run index, PopulationKernel) when candidate runs are fused, else None.

        The kernel is built once for the candidate block as it first ran; after members are dropped
        (`keep`) it keeps serving the survivors, whose rows are scattered into the original layout
        (the dropped rows are don't-cares), so a rejection never costs a recompile."""
        cand = [i for i, (act, _, _) in enumerate(self.runs) if act.candidate is not None]
        if not self.fuse_candidates or not cand or cand != list(range(cand[0], len(self.runs))):
            return None
        if self._population_kernel is None:
            from actsearch.kernels.fused import get_kernel
            from actsearch.kernels.population import population_kernel

            c0 = self.runs[cand[0]][1]
            kernels = [get_kernel(self.runs[i][0].candidate) for i in cand]
            bounds = [(self.runs[i][1] - c0, self.runs[i][2] - c0) for i in cand]
            self._pk_layout = {self.runs[i][0].key: (self.runs[i][1] - c0, self.runs[i][2] - c0,
                                                     [float(v) for _, v in self.runs[i][0].params]) for i in cand}
            self._pk_rows = torch.arange(bounds[-1][1])  # the kernel's row of each current candidate member
            self._population_kernel = population_kernel(kernels, bounds)
        return cand[0], self._population_kernel

    def _apply_fused(self, x: torch.Tensor, first_run: int, pk) -> torch.Tensor:
        from actsearch.kernels.population import population_activation

        c0 = self.runs[first_run][1]
        xc = x if c0 == 0 else x[c0:]
        runs = list(zip(self.runs, self.run_params))[first_run:]
        # the kernel is compiled for the training shape; evaluation passes (compile_candidates False)
        # have other shapes and are too few to repay a compile
        compiled = self.compile_candidates is not False
        if len(self._pk_rows) == pk.rows:  # nobody dropped: rows and runs are the kernel's own
            return population_activation(pk, xc, [p for _, ps in runs for p in ps], compiled=compiled)
        rows = self._pk_rows
        # index_copy / index_select, not index_put / x[rows]: measured 0.96 vs 2.2 ms fwd+bwd on
        # (48, 100, 100), paid twice per step for the rest of a run after any rejection
        full_x = xc.new_zeros((pk.rows, *xc.shape[1:])).index_copy(0, rows, xc)
        current = {act.key: (a - c0, b - c0, ps) for (act, a, b), ps in runs}
        params = []
        for key, (a, b, init) in self._pk_layout.items():
            for j, v in enumerate(init):
                full = torch.full((b - a,), v, dtype=xc.dtype)
                if key in current:
                    start, stop, ps = current[key]
                    full = full.index_put((rows[start:stop] - a,), ps[j])
                params.append(full)
        return population_activation(pk, full_x, params, compiled=compiled).index_select(0, rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        view = (-1,) + (1,) * (x.dim() - 1)
        fused = self._fused_runs()
        n_eager = fused[0] if fused else len(self.runs)
        for (act, a, b), ps in zip(self.runs[:n_eager], self.run_params):
            xs = x if len(self.runs) == 1 else x[a:b]
            ps = [p.view(view) for p in ps]
            # a few evaluation passes never repay a compile: `compile_candidates = False` then
            outs.append(act.fn(xs, *ps) if act.candidate is None or self.compile_candidates is None
                        else act.fn(xs, *ps, compiled=self.compile_candidates))
        if fused:
            outs.append(self._apply_fused(x, *fused))
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)

    def keep(self, idx: torch.Tensor) -> list[tuple[nn.Parameter, nn.Parameter, torch.Tensor]]:
        """Keep only the members at `idx` (sorted positions), dropping empty runs.  Returns (old
        parameter, its replacement, the rows of it kept) for every surviving parameter, so the caller
        can slice the optimizer's state the same way."""
        kept = set(idx.tolist())
        runs, params, pos, moved = [], nn.ModuleList(), 0, []
        for (act, a, b), ps in zip(self.runs, self.run_params):
            local = [k - a for k in range(a, b) if k in kept]
            if not local:
                continue
            li = torch.tensor(local)
            runs.append((act, pos, pos + len(local)))
            new_ps = [nn.Parameter(p.detach()[li]) for p in ps]
            moved += [(p, q, li) for p, q in zip(ps, new_ps)]
            params.append(nn.ParameterList(new_ps))
            pos += len(local)
        if self._population_kernel is not None:  # survivors keep their rows of the kernel's layout
            c0 = next((a for act, a, _ in self.runs if act.candidate is not None), 0)
            self._pk_rows = self._pk_rows[[k - c0 for k in sorted(kept) if k >= c0]]
        self.runs, self.run_params = runs, params
        return moved


class PopulationModel(nn.Module):
    """Base of the tasks' models: holds the members and drops members (`keep`) consistently."""

    def __init__(self, members: Sequence[Member], fuse_candidates: bool = False):
        super().__init__()
        self.members = list(members)
        self.ctx = PopulationContext(self.members, fuse_candidates)

    def act(self) -> PopActivation:
        return PopActivation(self.ctx)

    def keep(self, idx: torch.Tensor, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Keep the members at positions `idx` (a sorted LongTensor): slice every parameter on its member
        axis, and the optimizer's per-parameter state with it, so the survivors continue exactly."""
        old_state = {}
        if optimizer is not None:
            old_state = {id(p): optimizer.state.pop(p, None) for g in optimizer.param_groups for p in g["params"]}
        owned = {id(m) for a in self.modules() if isinstance(a, MemberwiseModule) for m in a.modules() if m is not a}
        for module in [m for m in self.modules() if id(m) not in owned]:
            if isinstance(module, MemberwiseModule):
                for p, new_p, rows in module.keep(idx):
                    st = old_state.pop(id(p), None)
                    if st is not None:
                        old_state[id(new_p)] = _slice_state(st, rows)
                continue
            for name, p in list(module.named_parameters(recurse=False)):
                new_p = nn.Parameter(p.detach()[idx])
                st = old_state.pop(id(p), None)
                if st is not None:
                    old_state[id(new_p)] = _slice_state(st, idx)
                setattr(module, name, new_p)
        self.members = [self.members[i] for i in idx.tolist()]
        self.ctx.members, self.ctx.K = self.members, len(self.members)
        if optimizer is not None:
            params = list(self.parameters())
            optimizer.param_groups[0]["params"] = params
            for p in params:
                if id(p) in old_state and old_state[id(p)] is not None:
                    optimizer.state[p] = old_state[id(p)]


def _slice_state(state: dict, idx: torch.Tensor) -> dict:
    return {k: (v[idx] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in state.items()}
