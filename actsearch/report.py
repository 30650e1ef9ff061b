"""`actsearch report RUN_DIR`: one HTML file with PNG plots (embedded) read from the run's store.

Tables: the top candidates (score, rung reached, the 95% interval of the score at that rung, with several
search tasks the score on each task, and with per-task objectives the Pareto-front mark; nearest known
activation) and, when the run was validated (`actsearch validate`, actsearch.validation), the
validated candidates: search score, fresh-seed score, their gap (the winner's curse), held-out score,
each with its 95% interval, and the verdict against the best baseline.

Scores are measured against the run's reference baseline (its tasks' `Task.reference`: ReLU, or BN-ReLU
for a layer search), which the labels name.

Plots: best score so far vs evaluations; shape and derivative of the top-k (for layers: the output
against the input on a fixed (8, 8, 16) probe tensor, one point per element); the distribution of the
candidates' (rung-0) scores; score by rung (each candidate's score at every rung it completed, only for
a run with more than one rung); the Pareto front of score vs kernel cost (only for a run with a cost
objective where every evaluated candidate has a cost: a score-only run has no Pareto plot); the
validation forest plot (per validated candidate and validation task, the candidate - baseline accuracy
difference on fresh seeds with its 95% interval, against the task's best baseline and against ReLU,
filled where Holm-significant); rejection reasons.
"""
from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter
from typing import Optional

import numpy as np

from actsearch.learned import learned_params, learned_text, learned_values
from actsearch.rejection import RejectionReason, ScreeningCheck

FOREST_TITLE = "Validation: candidate − baseline (95% CI), fresh seeds"
SCORE_BY_RUNG_TITLE = "Score by rung"
PARETO_TITLE = "Pareto front: score vs cost"
VALIDATION_TABLE_TITLE = "Validation"
MAX_LABEL = 48  # characters of a formula in plot labels


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _short(text: str, n: int = MAX_LABEL) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n - 1] + "…"


def _num(x, fmt: str = "+.4f") -> str:
    return "–" if x is None else format(x, fmt)


def _ci(ci, fmt: str = "+.3f") -> str:
    return "" if not ci else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def _score_ci(est: Optional[dict]) -> str:
    """'score [lo, hi]' of a validation estimate ({"score", "ci", "tasks"}) or '–'."""
    if not est or est.get("score") is None:
        return "–"
    ci = _ci(est.get("ci"))
    return f"{est['score']:+.4f}" + (f" {ci}" if ci else "")


# ------------------------------------------------------------------------------------------ plots

