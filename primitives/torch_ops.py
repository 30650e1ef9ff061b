"""Torch helpers referenced by primitive spellings that need more than one expression."""
from __future__ import annotations

import torch

from .functions import MOMENT_EPS  # one epsilon for numpy and torch moments


def _group_moment(x, stat, groups):
    # Embedded verbatim in generated kernel modules (kernels/codegen.py), beside _axis_moment.
    """Mean / var / std over (channels of a group, spatial) per sample, broadcast back to x's shape: the
    instance moment of x viewed as (N, groups, channels per group, *spatial)."""
    n, c = x.shape[:2]
    g = groups if c % groups == 0 else 1
    xg = x.reshape(n, g, c // g, *x.shape[2:])
    return _axis_moment(xg, "instance", stat).expand_as(xg).reshape(x.shape)


def _axis_moment(x, scope, stat):
    # Embedded verbatim in generated kernel modules (kernels/codegen.py): uses only torch and MOMENT_EPS.
    """Mean / var / std over a batch / instance / layer scope's axes, kept as size-1 dims.  A function
    (not a method call spelled around the argument) so that a compound argument needs no parentheses;
    an instance moment of an (N, C) tensor reduces over no axis (mean x, var 0), as numpy's does
    (torch reads dim=[] as every axis)."""
    spatial = list(range(2, x.dim()))
    dims = {"batch": [0] + spatial, "instance": spatial, "layer": [1] + spatial}[scope]
    if not dims:
        out = x if stat == "mean" else torch.zeros_like(x)
    elif stat == "mean":
        out = x.mean(dim=dims, keepdim=True)
    else:
        out = x.var(dim=dims, keepdim=True, unbiased=False)
    if stat == "std":
        out = torch.sqrt(out + MOMENT_EPS)
    return out
