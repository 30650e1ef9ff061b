"""Candidate -> Triton source: a forward and a backward elementwise kernel plus host wrappers.

Kernels compute in float32 (loads are upcast, stores cast back to the tensor's dtype), parameters are
scalars passed as 0-d tensors, and parameter gradients are reduced per block (tl.sum) and accumulated
with tl.atomic_add into float32 buffers.  Moment (normalization) candidates need reduction kernels
and are not covered: generate_triton_source raises ValueError for them.

Requires the optional `triton` package (`pip install actsearch[gpu]`) only to *run* the source.
"""
from __future__ import annotations


from actsearch.formula import Candidate
from actsearch.kernels.codegen import cse, print_cse
from actsearch.kernels.printers import TritonCodePrinter

BLOCK = 1024


def generate_triton_source(candidate: Candidate, block: int = BLOCK) -> str:
    if candidate.is_tensor_op:
        raise ValueError("Triton export covers elementwise activations; normalization-activation candidates "
                         "(moment ops) need reduction kernels - export them with --format torch")
    printer = TritonCodePrinter()
    names = list(candidate.params)
    P = [f"P_{n}" for n in names]          # pointers to 0-d parameter tensors
    DP = [f"DP_{n}" for n in names]        # pointers to float32 gradient accumulators
    load_params = [f"    {n} = tl.load(P_{n}).to(tl.float32)" for n in names]
    fwd_lines, (y,) = print_cse(cse([candidate.safe_expr], "_t"), printer)
    bwd_lines, outs = print_cse(cse([candidate.safe_derivative, *candidate.param_derivatives.values()], "_d"),
                                printer)

    def ind(lines):
        return [f"    {ln}" for ln in lines]

    pre = ["    pid = tl.program_id(0)", "    offs = pid * BLOCK + tl.arange(0, BLOCK)", "    mask = offs < N",
           "    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)"]
    src = [
        "import torch",
        "import triton",
        "import triton.language as tl",
        "from triton.language.extra import libdevice",
        "",
        f"BLOCK = {int(block)}",
        "",
        "",
        "@triton.jit",
        f"def _forward_kernel(X, Y, {''.join(p + ', ' for p in P)}N, BLOCK: tl.constexpr):",
        *pre, *load_params, *ind(fwd_lines),
        f"    y = ({y}) + 0.0 * x  # broadcast constants to the block",
        "    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)",
        "",
        "",
        "@triton.jit",
        f"def _backward_kernel(X, G, DX, {''.join(p + ', ' for p in P)}{''.join(d + ', ' for d in DP)}N, "
        f"BLOCK: tl.constexpr):",
        *pre,
        "    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)",
        *load_params, *ind(bwd_lines),
        f"    dx = g * ({outs[0]})",
        "    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)",
    ]
    for d, o in zip(DP, outs[1:]):
        src.append(f"    tl.atomic_add({d}, tl.sum(tl.where(mask, g * ({o}) + 0.0 * x, 0.0), axis=0))")
    sig = ", ".join(["x", *names])
    src += [
        "",
        "",
        f"def forward({sig}):",
        "    xc = x.contiguous()",
        "    y = torch.empty_like(xc)",
        "    n = xc.numel()",
        f"    _forward_kernel[(triton.cdiv(n, BLOCK),)](xc, y, {''.join(n + ', ' for n in names)}n, BLOCK=BLOCK)",
        "    return y",
        "",
        "",
        f"def backward(x, grad{''.join(', ' + n for n in names)}):",
        "    xc, gc = x.contiguous(), grad.contiguous()",
        "    dx = torch.empty_like(xc)",
        *[f"    d_{n} = torch.zeros((), dtype=torch.float32, device=x.device)" for n in names],
        "    n = xc.numel()",
        f"    _backward_kernel[(triton.cdiv(n, BLOCK),)](xc, gc, dx, {''.join(n + ', ' for n in names)}"
        f"{''.join('d_' + n + ', ' for n in names)}n, BLOCK=BLOCK)",
        f"    return (dx, {''.join('d_' + n + '.to(' + n + '.dtype).reshape(' + n + '.shape), ' for n in names)})",
        "",
    ]
    return "\n".join(src)