def forest_plot(validation: dict):
    """The validation forest plot (a matplotlib figure), or None when nothing was compared.

    One row per (validated candidate, validation task), grouped per candidate under its formula: the
    mean paired accuracy difference candidate - baseline on the fresh seeds with its 95% Student-t
    interval, against the task's best baseline (circles) and against the reference baseline (squares:
    ReLU, BN-ReLU for layers); filled and in colour where the Holm-adjusted p-value is below alpha,
    hollow and grey otherwise."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    alpha = float(validation.get("alpha", 0.05))
    ref = validation.get("reference_baseline") or "relu"
    tasks_order = list(validation.get("tasks") or [])
    held_out_names = set(validation.get("held_out") or []) - set(validation.get("search_tasks") or [])
    labels: list[tuple[float, str, bool]] = []    # (y, text, is group title)
    points: list[tuple[float, dict, str]] = []    # (y, comparison, "best" | "relu")
    y = 0.0
    for cand in validation.get("candidates") or []:
        per_task = cand.get("tasks") or {}
        names = [t for t in tasks_order if t in per_task or t in (cand.get("missing") or [])]
        names += [t for t in per_task if t not in names]
        if not names:
            continue
        labels.append((y, _short(cand.get("formula") or cand.get("canonical") or cand.get("id", "?")), True))
        y += 1
        for t in names:
            entry = per_task.get(t)
            held = entry.get("held_out", t in held_out_names) if entry else t in held_out_names
            text = t + (" (held out)" if held else "")
            if entry is None:
                labels.append((y, text + " (not evaluated)", False))
                y += 1
                continue
            vs = entry.get("vs") or {}
            best = entry.get("best_baseline")
            if best in vs:
                text += f"  (best: {best})"
                points.append((y - 0.13 if best != ref and ref in vs else y, vs[best], "best"))
            if ref in vs and best != ref:
                points.append((y + 0.13 if best in vs else y, vs[ref], "relu"))
            labels.append((y, text, False))
            y += 1
        y += 0.4  # a gap between candidates
    if not points:
        return None

    fig, ax = plt.subplots(figsize=(8.5, 1.3 + 0.3 * len(labels)))
    style = {"best": ("o", "C0"), "relu": ("s", "C3")}
    for yy, v, kind in points:
        marker, colour = style[kind]
        p_holm = v.get("p_holm", v.get("p"))
        significant = p_holm is not None and p_holm < alpha
        c = colour if significant else "0.55"
        ci = v.get("ci")
        if ci:
            ax.errorbar(v["diff"], yy, xerr=[[v["diff"] - ci[0]], [ci[1] - v["diff"]]], fmt="none", ecolor=c,
                        elinewidth=1.4 if significant else 1.0, capsize=2.5)
        ax.plot([v["diff"]], [yy], marker=marker, ms=6, ls="none", color=c, markeredgecolor=c,
                markerfacecolor=c if significant else "white", zorder=3)
    ax.axvline(0, color="0.2", lw=0.9)
    ax.set_yticks([l[0] for l in labels])
    ax.set_yticklabels([l[1] for l in labels], fontsize=8)
    for tick, (_, _, title) in zip(ax.get_yticklabels(), labels):
        if title:
            tick.set_fontweight("bold")
            tick.set_fontfamily("monospace")
    ax.set_ylim(y - 0.4, -0.8)  # first candidate at the top
    ax.set_xlabel("test accuracy difference, candidate − baseline (mean over fresh seeds, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="none", color="C0", label="vs the task's best baseline"),
               Line2D([], [], marker="s", ls="none", color="C3", label=f"vs {ref_label(ref)}"),
               Line2D([], [], marker="o", ls="none", color="0.55", markerfacecolor="white",
                      label=f"not significant (Holm p ≥ {alpha:g})")]
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    return fig


def ref_label(name: Optional[str]) -> str:
    return {"relu": "ReLU", "bn-relu": "BN-ReLU"}.get(name or "relu", name or "relu")


def score_by_rung_plot(rung_rows: list[dict], reference: str = "relu"):
    """Each candidate's score at each rung it completed, as lines from rung to rung (a figure), or None
    when no candidate completed more than rung 0 (a flat run, or nobody promoted yet)."""
    import matplotlib.pyplot as plt

    by_cand: dict[str, dict[int, float]] = {}
    labels: dict[int, str] = {}
    for r in rung_rows:
        if r.get("status") != "done" or r.get("score") is None:
            continue
        by_cand.setdefault(r["candidate_id"], {})[int(r["rung"])] = float(r["score"])
        lab = (r.get("summary") or {}).get("rung_label")
        if lab:
            labels.setdefault(int(r["rung"]), lab)
    rungs = sorted({k for d in by_cand.values() for k in d})
    if len(rungs) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    rng = np.random.default_rng(0)
    only0 = [d[0] for d in by_cand.values() if list(d) == [0]]
    if only0:  # not promoted: faint points at rung 0
        ax.scatter(rng.uniform(-0.08, 0.08, len(only0)), only0, s=8, color="0.6", alpha=0.5,
                   label="not promoted", zorder=1)
    top = max(rungs)
    promoted = [d for d in by_cand.values() if len(d) > 1 or (d and min(d) > 0)]
    labelled: set = set()
    for d in promoted:
        ks = sorted(d)
        reached = ks[-1]
        colour = "C3" if reached == top else f"C{reached % 10}"
        label = None if reached in labelled else (
            f"reached rung {top}" if reached == top else f"stopped at rung {reached}")
        labelled.add(reached)
        ax.plot(ks, [d[k] for k in ks], marker="o", ms=3.5, lw=1.1, alpha=0.75, color=colour, zorder=2, label=label)
    means = [(k, float(np.mean([d[k] for d in promoted if k in d and max(d) == top]))) for k in rungs
             if any(k in d and max(d) == top for d in promoted)]
    if sum(max(d) == top for d in promoted) > 1:
        ax.plot([m[0] for m in means], [m[1] for m in means], color="k", lw=2.2, ls="--", zorder=3,
                label=f"mean of those reaching rung {top}")
    ax.axhline(0, color="0.6", lw=0.8, ls="--", label=ref_label(reference))
    ax.set_xticks(rungs)
    ax.set_xticklabels([f"rung {k}" + (f"\n{labels[k]}" if k in labels else "") for k in rungs], fontsize=8)
    ax.set_xlim(min(rungs) - 0.25, max(rungs) + 0.25)
    ax.set_ylabel(f"score (improvement over {ref_label(reference)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def pareto_plot(rows: list[dict]):
    """Score vs kernel cost with the Pareto front (a figure); `rows` must all have a score and a cost."""
    import matplotlib.pyplot as plt

    from actsearch.strategies import pareto_front

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = [r["cost"] for r in rows]
    ys = [r["score"] for r in rows]
    front = pareto_front([(y, x) for x, y in zip(xs, ys)])
    ax.scatter(xs, ys, s=12, alpha=0.5)
    fx = sorted((xs[i], ys[i]) for i in front)
    ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", color="C3", label="Pareto front")
    ax.set_xlabel("kernel cost relative to ReLU")
    ax.set_ylabel("score")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def has_cost_objective(cfg: dict, ranked: list[dict]) -> bool:
    """Whether the run has a Pareto front to plot: a cost objective, and a cost for every evaluated candidate."""
    objectives = list(cfg.get("objectives") or ["score"])
    return "cost" in objectives and bool(ranked) and all(r.get("cost") is not None for r in ranked)


def rejection_reasons(counts: dict, screening_reasons: list) -> Counter:
    """The rejection-reasons plot's bars: the stored reason codes (the store's `reason_code` column,
    RejectionReason values) with their counts, screened-out candidates split by the screening check that
    failed first (ScreeningCheck, read from their stored screening reason), as "screened_out: CHECK"."""
    reasons = Counter({code: n for code, n in counts.items() if code != RejectionReason.SCREENED_OUT.value})
    for text in screening_reasons:
        check = ScreeningCheck.of(text)
        if check is not None:
            reasons[f"{RejectionReason.SCREENED_OUT.value}: {check.value}"] += 1
    return reasons


# ------------------------------------------------------------------------------------------ tables

def validation_table(validation: dict) -> str:
    """The HTML of the validation section's table (and a line on what was validated)."""
    e = html.escape
    held = [t for t in validation.get("held_out") or [] if t not in (validation.get("search_tasks") or [])]
    seeds = validation.get("seeds") or []
    info = (f"<p>{len(validation.get('candidates') or [])} candidates re-trained on {len(seeds)} fresh seeds"
            + (f" ({seeds[0]}–{seeds[-1]})" if seeds else "")
            + f"; search tasks {e(', '.join(validation.get('search_tasks') or [])) or 'none'}, held-out tasks "
            f"{e(', '.join(held)) or 'none'}; baselines {e(', '.join(validation.get('baselines') or []))}; "
            f"{validation.get('n_tests', '?')} paired t-tests, Holm-corrected at alpha = "
            f"{validation.get('alpha', 0.05)}. Scores: 0 = {e(ref_label(validation.get('reference_baseline')))}. "
            "Gap = search score − fresh-seed score (the winner's curse).</p>"
            + (f"<p class='note'>Note: {e(validation['note'])}.</p>" if validation.get("note") else ""))
    head = ("<tr><th>candidate</th><th>rung</th><th>search score [95% CI]</th><th>fresh-seed score [95% CI]</th>"
            "<th>gap</th><th>held-out score [95% CI]</th><th>verdict</th></tr>")
    rows = []
    for c in validation.get("candidates") or []:
        search = "–" if c.get("search_score") is None else (
            f"{c['search_score']:+.4f}" + (f" {_ci(c.get('search_ci'))}" if c.get("search_ci") else ""))
        rows.append(f"<tr class='verdict-{e(str(c.get('verdict_code', '')))}'>"
                    f"<td><code>{e(c.get('formula') or '')}</code>"
                    f"<br/><small><code>{e(c.get('id') or '')}</code></small></td><td>{e(str(c.get('rung', '')))}</td>"
                    f"<td>{search}</td><td>{_score_ci(c.get('fresh'))}</td><td>{_num(c.get('gap'))}</td>"
                    f"<td>{_score_ci(c.get('held_out'))}</td><td>{e(c.get('verdict') or '')}</td></tr>")
    for name, ref in (validation.get("reference_scores") or {}).items():
        if name == (validation.get("reference_baseline") or "relu"):  # 0 by definition
            continue
        rows.append(f"<tr class='reference'><td><i>{e(name)} (baseline)</i></td><td></td><td></td>"
                    f"<td>{_score_ci((ref or {}).get('fresh'))}</td><td></td>"
                    f"<td>{_score_ci((ref or {}).get('held_out'))}</td><td></td></tr>")
    return info + f"<table class='validation'>{head}{''.join(rows)}</table>"


