"""`actsearch report RUN_DIR`: one HTML file with PNG plots (embedded) read from the run's store.

Plots: best score so far vs evaluations; shape and derivative of the top-k; the Pareto front (score
vs kernel cost when the run had a cost objective, else score vs evaluation order); rejection reasons.
"""
from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter

import numpy as np


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


# the screening module's check codes (actsearch.screening's docstring)
SCREENING_CHECKS = ("non_finite", "non_finite_gradient", "constant", "linear", "zero_gradient",
                    "output_too_large", "gradient_too_large", "duplicate", "not_evaluable")


def build_report(run_dir: str, out_path: str, top_k: int = 6) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actsearch.formula import parse_formula
    from actsearch.numeric import evaluate
    from actsearch.store import ResultStore
    from actsearch.strategies import pareto_front

    store = ResultStore(run_dir, mode="read")
    cfg = store.config() or {}
    ranked = store.ranked()
    history = store.history()
    images: list[tuple[str, str]] = []

    # best so far
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    n = [h[0] for h in history]
    scores = np.array([h[1] if h[1] is not None else np.nan for h in history], dtype=float)
    best = np.fmax.accumulate(np.where(np.isnan(scores), -np.inf, scores)) if len(scores) else scores
    ax.scatter(n, scores, s=10, alpha=0.5, label="candidate")
    ax.plot(n, np.where(np.isfinite(best), best, np.nan), color="C3", label="best so far")
    ax.axhline(0, color="0.6", lw=0.8, ls="--", label="ReLU")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("score (improvement over ReLU)")
    ax.legend()
    ax.grid(alpha=0.3)
    images.append(("Best score vs evaluations", _png(fig)))

    # top-k shapes and derivatives
    good = [r for r in ranked if r["rejected"] is None][:top_k]
    if good:
        cols = min(3, len(good))
        rows = (len(good) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        x = np.linspace(-5, 5, 801)
        for ax, r in zip(axes.flat, good):
            c = parse_formula(r["formula"], params=r["params"] or None)
            with np.errstate(all="ignore"):
                ax.plot(x, evaluate(c.safe_expr, x, c.params), lw=2, label="f")
                ax.plot(x, evaluate(c.safe_derivative, x, c.params), lw=1.2, ls="--", label="f'")
            ax.set_ylim(-3, 5)
            ax.axhline(0, color="0.8", lw=0.8)
            ax.set_title(f"{r['score']:+.3f}  {r['canonical'][:40]}", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(good):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        images.append((f"Top {len(good)}: shapes (solid) and derivatives (dashed)", _png(fig)))

    # Pareto front
    valid = [r for r in ranked if r["score"] is not None]
    if valid:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        has_cost = all(r["cost"] is not None for r in valid)
        xs = [r["cost"] if has_cost else r["order"] for r in valid]
        ys = [r["score"] for r in valid]
        front = pareto_front([(y, x) for x, y in zip(xs, ys)])
        ax.scatter(xs, ys, s=12, alpha=0.5)
        fx = sorted((xs[i], ys[i]) for i in front)
        ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", color="C3", label="Pareto front")
        ax.set_xlabel("kernel cost relative to ReLU" if has_cost else "evaluation order")
        ax.set_ylabel("score")
        ax.legend()
        ax.grid(alpha=0.3)
        images.append(("Pareto front: score vs " + ("cost" if has_cost else "evaluation order"), _png(fig)))

    # rejection reasons
    # by reason code (actsearch.rejection); screened-out candidates by the screening check that failed
    reasons = Counter({code: n for code, n in store.rejection_counts().items() if code != "screened_out"})
    for text in store.screening_reasons():
        check = (text or "").split(":", 1)[0].strip()
        if check in SCREENING_CHECKS:
            reasons[f"screened_out: {check}"] += 1
    if reasons:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.4 * len(reasons)))
        items = reasons.most_common()
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="C1")
        ax.set_xlabel("candidates")
        images.append(("Rejection reasons", _png(fig)))

    def row(i, r):
        score = "" if r["score"] is None else f"{r['score']:+.4f}"
        near = r["nearest"]["name"] or "novel"
        return (f"<tr><td>{i}</td><td>{score}</td><td><code>{html.escape(r['canonical'] or r['formula'])}</code></td>"
                f"<td>{html.escape(near)}</td><td>{html.escape(r['rejected'] or '')}</td><td><code>{r['id']}</code></td></tr>")

    rows_html = "".join(row(i, r) for i, r in enumerate(ranked[:25], 1))
    body = "".join(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}'/>" for t, b in images)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>actsearch report: {html.escape(run_dir)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>actsearch run <code>{html.escape(run_dir)}</code></h1>
<p>space <b>{html.escape(str(cfg.get('space')))}</b>, strategy <b>{html.escape(str(cfg.get('strategy')))}</b>,
tasks {html.escape(', '.join(cfg.get('tasks', [])))}, {cfg.get('seeds')} seeds; {len(ranked)} evaluated,
{sum(1 for r in ranked if r['rejected'])} rejected in training, {store.n_screened_out()} screened out.</p>
<h2>Top candidates</h2><table><tr><th>#</th><th>score</th><th>formula</th><th>nearest known</th><th>rejected</th><th>id</th></tr>
{rows_html}</table>{body}</body></html>"""
    store.close()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w") as f:
            f.write(doc)
    except OSError as exc:  # e.g. the default RUN_DIR/report.html of a run kept on read-only media
        from actsearch.store import StoreError

        raise StoreError(f"cannot write the report to {out_path} ({exc.strerror or exc}); choose a writable "
                         f"file with -o") from None
    return out_path
