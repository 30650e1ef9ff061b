"""Population-batched normalization-activation layers: each member's layer on its own slice.

A layer task's model (actsearch.tasks, kind "layer") has a layer slot wherever a BatchNorm+ReLU pair
would be; `PopNormAct` is that slot for a population.  Its members' units are `Layer`s (what `Member.activation`
holds on a layer task): a formula layer (a moment candidate such as EvoNorm-S0 ``x*sigmoid(v*x)/group_std(x)``,
trained as an actsearch.layers.LayerModule) or a built-in baseline (`BUILTIN_LAYERS`).

Layout
------
The slot receives the population tensor x (K, B, C, *spatial), usually the (K, B, ...) view of a PopConv's
contiguous (B, K*C, *spatial) output.  Members sharing a layer (the same `Layer.key`; the population puts
them next to each other) form a run, and a run of m members is ONE module applied to its slice folded onto
the channel axis, (B, m*C, *spatial), member j's channels [j*C, (j+1)*C): the grouped convolution's layout,
so a slot holding one run reads and writes without a copy.  On that layout
  - batch moments (over the batch and spatial axes, per channel) and instance moments (per sample and
    channel) are per member by construction;
  - group moments use the task's `groups` per member (m*groups groups in all, none straddling two members);
  - layer moments reduce over each member's own channels (`LayerModule(members=m)`);
  - each per-channel vector (the formula's parameters, the affine's weight and bias, the running averages
    of batch moments) is the m members' (C,) vectors end to end, shape (m*C,).
Nothing mixes members, so a member trained in a population equals it trained alone, and perturbing one
member's input or parameters leaves the others' outputs unchanged (tests/test_layer_tasks.py).  Dropping
members (`keep`) rebuilds a shrunken run's module with the survivors' slices of its parameters and buffers.

Formula layers reuse actsearch.layers unchanged in maths (its plan, fused kernels, running statistics);
the slot only chooses the layout and the task's settings (`LayerSettings`: groups, eps, momentum).

Baselines
---------
BN-ReLU, GN-ReLU and BN-SiLU are torch's own layers (F.batch_norm / F.group_norm, then F.relu / F.silu),
with the affine BEFORE the activation as in every BN-ReLU network.  They are not formulas: a LayerModule
applies its affine after the whole formula, so the layer of ``relu((x - batch_mean(x))/batch_std(x))`` is
gamma*relu(bn(x)) + beta, a different (and weaker) layer than BN-ReLU.  EvoNorm-B0 and EvoNorm-S0 are their
formulas (`EVONORM_B0`, `EVONORM_S0`, v initialised to 1), trained by the same LayerModule a candidate gets
with the task's settings, so evaluating the formula itself trains exactly like the baseline (as
``x*sigmoid(x)`` does like SiLU).  One set of settings serves every layer of a task: eps 1e-5 inside
every std (timm's EvoNorm2dB0 uses 1e-3), `groups` groups (GN-ReLU and S0 alike), momentum 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from actsearch.formula import Candidate, parse_formula
from actsearch.population import Member, MemberwiseModule, PopulationModel, member_runs

__all__ = ["Layer", "LayerSettings", "BUILTIN_LAYERS", "EVONORM_B0", "EVONORM_S0", "make_layer", "NormAct",
           "PopNormAct", "LayerPopulationModel"]

EVONORM_B0 = "x/max(batch_std(x), v*x + instance_std(x))"
EVONORM_S0 = "x*sigmoid(v*x)/group_std(x)"


@dataclass(frozen=True)
class LayerSettings:
    """A layer task's settings for every layer slot: group count of group moments and of GroupNorm
    (per member), eps inside every std / variance, running-average momentum; `compiled` as
    LayerModule's (None: the kernel's CompilePolicy decides by size)."""

    groups: int = 4
    eps: float = 1e-5
    momentum: float = 0.1
    compiled: Optional[bool] = None


@dataclass(frozen=True)
class Layer:
    """What a member applies in every layer slot: a built-in norm+act (`norm`, `act`) or a formula layer
    (`candidate`).  `key` identifies it: the built-in's name or the candidate id.  Duck-types `Activation`
    (key, label, params, candidate) for train_population."""

    key: str
    label: str
    candidate: Optional[Candidate] = field(default=None, repr=False, compare=False)
    norm: Optional[str] = None   # built-ins: "batch" | "group"
    act: Optional[str] = None    # built-ins: "relu" | "silu"
    params: tuple = ()


_NATIVE = {"bn-relu": ("BatchNorm + ReLU", "batch", "relu"), "gn-relu": ("GroupNorm + ReLU", "group", "relu"),
           "bn-silu": ("BatchNorm + SiLU", "batch", "silu")}
_FORMULAS = {"evonorm-b0": ("EvoNorm-B0", EVONORM_B0), "evonorm-s0": ("EvoNorm-S0", EVONORM_S0)}
# the names `--baselines` accepts on a layer task, with their titles
BUILTIN_LAYERS: dict[str, str] = {**{k: v[0] for k, v in _NATIVE.items()}, **{k: v[0] for k, v in _FORMULAS.items()}}
_ACTS = {"relu": F.relu, "silu": F.silu}


def make_layer(spec: Union[str, Candidate, Layer]) -> Layer:
    """A built-in layer by name (`BUILTIN_LAYERS`), or a moment candidate as a formula layer; a scalar
    activation (no moment ops) is refused with a ValueError, as is a formula LayerModule cannot build."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, str):
        if spec in _NATIVE:
            title, norm, act = _NATIVE[spec]
            return Layer(spec, title, norm=norm, act=act)
        if spec in _FORMULAS:
            title, formula = _FORMULAS[spec]
            c = parse_formula(formula, params={"v": 1.0})
            return Layer(spec, title, candidate=c, params=tuple(c.params.items()))
        raise ValueError(f"unknown built-in layer {spec!r}; known: {', '.join(BUILTIN_LAYERS)}")
    if not isinstance(spec, Candidate):
        raise ValueError(f"expected a layer (a built-in name or a Candidate), got {spec!r}")
    if not spec.is_tensor_op:
        raise ValueError(f"{spec.formula!r} is a scalar activation (no moment ops such as batch_std(x) or "
                         "group_std(x)); the layer tasks train normalization-activation layers: evaluate it "
                         "on an activation task (e.g. `--tasks all`; `actsearch tasks` lists each task's kind)")
    from actsearch.layers import LayerModule

    try:  # a parameter named weight/bias/running_*: refused here, before any training
        LayerModule(spec, 4, groups=1, compiled=False)
    except ValueError as exc:
        raise ValueError(f"{spec.formula!r} cannot be trained as a layer: {exc}") from None
    return Layer(spec.id, spec.formula, candidate=spec, params=tuple(spec.params.items()))


