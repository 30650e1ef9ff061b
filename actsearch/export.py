"""Export a candidate as standalone code a user pastes into their own model.

Formats: "torch" (imports only torch), "triton" (torch + triton kernels), "sympy" and "latex" (the
expression).  The torch/triton files contain the generated forward/backward, an autograd.Function that
saves only the input and parameters, and an nn.Module with the parameters as nn.Parameters (scalar,
or per channel with `channels=C`).  Provenance (formula, canonical id, versions, scores once a result
store exists) goes into the module docstring.
"""
from __future__ import annotations

import datetime as _dt
import re
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


def _param_parts(candidate: Candidate) -> dict:
    names = list(candidate.params)
    return {
        "init_args": "".join(f", {n}={candidate.params[n]!r}" for n in names),
        "init_body": "".join(f"        self.{n} = torch.nn.Parameter(torch.full((channels,) if channels else (), "
                             f"float({n})))\n" for n in names) or "        pass\n",
        "params_loop": _PARAMS_LOOP.format(param_attrs="".join(f"self.{n}, " for n in names)),
    }


def _camel(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and out[0].isalpha() else "Act" + out


def _docstring(candidate: Candidate, name: str, fmt: str, provenance: Optional[Mapping[str, str]]) -> str:
    lines = [f"{name}: an activation function exported by actsearch {__version__} ({fmt} format).", "",
             f"    f(x) = {candidate.formula}",
             f"    canonical id: {candidate.id}"]
    if candidate.params:
        lines.append("    initial parameters: " + ", ".join(f"{k}={v!r}" for k, v in candidate.params.items()))
    if candidate.source and candidate.source != candidate.formula:
        lines.append(f"    as written: {candidate.source}")
    for k, v in (provenance or {}).items():
        lines.append(f"    {k}: {v}")
    if not provenance or "scores" not in provenance:
        lines.append("    scores: none recorded (exported from a formula, not from a search run)")
    lines += [f"    exported: {_dt.date.today().isoformat()}", "",
              "Generated code: forward/backward are derived symbolically (sympy) with guarded divisions",
              "and logs; only the input and the parameters are saved for backward.  Needs only torch"
              + (" and triton (a CUDA GPU)." if fmt == "triton" else ".")]
    return '"""' + "\n".join(lines).replace('"""', "'''") + '\n"""\n'


def export_candidate(candidate: Candidate, fmt: str = "torch", name: Optional[str] = None,
                     provenance: Optional[Mapping[str, str]] = None) -> str:
    """Source text of the export.  `fmt` is one of FORMATS."""
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

        source = generate_source(candidate)
        if not source.has_backward:  # moment ops: autograd differentiates the generated forward
            return _docstring(candidate, name, fmt, provenance) + source.module + _moment_module(candidate, name)
        body = source.module
    else:
        from actsearch.kernels.triton_gen import generate_triton_source

        body = generate_triton_source(candidate)
    names = list(candidate.params)
    cls = _CLASS_TEMPLATE.format(
        fn_class=f"{_camel(name)}Function", module_class=_camel(name), param_args="".join(f", {n}" for n in names),
        title=f"f(x) = {candidate.formula}", param_list=", ".join(names) or "none", formula=candidate.formula,
        **_param_parts(candidate))
    return _docstring(candidate, name, fmt, provenance) + body + cls


def _moment_module(candidate: Candidate, name: str) -> str:
    parts = _param_parts(candidate)
    return f'''

class {_camel(name)}(torch.nn.Module):
    """f(x) = {candidate.formula} on (N, C, ...) tensors (moments over batch/group/instance/layer axes);
    differentiated by autograd.  `groups` is the group count of group moments."""

    def __init__(self, channels=None, groups=32{parts["init_args"]}):
        super().__init__()
        self.channels, self.channel_dim, self.groups = channels, 1, groups
{parts["init_body"]}
    def forward(self, x):
{parts["params_loop"]}        return forward(x, *params, groups=self.groups)
'''