def build_report(run_dir: str, out_path: str, top_k: int = 6) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actsearch.formula import parse_formula
    from actsearch.numeric import evaluate
    from actsearch.store import ResultStore

    store = ResultStore(run_dir, mode="read")
    try:
        cfg = store.config() or {}
        ranked = store.ranked()
        search_tasks = list(cfg.get("tasks") or [])
        per_task = list(cfg.get("objectives") or []) == ["tasks"]
        front = {f["id"] for f in store.task_front(search_tasks, ranked)} if per_task else set()
        history = store.history()
        rung_rows = store.rung_rows()
        validation = store.latest_validation()
        n_screened = store.n_screened_out()
        reasons = rejection_reasons(store.rejection_counts(), store.screening_reasons())
    finally:
        store.close()
    from actsearch.tasks import task_defaults

    try:
        reference = task_defaults(search_tasks)[1]
    except ValueError:  # a task this version does not know
        reference = "relu"
    ref = ref_label(reference)
    images: list[tuple[str, str]] = []
    first_task = (search_tasks or [None])[0]  # whose trained parameter values "learned" shows
    multi_rung = len({r["rung"] for r in rung_rows if r["status"] == "done"}) > 1

    # best so far
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    n = [h[0] for h in history]
    scores = np.array([h[1] if h[1] is not None else np.nan for h in history], dtype=float)
    best = np.fmax.accumulate(np.where(np.isnan(scores), -np.inf, scores)) if len(scores) else scores
    ax.scatter(n, scores, s=10, alpha=0.5, label="candidate")
    ax.plot(n, np.where(np.isfinite(best), best, np.nan), color="C3", label="best so far")
    ax.axhline(0, color="0.6", lw=0.8, ls="--", label=ref)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"score (improvement over {ref})" + (", rung 0" if multi_rung else ""))
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
        any_layer = any_learned = False
        for ax, r in zip(axes.flat, good):
            c = parse_formula(r["formula"], params=r["params"] or None)
            if c.is_tensor_op:  # a layer: its output against its input, element by element, on a probe tensor
                any_layer = True
                probe = np.random.default_rng(0).standard_normal((8, 8, 16))
                with np.errstate(all="ignore"):
                    y = evaluate(c.safe_expr, probe, c.params)
                ax.scatter(probe.ravel(), y.ravel(), s=2, alpha=0.3, label="f (elements)")
                ax.set_xlim(-4, 4)
            else:
                with np.errstate(all="ignore"):
                    ax.plot(x, evaluate(c.safe_expr, x, c.params), lw=2, label="f" + (" (initial)" if c.params else ""))
                    ax.plot(x, evaluate(c.safe_derivative, x, c.params), lw=1.2, ls="--", label="f'")
                    learned = learned_values(learned_params(r["report"], c.params, default_task=first_task))
                    if learned:  # the shape the networks learned: median trained values over seeds and layers
                        any_learned = True
                        ax.plot(x, evaluate(c.safe_expr, x, {**c.params, **learned}), lw=1.6, color="C3",
                                label="f (learned)")
            ax.set_ylim(-3, 5)
            ax.axhline(0, color="0.8", lw=0.8)
            ax.set_title(f"{r['score']:+.3f}  {r['canonical'][:40]}", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(good):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        learned_note = (" ; red: the shape with the learned parameter values (median over the seeds and layers "
                        "of the first search task)") if any_learned else ""
        images.append((f"Top {len(good)}: output against input of each element of an (8, 8, 16) N(0,1) probe "
                       f"tensor" if any_layer else f"Top {len(good)}: shapes (solid) and derivatives (dashed)"
                       + learned_note, _png(fig)))

    # score distribution: where the space's candidates fall relative to ReLU
    finite = scores[np.isfinite(scores)] if len(scores) else scores
    if len(finite):
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        ax.hist(finite, bins=min(40, max(10, len(finite) // 3)), color="C0", alpha=0.75)
        ax.axvline(0, color="0.3", lw=1.0, ls="--", label=ref)
        n_none = len(scores) - len(finite)
        ax.set_xlabel(f"score (improvement over {ref})" + (", rung 0" if multi_rung else ""))
        ax.set_ylabel("candidates")
        ax.legend(title=f"{n_none} without a score" if n_none else None, fontsize=8)
        ax.grid(alpha=0.3)
        images.append(("Score distribution", _png(fig)))

    # score by rung: how promoted candidates' scores move as seeds and tasks are added
    fig = score_by_rung_plot(rung_rows, reference)
    if fig is not None:
        images.append((SCORE_BY_RUNG_TITLE, _png(fig)))

    # Pareto front: only for a run with a cost objective, where every evaluated candidate has a cost
    if has_cost_objective(cfg, ranked):
        valid = [r for r in ranked if r["score"] is not None]
        if valid:
            images.append((PARETO_TITLE, _png(pareto_plot(valid))))

    # validation forest plot
    if validation is not None:
        fig = forest_plot(validation)
        if fig is not None:
            images.append((FOREST_TITLE, _png(fig)))

    # rejection reasons
    if reasons:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.4 * len(reasons)))
        items = reasons.most_common()
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="C1")
        ax.set_xlabel("candidates")
        images.append(("Rejection reasons", _png(fig)))

    # with several search tasks, the score on each (each architecture); with per-task objectives, the front
    task_cols = search_tasks if len(search_tasks) > 1 else []

    def row(i, r):
        score = "" if r["score"] is None else f"{r['score']:+.4f}"
        near = r["nearest"]["name"] or "novel"
        ts = (r.get("estimate") or {}).get("task_scores") or {}
        per = "".join(f"<td>{_num(ts.get(t), '+.3f')}</td>" for t in task_cols)
        mark = f"<td>{'★' if r['id'] in front else ''}</td>" if per_task else ""
        return (f"<tr><td>{i}</td><td>{score}</td><td>{_ci(r.get('ci'))}</td><td>{r.get('rung', 0)}</td>{per}{mark}"
                f"<td><code>{html.escape(r['canonical'] or r['formula'])}</code></td>"
                f"<td>{html.escape(learned_text(learned_params(r['report'], r['params'], default_task=first_task)))}</td>"
                f"<td>{html.escape(near)}</td><td>{html.escape(r['rejected'] or '')}</td><td><code>{r['id']}</code></td></tr>")

    rows_html = "".join(row(i, r) for i, r in enumerate(ranked[:25], 1))
    validation_html = ""
    if validation is not None:
        validation_html = f"<h2>{VALIDATION_TABLE_TITLE}</h2>" + validation_table(validation)
    body = "".join(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}'/>" for t, b in images)
    task_heads = "".join(f"<th>{html.escape(t)}</th>" for t in task_cols) + ("<th>front</th>" if per_task else "")
    per_task_note = ("; the per-task columns are the score on each search task at the candidate's highest rung"
                     if task_cols else "")
    if per_task:
        per_task_note += (f"; ★ marks the {len(front)} candidates on the Pareto front of the per-task scores "
                          f"(--objectives tasks)")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>actsearch report: {html.escape(run_dir)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left}}
