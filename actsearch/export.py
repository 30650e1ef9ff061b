"""Export a candidate as standalone code a user pastes into their own model.

Formats: "torch" (imports only torch), "triton" (torch + triton kernels), "sympy" and "latex" (the
expression).  The torch/triton files of an activation contain the generated forward/backward, an
autograd.Function that saves only the input and parameters, and an nn.Module with the parameters as
nn.Parameters (scalar, or per channel with `channels=C`).  A normalization-activation candidate (moment
ops; torch format only) exports as a layer module equivalent to actsearch.layers.LayerModule
(`layer_source`): per-channel parameters, the affine, groups, eps, running batch statistics, the same
state_dict names, generated from LayerModule's own split of the formula (`plan_layer`).  Provenance
(formula, canonical id, versions, scores once a result store exists) goes into the module docstring.

Parameter values: a formula exports with its initial values; a candidate of a search run (`RUN_DIR:ID`)
with the values its networks learned (`trained_param_values`: the median over the seeds and layers of one
task's evaluation report) or, asked for, the initial ones; the docstring says which.
"""
from __future__ import annotations

import datetime as _dt
import re
import statistics
from typing import Mapping, Optional

from actsearch import __version__
from actsearch.formula import Candidate

FORMATS = ("torch", "triton", "sympy", "latex")

_CLASS_TEMPLATE = '''

class {fn_class}(torch.autograd.Function):
    """y = f(x; params).  Saves only x and the parameters; backward recomputes f'(x) from them."""

    @staticmethod
    def forward(ctx, x{param_args}):
        ctx.save_for_backward(x{param_args})
        return forward(x{param_args})

    @staticmethod
    def backward(ctx, grad):
        x{param_args}, = ctx.saved_tensors
        grads = backward(x, grad{param_args})
        return grads if len(grads) > 1 else grads[0]


class {module_class}(torch.nn.Module):
    """{title}

    Parameters are learnable ({param_list}); pass channels=C for one value per channel along
    `channel_dim` (1 for (N, C, ...) tensors, -1 for (..., C) features)."""

    def __init__(self, channels=None, channel_dim=1{init_args}):
        super().__init__()
        self.channels, self.channel_dim = channels, channel_dim
{init_body}
    def forward(self, x):
{params_loop}        return {fn_class}.apply(x, *params)

    def extra_repr(self):
        return {formula!r}
'''


# Shared by both module templates: parameters as nn.Parameters (scalar or per channel) and their
# reshaping to broadcast along self.channel_dim.
_PARAMS_LOOP = """        params = []
        for p in ({param_attrs}):
            p = p.to(x.dtype)
            if self.channels:
                shape = [1] * x.dim()
                shape[self.channel_dim] = self.channels
                p = p.view(shape)
            params.append(p)
"""


def _values(candidate: Candidate, values: Optional[Mapping[str, float]]) -> dict:
    """The parameters' exported values: `values` where given, else the candidate's initial ones."""
    return {n: float(values[n]) if values and n in values else v for n, v in candidate.params.items()}


def _param_parts(candidate: Candidate, values: Optional[Mapping[str, float]] = None) -> dict:
    names = list(candidate.params)
    vals = _values(candidate, values)
    return {
        "init_args": "".join(f", {n}={vals[n]!r}" for n in names),
        "init_body": "".join(f"        self.{n} = torch.nn.Parameter(torch.full((channels,) if channels else (), "
                             f"float({n})))\n" for n in names) or "        pass\n",
        "params_loop": _PARAMS_LOOP.format(param_attrs="".join(f"self.{n}, " for n in names)),
    }


