"""Torch helpers referenced by primitive spellings that need more than one expression."""
from __future__ import annotations

import torch

from .functions import MOMENT_EPS  # one epsilon for numpy and torch moments


def _group_moment(x, stat, groups):
    # Embedded verbatim in generated kernel modules (kernels/codegen.py): uses only torch and MOMENT_EPS.
    """Mean / var / std over (channels of a group, spatial) per sample, broadcast back to x's shape."""
    n, c = x.shape[:2]
    g = groups if c % groups == 0 else 1
    xg = x.reshape(n, g, c // g, *x.shape[2:])
    dims = list(range(2, xg.dim()))
    if stat == "mean":
        out = xg.mean(dim=dims, keepdim=True)
    else:
        out = xg.var(dim=dims, keepdim=True, unbiased=False)
        if stat == "std":
            out = torch.sqrt(out + MOMENT_EPS)
    return out.expand_as(xg).reshape(x.shape)