img{{max-width:100%}}tr.verdict-better td:last-child{{color:#1a7f37}}tr.verdict-worse td:last-child{{color:#b42318}}
tr.reference{{color:#555}}</style></head><body>
<h1>actsearch run <code>{html.escape(run_dir)}</code></h1>
<p>space <b>{html.escape(str(cfg.get('space')))}</b>, strategy <b>{html.escape(str(cfg.get('strategy')))}</b>,
tasks {html.escape(', '.join(cfg.get('tasks', [])))}, {cfg.get('seeds')} seeds, rungs
{html.escape(str(cfg.get('rungs') or 'default'))}; {len(ranked)} evaluated,
{sum(1 for r in ranked if r['rejected'])} rejected in training, {n_screened} screened out.</p>
<h2>Top candidates</h2><p>Ranked by the lower bound of the 95% CI of the score at the highest rung reached;
scores are improvements over {html.escape(ref)} (0) as a fraction of its margin over chance{per_task_note};
"learned": each learnable parameter's initial value -> its median trained value over the seeds and layers of
{html.escape(str(first_task))}.</p>
<table class='top'><tr><th>#</th><th>score</th><th>95% CI</th><th>rung</th>{task_heads}<th>formula</th><th>learned</th><th>nearest known</th>
<th>rejected</th><th>id</th></tr>
{rows_html}</table>{validation_html}{body}</body></html>"""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(doc)
    except OSError as exc:  # e.g. the default RUN_DIR/report.html of a run kept on read-only media
        from actsearch.store import StoreError

        raise StoreError(f"cannot write the report to {out_path} ({exc.strerror or exc}); choose a writable "
                         f"file with -o") from None
    return out_path
