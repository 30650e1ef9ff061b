"""Validation: the top candidates of a search re-trained on fresh seeds and held-out tasks, against the
baselines, with p-values corrected for multiple comparisons.

    actsearch validate RUN_DIR [--top 5] [--seeds 5] [--tasks ...]     (also run at the end of `search`)

What is measured
  candidates  the top K of the run by the conservative ranking (actsearch.staging: the lower confidence
              bound of the score at the candidate's highest rung), rejected candidates excluded
  seeds       fresh: VALIDATION_SEED_BASE (1000) and up; search seeds are 0..999 (staging.MAX_SEEDS), so
              they never overlap (checked against the store before anything is trained)
  tasks       the search tasks (fresh seeds only: this measures the winner's curse) and the held-out
              tasks, by default every task of `all` not searched plus `mnist1d-mlp-deep`, a larger model
              than the search tasks; for a layer search (layer tasks, the evonorm space) the layer tasks
              not searched.  When every such task was searched there is no held-out task: the validation
              is on fresh seeds of the search tasks only, and its summary's `note` says so
  baselines   the tasks' own (Task.baselines): ReLU, GELU, SiLU on activation tasks; BN-ReLU, GN-ReLU,
              BN-SiLU, EvoNorm-B0, EvoNorm-S0 on layer tasks; always with the reference (ReLU, BN-ReLU:
              the scores' zero), trained with the same fresh seeds (paired), and per task the best of them
              (highest mean accuracy on that task's fresh seeds)

Statistics
  Per (candidate, task, baseline) the paired t-test on the per-seed accuracy differences
  (scipy.stats.ttest_rel, two-sided) and the 95% Student-t interval of the mean difference.  The
  p-values of all candidates x tasks x baselines of one validation form one family, corrected with Holm's
  step-down method (statsmodels.stats.multitest.multipletests, method="holm"), which controls the
  family-wise error rate at alpha = 0.05 under any dependence between the tests.  A difference is
  `better` / `worse` when its Holm-adjusted p-value is below alpha, else `matches`.
  Verdict per candidate, from its comparisons with each held-out task's best baseline: "beats the best
  baseline on N of M held-out tasks" (N >= 1, worse on none), "matches the best baseline on all M
  held-out tasks", "worse than the best baseline on W of M held-out tasks" (worse on some, better on
  none), or "mixed" (better on some, worse on others).
  Scores (actsearch.staging.estimate_score, 0 = the reference baseline): the search score (at the candidate's highest
  rung), the fresh-seed score on the search tasks, their difference (the winner's-curse gap: how much of
  the search score was selection noise), and the held-out score.

Trainings go to the store's evaluations table (tagged "validation") and the baselines table, so a second
validation with the same seeds retrains nothing; each validation's summary is stored (`validations`).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional, Sequence

VALIDATION_SEED_BASE = 1000
DEFAULT_BASELINES = ("relu", "gelu", "silu")
LARGER_TASK = "mnist1d-mlp-deep"
ALPHA = 0.05


def held_out_tasks(search_tasks: Sequence[str]) -> list[str]:
    """The default held-out tasks: for activation tasks every task of `all`, and the larger model, that
    was not searched; for layer tasks every layer task (`layers`) that was not searched."""
    from actsearch.tasks import DEFAULT_TASKS, LAYER_TASKS, TASKS, task_defaults

    if search_tasks and task_defaults(list(search_tasks))[0] == "layer":
        names = list(LAYER_TASKS)
    else:
        names = list(DEFAULT_TASKS) + ([LARGER_TASK] if LARGER_TASK in TASKS else [])
    return [t for t in names if t not in search_tasks]


def fresh_seeds(n: int) -> list[int]:
    return list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + n))


def paired_test(candidate: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict:
    """evaluation.paired_comparison's mean paired difference and Student-t interval, with the two-sided
    paired t-test's p-value in place of the uncorrected verdict (validation's verdict comes after Holm)."""
    from scipy import stats

    from actsearch.evaluation import paired_comparison

    r = paired_comparison(candidate, baseline, confidence)
    del r["verdict"]
    d = [float(a) - float(b) for a, b in zip(candidate, baseline)]
    if len(d) < 2:
        r["p"] = 1.0
    elif statistics.pstdev(d) == 0.0:  # identical differences: the t statistic is 0/0 or +-inf
        r["p"] = 1.0 if r["diff"] == 0.0 else 0.0
    else:
        r["p"] = float(stats.ttest_rel(candidate, baseline).pvalue)
    return r


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (statsmodels), in the order given."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(pvalues), alpha=alpha, method="holm")[1]]


def benjamini_hochberg(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Benjamini-Hochberg (false discovery rate) adjusted p-values (statsmodels "fdr_bh"), in the order
    given.  Less strict than Holm (which bounds the family-wise error): used beside it to describe a
    distribution, never for a claim about one candidate."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(pvalues), alpha=alpha, method="fdr_bh")[1]]


def verdict(outcomes: Sequence[str], n_tasks: int, kind: str = "held-out") -> tuple[str, str]:
    """(code, text) of a candidate from its per-task outcomes vs the best baseline; `kind` names the
    tasks ("held-out", or "searched" when the validation has no held-out task)."""
    better, worse = outcomes.count("better"), outcomes.count("worse")
    tasks = f"{n_tasks} {kind} task{'s' if n_tasks != 1 else ''}"
    if better and worse:
        return "mixed", f"mixed: beats the best baseline on {better}, worse on {worse} of {tasks}"
    if better:
        return "better", f"beats the best baseline on {better} of {tasks}"
    if worse:
        return "worse", f"worse than the best baseline on {worse} of {tasks}"
    return "matches", f"matches the best baseline on {'all ' if n_tasks > 1 else ''}{tasks}"


def _summ(values: Sequence[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": list(values)}


SELECTIONS = ("score", "worst-task")


def check_selection(select: str, tasks: Optional[Sequence[str]] = None, flag: str = "--select") -> None:
    """Refuses an unknown selection and, given the run's search tasks, worst-task for fewer than two (one
    check for `validate --select`, `search --validate-select` and select_candidates)."""
    if select not in SELECTIONS:
        raise ValueError(f"{flag} must be one of {', '.join(SELECTIONS)}, got {select!r}")
    if select == "worst-task" and tasks is not None and len(tasks) < 2:
        raise ValueError(f"{flag} worst-task needs a run that searched at least two tasks; this one searched "
                         f"{', '.join(tasks) or 'none'}")


def select_candidates(store, top: int, select: str = "score") -> list[dict]:
    """The run's `top` candidates to validate (store.ranked() rows, rejected ones never).

    "score": the conservative ranking (the lower 95% bound of the mean score over the search tasks).
    "worst-task": for a run that searched several tasks, by the candidate's score on its worst search
    task (at its highest rung), among those at the highest rung reached first (most seeds, least winner's
    curse).  A mean over tasks can be carried by one task (a layer far better on one architecture and
    worse on the others); the worst task asks for a candidate that transfers."""
    search_tasks = list((store.config() or {}).get("tasks") or [])
    check_selection(select, search_tasks)
    valid = [r for r in store.ranked() if r["rejected"] is None and r["score"] is not None]
    if select == "score":
        return valid[:top]
    from actsearch.staging import worst_task

    scored = [(r, worst_task(store.task_scores(r["id"]), search_tasks)) for r in valid]
    scored = [(r, w) for r, w in scored if w is not None]
    scored.sort(key=lambda pair: (-pair[0]["rung"], -pair[1]))
    return [r for r, _ in scored[:top]]


def validate_store(store, executor, top: int = 5, seeds: int = 5, tasks: Optional[Sequence[str]] = None,
                   baselines: Optional[Sequence[str]] = None, alpha: float = ALPHA,
                   progress: Optional[Callable[[dict], None]] = None, ids: Optional[Sequence[str]] = None,
                   select: str = "score") -> dict:
    """Validate the top `top` candidates of the run in `store` (opened for writing) with `executor`
    (anything with submit(items, plan, timeout_s) / wait() / capacity, whose config trains `baselines`);
    returns the summary (also stored).  `baselines`: None for the tasks' own (ReLU, GELU, SiLU; the five
    layer baselines on layer tasks).  `ids`: validate these candidates instead of the top `top`.
    `select`: how the top `top` are chosen (select_candidates: "score" or "worst-task").
    See the module docstring."""
    from actsearch.staging import estimate_score
    from actsearch.tasks import get_task, task_defaults

    if top < 1 or seeds < 2:
        raise ValueError(f"validation needs --top >= 1 and --seeds >= 2, got top={top}, seeds={seeds}")
    cfg = store.config() or {}
    search_tasks = list(cfg.get("tasks") or [])
    given = bool(tasks)
    tasks = list(dict.fromkeys(tasks)) if tasks else search_tasks + held_out_tasks(search_tasks)
    for t in tasks:
        get_task(t)  # unknown names fail before anything is trained
    # one kind of task (the search's): the reference baseline, the score's zero, is theirs
    kind, ref, default_baselines = task_defaults(tasks)
    if search_tasks and task_defaults(search_tasks)[0] != kind:
        raise ValueError(f"the run searched {task_defaults(search_tasks)[0]} tasks ({', '.join(search_tasks)}); "
                         f"validate it on tasks of that kind, not on {kind} tasks ({', '.join(tasks)})")
    if baselines is None:
        baselines = default_baselines
    held_out = [t for t in tasks if t not in search_tasks]
    judged = held_out or list(tasks)  # the verdict's tasks: the held-out ones, or all when none is held out
    fresh = fresh_seeds(seeds)
    # the fresh seeds were never used by the search
    if set(fresh) & store.search_seeds():
        raise RuntimeError("validation seeds overlap the search's seeds")  # a bug: staging caps search seeds

    if ids is not None:
        by_id = {r["id"]: r for r in store.ranked()}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ValueError(f"no evaluated candidate {unknown[0]!r} in this run")
        chosen = [by_id[i] for i in dict.fromkeys(ids)]
    else:
        chosen = select_candidates(store, top, select)
    t0 = time.time()
    # what is missing per (task, candidate): nothing is trained twice (a validation with more seeds than an
    # earlier one trains only the new seeds); candidates missing the same seeds of a task share a population
    jobs = []  # (task, seeds, candidate ids)
    have = {r["id"]: store.accuracies(r["id"]) for r in chosen}
    for task in tasks:
        by_seeds: dict[tuple, list] = {}
        for r in chosen:
            missing = tuple(s for s in fresh if s not in have[r["id"]].get(task, {}))
            if missing:
                by_seeds.setdefault(missing, []).append(r["id"])
        jobs += [(task, list(missing), need) for missing, need in by_seeds.items()]
    timeout = float(cfg.get("timeout_s", 300.0)) * seeds
    pending = list(jobs)
    inflight = 0
    done_jobs = 0
    while pending or inflight:
        while pending and inflight < executor.capacity:
            task, missing, need = pending.pop(0)
            items = []
            for cid in need:
                c = store.candidate(cid)
                items.append((cid, c["formula"], dict(c["params"] or {})))
            executor.submit(items, {task: missing}, timeout_s=timeout)
            inflight += 1
        for outcome in executor.wait():
            inflight -= 1
            done_jobs += 1
            for cid, report, worker, wall in outcome:
                store.record_trainings(cid, report, worker, tag="validation")
            if progress:
                progress({"done": done_jobs, "of": len(jobs)})

    base = store.baseline_accuracies()
    accuracy = {r["id"]: store.accuracies(r["id"]) for r in chosen}  # with what was just trained
    chance = {t: get_task(t).chance for t in tasks}
    names = list(dict.fromkeys([ref, *baselines]))
    reference = {}
    for t in tasks:
        have = [b for b in names if all(s in base.get(t, {}).get(b, {}) for s in fresh)]
        reference[t] = {b: _summ([base[t][b][s] for s in fresh]) for b in have}
    best = {t: max(reference[t], key=lambda b: reference[t][b]["mean"]) if reference[t] else None for t in tasks}

    rows, tests = [], []  # tests: (row index, task, baseline) in the order of `pvalues`
    for r in chosen:
        acc = accuracy[r["id"]]
        row = {"id": r["id"], "formula": r["formula"], "canonical": r["canonical"], "rung": r["rung"],
               "search_score": r["score"], "search_ci": r["ci"], "tasks": {}, "missing": []}
        for t in tasks:
            if not all(s in acc.get(t, {}) for s in fresh) or ref not in reference[t]:
                row["missing"].append(t)
                continue
            cand = [acc[t][s] for s in fresh]
            vs = {}
            for b in reference[t]:
                vs[b] = paired_test(cand, reference[t][b]["per_seed"])
                tests.append((len(rows), t, b))
            row["tasks"][t] = {"held_out": t not in search_tasks, "candidate": _summ(cand), "best_baseline": best[t],
                               "vs": vs}
        rows.append(row)

    adjusted = holm([rows[i]["tasks"][t]["vs"][b]["p"] for i, t, b in tests], alpha)
    for (i, t, b), p in zip(tests, adjusted):
        v = rows[i]["tasks"][t]["vs"][b]
        v["p_holm"] = p
        v["verdict"] = ("better" if v["diff"] > 0 else "worse") if p < alpha else "matches"

    def score(cid_acc, ts):
        ts = [t for t in ts if t in reference and ref in reference[t]]
        if not ts:
            return None
        est = estimate_score(cid_acc, base, chance, {t: fresh for t in ts}, reference=ref)
        return None if est.score is None else {"score": est.score, "ci": est.ci, "tasks": ts}

    for row in rows:
        acc = accuracy[row["id"]]
        searched = [t for t in tasks if t in search_tasks and t in row["tasks"]]
        ho = [t for t in held_out if t in row["tasks"]]
        row["fresh"] = score(acc, searched)
        row["held_out"] = score(acc, ho)
        row["gap"] = (row["search_score"] - row["fresh"]["score"]
                      if row["fresh"] is not None and row["search_score"] is not None else None)
        jt = [t for t in judged if t in row["tasks"]]
        outcomes = [row["tasks"][t]["vs"][best[t]]["verdict"] for t in jt if best[t] in row["tasks"][t]["vs"]]
        row["verdict_code"], row["verdict"] = verdict(outcomes, len(judged), "held-out" if held_out else "searched")
        if row["missing"]:
            row["verdict"] += f" (not evaluated on {', '.join(row['missing'])})"

    # the baselines as reference rows, scored like candidates on the same fresh seeds
    references = {}
    for b in names:
        acc = {t: base[t][b] for t in tasks if b in base.get(t, {})}
        references[b] = {"fresh": score(acc, [t for t in search_tasks if t in tasks and t in acc]),
                         "held_out": score(acc, [t for t in held_out if t in acc])}
    note = None
    if not held_out:  # said in the summary, and by `validate`, `search` and the report
        why = ("the validation tasks are all search tasks" if given else
               f"every {'layer task' if kind == 'layer' else 'held-out candidate task'} was searched")
        note = (f"no held-out task ({why}): validated on fresh seeds of the search tasks only; the verdicts "
                f"are against the best baseline on the searched tasks")
    summary = {"seeds": fresh, "tasks": tasks, "search_tasks": [t for t in tasks if t in search_tasks],
               "held_out": held_out, "note": note, "kind": kind, "reference_baseline": ref,
               "baselines": names, "best_baseline": best, "alpha": alpha,
               "correction": "holm", "n_tests": len(tests), "top": len(chosen),
               "selected_by": "ids" if ids is not None else select, "candidates": rows,
               "reference": reference, "reference_scores": references,
               "trainings": sum(len(ids) * len(missing) for _, missing, ids in jobs), "elapsed_s": time.time() - t0}
    store.record_validation({"top": len(chosen), "ids": [r["id"] for r in chosen], "seeds": fresh, "tasks": tasks,
                             "baselines": names, "alpha": alpha, "selected_by": summary["selected_by"]}, summary)
    return summary