def _camel(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and out[0].isalpha() else "Act" + out


def trained_param_values(report: Mapping, task: Optional[str] = None,
                         default_task: Optional[str] = None) -> tuple[dict, str]:
    """The trained parameter values to export from a candidate's evaluation report (as `evaluate` gives
    it, or a run's results.report): for each parameter the median over the seeds and layers of `task`
    (default: `default_task`, the run's first search task, when the report trained it, else the report's
    first task with trained parameters); a per-channel layer entry counts with its median over channels
    (actsearch.learned.pooled_params).  Returns ({name: value}, what the median is over, for the
    docstring).  A ValueError when the report holds no trained parameters (for that task)."""
    from actsearch.learned import pooled_params

    pooled = pooled_params(report, task, default_task)
    return {n: statistics.median(v) for n, v in pooled.values.items()}, pooled.describe()


def _docstring(candidate: Candidate, name: str, fmt: str, provenance: Optional[Mapping[str, str]],
               layer: bool = False, values: Optional[Mapping[str, float]] = None,
               params_from: Optional[str] = None) -> str:
    what = "a normalization-activation layer" if layer else "an activation function"
    lines = [f"{name}: {what} exported by actsearch {__version__} ({fmt} format).", "",
             f"    f(x) = {candidate.formula}",
             f"    canonical id: {candidate.id}"]
    if candidate.params:
        initial = ", ".join(f"{k}={v!r}" for k, v in candidate.params.items())
        if params_from is None:
            lines.append("    initial parameters: " + initial)
        elif values:  # trained
            lines.append("    exported parameters: TRAINED values "
                         + ", ".join(f"{k}={v!r}" for k, v in _values(candidate, values).items())
                         + f" ({params_from})")
            lines.append("    initial parameters: " + initial)
        else:
            lines.append(f"    exported parameters: the INITIAL values {initial} ({params_from})")
    if candidate.source and candidate.source != candidate.formula:
        lines.append(f"    as written: {candidate.source}")
    for k, v in (provenance or {}).items():
        lines.append(f"    {k}: {v}")
    if not provenance or "scores" not in provenance:
        lines.append("    scores: none recorded (exported from a formula, not from a search run)")
    lines += [f"    exported: {_dt.date.today().isoformat()}", ""]
    if layer:
        lines += _LAYER_NOTE
    else:
        lines += ["Generated code: forward/backward are derived symbolically (sympy) with guarded divisions",
                  "and logs; only the input and the parameters are saved for backward.  Needs only torch"
                  + (" and triton (a CUDA GPU)." if fmt == "triton" else ".")]
    return '"""' + "\n".join(lines).replace('"""', "'''") + '\n"""\n'


def export_candidate(candidate: Candidate, fmt: str = "torch", name: Optional[str] = None,
                     provenance: Optional[Mapping[str, str]] = None, values: Optional[Mapping[str, float]] = None,
                     params_from: Optional[str] = None) -> str:
    """Source text of the export.  `fmt` is one of FORMATS.  `values`: parameter values for the module's
    defaults instead of the initial ones (trained values, `trained_param_values`); `params_from`: what the
    exported values are, for the docstring (with `values`, what their median is over; without, why the
    initial values)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "sympy":
        import sympy

        return f"# f(x) = {candidate.formula}   ({candidate.id})\n{sympy.srepr(candidate.expr)}\n"
    if fmt == "latex":
        from actsearch.kernels.printers import latex_code

        return latex_code(candidate.expr) + "\n"
    name = name or "Activation"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"--name must be a Python identifier, got {name!r}")
    if fmt == "torch":
        from actsearch.kernels.codegen import generate_source

        if candidate.is_tensor_op:  # moment ops: a layer module, LayerModule's equivalent
            return (_docstring(candidate, name, fmt, provenance, layer=True, values=values, params_from=params_from)
                    + layer_source(candidate, name, values))
        body = generate_source(candidate).module
    else:
        from actsearch.kernels.triton_gen import generate_triton_source

        body = generate_triton_source(candidate)
    names = list(candidate.params)
    cls = _CLASS_TEMPLATE.format(
        fn_class=f"{_camel(name)}Function", module_class=_camel(name), param_args="".join(f", {n}" for n in names),
        title=f"f(x) = {candidate.formula}", param_list=", ".join(names) or "none", formula=candidate.formula,
        **_param_parts(candidate, values))
    return _docstring(candidate, name, fmt, provenance, values=values, params_from=params_from) + body + cls



# ---- normalization-activation layers ---------------------------------------------------------------
_LAYER_NOTE = [
    "The same layer as actsearch.layers.LayerModule, whose state_dict loads here as it is (names v,",
    "weight, bias, running_mean, running_var: timm's EvoNorm names).  The formula's protected form is",
    "split at its moments as LayerModule splits it (actsearch.layers.plan_layer): the module computes",
    "each moment (mean and biased variance over the scope's axes, std = sqrt(var + eps)) and the",
    "generated elementwise functions below do the rest, followed by the affine weight*y + bias.",
    "Formula parameters, weight and bias are per-channel vectors of shape (C,).  Running averages of",
    "the batch moments are updated in train mode and used in eval mode (BatchNorm's convention: the",
    "running variance averages the unbiased batch variance).  Gradients: autograd differentiates the",
    "forward (plain torch ops; the mean/variance reduction has a small hand-written backward of its",
    "own, in differentiable ops).  Needs only torch.",
]

_LAYER_HELPERS = '''

def _moments(u, scope, groups, need_mean, need_var):
    """(mean, biased variance) of u over the scope's axes (None where not needed), in float32 at least."""
    if u.dtype in (torch.float16, torch.bfloat16):
        u = u.float()
    return _reduce(u, scope, groups, need_mean, need_var)


'''

_LAYER_CLASS = '''

class {cls}(torch.nn.Module):
    """{title}

    A normalization-activation layer over (N, C, *spatial) tensors (see the file's docstring).
    channels: C.  groups / group_size: the group count of group moments (group_size wins when given).
    eps: added to every variance under a std (timm: 1e-3 for EvoNorm-B0, 1e-5 for S0).  momentum: the
    weight of the newest batch in the running averages.  affine: apply weight*y + bias.
    track_running_stats: keep running averages of the batch moments and use them in eval mode.
    {params_doc}"""

    def __init__(self, channels, groups=32, group_size=None, eps={eps!r}, momentum=0.1, affine=True,
                 track_running_stats=True{init_args}):
        super().__init__()
        if group_size:
            if channels % group_size:
                raise ValueError(f"channels ({{channels}}) is not divisible by group_size ({{group_size}})")
            groups = channels // group_size
{group_check}        self.channels, self.groups, self.eps, self.momentum = channels, int(groups), float(eps), float(momentum)
        self.affine, self.track_running_stats = affine, track_running_stats
{init_params}        if affine:
            self.weight = torch.nn.Parameter(torch.ones(channels))
            self.bias = torch.nn.Parameter(torch.zeros(channels))
{init_buffers}
    def forward(self, x):
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected an (N, {{self.channels}}, ...) tensor, got shape {{tuple(x.shape)}}")
        _shape = (1, self.channels) + (1,) * (x.dim() - 2)
{forward_body}        if self.affine:
            _y = self.weight.to(x.dtype).view(_shape) * _y + self.bias.to(x.dtype).view(_shape)
        return _y

    def extra_repr(self):
        return ({formula!r} + f", channels={{self.channels}}, groups={{self.groups}}, eps={{self.eps:g}}, "
                f"momentum={{self.momentum:g}}, affine={{self.affine}}")
'''


# attributes of the exported layer (and names its code uses) that a formula parameter must not take
_LAYER_NAMES = {"x", "self", "torch", "math", "channels", "groups", "group_size", "eps", "momentum", "affine",
                "track_running_stats", "weight", "bias", "extra_repr", "graph", "training"}


def _check_layer_param(name: str) -> None:
    import torch

    if (name in _LAYER_NAMES or name.startswith("_") or name.startswith("running_")
            or re.fullmatch(r"argument\d+", name) or hasattr(torch.nn.Module, name)):
        raise ValueError(f"parameter name {name!r} clashes with a name of the exported layer module (its "
                         f"settings, weight, bias, running_*, nn.Module's attributes, names starting with _); "
                         f"rename it in the formula")


def _running_names(arg) -> tuple[Optional[str], Optional[str]]:
    """Buffer names of an argument's running averages: LayerModule's (running_mean/var, then _1, _2 ...)."""
    suffix = f"_{arg.running}" if arg.running else ""
    return (f"running_mean{suffix}" if arg.needs("batch", "mean") else None,
            f"running_var{suffix}" if arg.needs("batch", "var") else None)


def _layer_forward(plan) -> list[str]:
    """The forward's body up to `_y` (the graph's output before the affine): each argument's moments in
    the plan's order (innermost first), as LayerModule.forward/_moments compute them."""
    import sympy

    lines = []
    if any(a.running is not None for a in plan.arguments):
        lines.append("_batch = self.training or not self.track_running_stats  # else: running averages")
    lines += [f"{n} = self.{n}.to(x.dtype).view(_shape)" for n in plan.params]
    for i, a in enumerate(plan.arguments):
        u = "x" if a.stage is None else f"_u{i}"
        call = None if a.stage is None else f"{u} = argument{i}({', '.join(['x', *a.stage.params])})"
        only_batch = a.running is not None and all(m.scope == "batch" for m in a.moments)
        lines.append(f"# {', '.join(m.name for m in a.moments)}: moments of {sympy.sstr(a.expr)}")
        if call and not only_batch:
            lines.append(call)
        for scope in sorted({m.scope for m in a.moments}):
            need_mean, need_var = a.needs(scope, "mean"), a.needs(scope, "var")
            reduce_ = f"_mean, _var = _moments({u}, {scope!r}, self.groups, {need_mean}, {need_var})"
            if scope == "batch":
                mean, var = _running_names(a)
                lines += ["if _batch:", *([f"    {call}"] if call and only_batch else []), f"    {reduce_}",
                          "    if self.track_running_stats:",
                          f"        _running_update(self, {u}, _mean, _var, {mean!r}, {var!r})",
                          "else:",
                          "    _mean, _var = " + ", ".join(f"self.{r}.view(_shape)" if r else "None"
                                                          for r in (mean, var))]
            else:
                lines.append(reduce_)
            if a.needs(scope, "std"):
                lines.append("_std = torch.sqrt(_var + self.eps)")
            lines += [f"{m.name} = _{m.stat}.to(x.dtype)" for m in a.moments if m.scope == scope]
    lines.append(f"_y = graph({', '.join(['x', *plan.output.params])})")
    return lines


def layer_source(candidate: Candidate, name: str = "Layer", values: Optional[Mapping[str, float]] = None) -> str:
    """Standalone torch source (after the docstring) of a moment candidate as a layer module equivalent
    to actsearch.layers.LayerModule: plan_layer's split, its elementwise pieces printed by codegen, the
    moment reductions embedded from actsearch.layers (one definition), the module from the templates
    above.  A ValueError if a parameter's name clashes with a name of the module."""
    import inspect

    from actsearch import layers
    from actsearch.kernels import fast_math
    from actsearch.kernels.codegen import function_source
    from actsearch.primitives.functions import MOMENT_EPS

    for n in candidate.params:
        _check_layer_param(n)
    plan = layers.plan_layer(candidate, affine=False)  # the affine is the module's own, after the graph
    functions = [function_source(f"argument{i}", a.stage.params, a.stage.expr)
                 for i, a in enumerate(plan.arguments) if a.stage is not None]
    functions.append(function_source("graph", plan.output.params, plan.output.expr))
    code = "\n\n".join(functions)
    head = "import math\nimport torch\n"
    if re.search(rf"(?<![\w.])({'|'.join(fast_math.CALLABLE)})\(", code):
        head += "\n" + fast_math.embedded_source() + "\n"
    helpers = _LAYER_HELPERS + "\n\n".join(inspect.getsource(f) for f in
                                          (layers._reduce, layers._mean_var, layers._MeanVar,
                                           layers._running_update))
    indent = " " * 8
    init_params = "".join(f"{indent}self.{n} = torch.nn.Parameter(torch.full((channels,), float({n})))\n"
                          for n in plan.params)
    buffers = []
    for a in plan.arguments:
        for r, init in zip(_running_names(a) if a.running is not None else (), ("zeros", "ones")):
            if r:
                buffers.append(f"{indent}    self.register_buffer({r!r}, torch.{init}(channels))\n")
    init_buffers = f"{indent}if track_running_stats:\n" + "".join(buffers) if buffers else ""
    group_check = ""
    if "group" in plan.scopes:
        group_check = (f"{indent}if int(groups) < 1 or channels % int(groups):\n"
                       f"{indent}    raise ValueError(f\"channels ({{channels}}) is not divisible by groups "
                       f"({{groups}})\")\n")
    vals = _values(candidate, values)
    params_doc = (f"Formula parameters (per channel, {'trained' if values else 'initial'} values as keyword "
                  "arguments): " + ", ".join(f"{n}={v!r}" for n, v in vals.items()) + "."
                  if candidate.params else "The formula has no parameters.")
    cls = _LAYER_CLASS.format(
        cls=_camel(name), title=f"y = weight*f(x) + bias,  f(x) = {candidate.formula}", params_doc=params_doc,
        eps=MOMENT_EPS, init_args="".join(f", {n}={v!r}" for n, v in vals.items()),
        group_check=group_check, init_params=init_params, init_buffers=init_buffers,
        forward_body="".join(f"{indent}{line}\n" for line in _layer_forward(plan)),
        formula=candidate.formula)
    return head + "\n\n" + code + helpers + cls