class NormAct(nn.Module):
    """A built-in baseline over (N, members*C, *spatial): BatchNorm or GroupNorm (affine inside, before the
    activation; BatchNorm with running statistics) then ReLU or SiLU, `members` layers side by side
    (GroupNorm with `groups` groups per member; BatchNorm is per channel)."""

    def __init__(self, norm: str, act: str, channels: int, members: int = 1, groups: int = 4, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        if norm not in ("batch", "group") or act not in _ACTS:
            raise ValueError(f"unknown norm {norm!r} or activation {act!r}")
        if channels % members or (norm == "group" and (channels // members) % groups):
            raise ValueError(f"channels ({channels}) must split into {members} members of {groups} groups")
        self.norm, self.act, self.channels, self.members = norm, act, channels, members
        self.groups, self.eps, self.momentum = groups, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        if norm == "batch":
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "batch":
            y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                             self.momentum, self.eps)
        else:
            y = F.group_norm(x, self.groups * self.members, self.weight, self.bias, self.eps)
        return _ACTS[self.act](y)

    def extra_repr(self) -> str:
        return f"{self.norm}, {self.act}, channels={self.channels}, members={self.members}"


class PopNormAct(MemberwiseModule):
    """A layer slot of C channels for a population: member k's layer on x[k] (see the module docstring for
    the layout).  x: (K, B, C, *spatial) -> the same shape, as a (K, B, ...) view of a contiguous
    (B, K*C, ...) tensor."""

    def __init__(self, ctx, channels: int, settings: LayerSettings = LayerSettings()):
        super().__init__()
        self.channels, self.settings = int(channels), settings
        self.compile_candidates: Optional[bool] = None  # False: evaluation passes run the eager kernels
        self.runs = member_runs(ctx.members)
        for layer, _, _ in self.runs:
            if not isinstance(layer, Layer):
                raise ValueError(f"a layer slot needs layers (actsearch.pop_layers.make_layer), got {layer!r}")
        self.units = nn.ModuleList([self._unit(layer, b - a) for layer, a, b in self.runs])

    def _unit(self, layer: Layer, m: int) -> nn.Module:
        s, c = self.settings, m * self.channels
        if layer.candidate is not None:
            from actsearch.layers import LayerModule

            return LayerModule(layer.candidate, c, groups=s.groups, members=m, eps=s.eps, momentum=s.momentum,
                               compiled=s.compiled)
        return NormAct(layer.norm, layer.act, c, members=m, groups=s.groups, eps=s.eps, momentum=s.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, rest = x.shape[1], self.channels, x.shape[3:]
        if x.shape[2] != C:
            raise ValueError(f"expected (K, B, {C}, ...), got shape {tuple(x.shape)}")
        xf = x.transpose(0, 1)  # (B, K, C, ...): contiguous when x came from a PopConv
        outs = []
        for (layer, a, b), unit in zip(self.runs, self.units):
            if layer.candidate is not None:
                unit.compiled = False if self.compile_candidates is False else self.settings.compiled
            xs = xf if len(self.runs) == 1 else xf[:, a:b]
            outs.append(unit(xs.reshape(B, (b - a) * C, *rest)).view(B, b - a, C, *rest))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        return y.transpose(0, 1)

    def keep(self, idx: torch.Tensor) -> list[tuple[nn.Parameter, nn.Parameter, torch.Tensor]]:
        """Keep the members at `idx`: a run that loses members gets a new module holding the survivors'
        channels of every parameter and buffer (running averages included); returns (old parameter, new
        parameter, channel rows kept) for the optimizer's state."""
        kept = set(idx.tolist())
        runs, units, moved, pos = [], nn.ModuleList(), [], 0
        C = self.channels
        for (layer, a, b), unit in zip(self.runs, self.units):
            local = [k - a for k in range(a, b) if k in kept]
            if not local:
                continue
            if len(local) < b - a:
                li = torch.tensor(local)
                rows = (li[:, None] * C + torch.arange(C)).reshape(-1)
                new = self._unit(layer, len(local)).train(unit.training)
                new.load_state_dict({k: v[rows] for k, v in unit.state_dict().items()})
                moved += [(p, q, rows) for p, q in zip(unit.parameters(), new.parameters())]
                unit = new
            runs.append((layer, pos, pos + len(local)))
            units.append(unit)
            pos += len(local)
        self.runs, self.units = runs, units
        return moved

    def extra_repr(self) -> str:
        return f"channels={self.channels}, runs={[(layer.key, b - a) for layer, a, b in self.runs]}"


class LayerPopulationModel(PopulationModel):
    """Base of the layer tasks' models: `norm_act(C)` makes a layer slot with the task's settings."""

    def __init__(self, members: Sequence[Member], settings: LayerSettings = LayerSettings()):
        super().__init__(members)
        self.settings = settings

    def norm_act(self, channels: int) -> PopNormAct:
        return PopNormAct(self.ctx, channels, self.settings)

    def act(self):
        raise TypeError("a layer task's model has layer slots (norm_act), not activations")
