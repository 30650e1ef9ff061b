"""PNG plots of candidates (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import numpy as np


def plot_candidate(candidate, path, lo: float = -6.0, hi: float = 6.0, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actsearch.numeric import evaluate

    x = np.linspace(lo, hi, 1201)
    f = evaluate(candidate.safe_expr, x, candidate.params)
    g = evaluate(candidate.safe_derivative, x, candidate.params)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.plot(x, f, label="f(x)", lw=2)
    ax.plot(x, g, label="f'(x)", lw=1.5, ls="--")
    ax.set_xlim(lo, hi)
    finite = np.concatenate([f[np.isfinite(f)], g[np.isfinite(g)]])
    if finite.size:
        top, bottom = np.percentile(finite, 99.5), np.percentile(finite, 0.5)
        pad = 0.1 * (top - bottom + 1e-9)
        ax.set_ylim(bottom - pad, top + pad)
    ax.set_xlabel("x")
    ax.set_title(title or candidate.formula, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
