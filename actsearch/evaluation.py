"""evaluate(candidate, tasks, seeds): paired multi-seed scoring against baselines.

For every task the candidate and each baseline are trained with the same seeds, so seed s of the
candidate and seed s of ReLU start from the same initial weights (where shapes agree) and see the same
data in the same order; the comparison uses the per-seed differences (a paired test), which removes
most of the seed-to-seed spread that makes single-seed rankings rank noise.

  diff    mean over seeds of (candidate - baseline) test accuracy
  ci      95% Student-t interval of that mean, n - 1 degrees of freedom (n = seeds); None with one
          seed (there is no spread to estimate an interval from)
  verdict "better" if the interval lies above 0, "worse" if below, else (and always with one seed)
          "indistinguishable"

Score (one number per task, averaged over tasks for the multi-task score): the improvement over ReLU
as a fraction of ReLU's margin over chance,

    score_task = (mean_candidate - mean_relu) / (mean_relu - chance)

0 is ReLU, +0.1 closes a tenth of ReLU's distance above chance, -1 is chance level (what a rejected
candidate scores: its rejected seeds count as chance).  It is scale-free across tasks whose
accuracies and chance levels differ, and needs no other baseline.

Layer tasks (`task.kind == "layer"`, a normalization-activation candidate in every layer slot) work the
same way with the task's own reference and baselines: the score is measured against BN-ReLU
(`task.reference`, always trained), and the default baselines are BN-ReLU, GN-ReLU, BN-SiLU, EvoNorm-B0
and EvoNorm-S0 (`task.baselines`; names in actsearch.pop_layers.BUILTIN_LAYERS).  One evaluation's tasks
must all be of the candidate's kind: a scalar activation on a layer task, or a layer on an activation
task, is a ValueError before any training.

Trained parameters: a candidate with learnable parameters gets, per task, `params` = {seed (a string,
as JSON keeps it): {name: [trained value per layer]}} for its seeds that finished training (a rejected
seed has none); on layer tasks, where parameters are per channel, each layer's entry is a summary over
channels {mean, std, min, q25, median, q75, max}.  Baselines have none.  `actsearch export RUN_DIR:ID
--params trained` exports their median (actsearch.export.trained_param_values).

Baselines are trained once per (task, seed, steps, task version, library versions, threads) and cached
as JSON under <cache>/baselines (the kernel cache's directory, ACTSEARCH_CACHE_DIR).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch

from actsearch import __version__
from actsearch.formula import Candidate
from actsearch.population import Member
from actsearch.tasks import TASK_VERSION, Task, resolve_tasks, task_kind
from actsearch.training import MemberResult, train_population

DEFAULT_BASELINES = ("relu", "gelu", "silu")  # the activation tasks' (Task.baselines; layer tasks have their own)


def versions() -> dict:
    import numpy
    import sympy

    return {"actsearch": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "sympy": sympy.__version__, "python": platform.python_version(), "task_version": TASK_VERSION}


def deterministic_settings() -> dict:
    return {"threads": torch.get_num_threads(), "seeded": "per-member torch.Generator (weights, data order)",
            "data": "generated from fixed seeds"}


# ------------------------------------------------------------------------------------------ statistics

def summarize(values: Sequence[float]) -> dict:
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "per_seed": vals}


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Optional[list]:
    """The Student-t interval of the mean of `values` (n - 1 degrees of freedom); None for n < 2."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return [mean - half, mean + half]


def paired_comparison(candidate: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean paired difference, its Student-t confidence interval and the verdict."""
    d = [float(a) - float(b) for a, b in zip(candidate, baseline)]
    ci = t_interval(d, confidence)
    if ci is None:  # no spread to estimate from: no interval (null in JSON), and never a conclusive verdict
        return {"diff": statistics.fmean(d), "ci": None, "verdict": "indistinguishable", "n": len(d)}
    verdict = "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "indistinguishable"
    return {"diff": statistics.fmean(d), "ci": ci, "verdict": verdict, "n": len(d)}


def task_score(candidate_mean: float, relu_mean: float, chance: float) -> float:
    margin = relu_mean - chance
    return (candidate_mean - relu_mean) / margin if margin > 0 else 0.0


# ------------------------------------------------------------------------------------------ baseline cache

class BaselineCache:
    """JSON files of MemberResults, one per (task, baseline, seed, steps, versions, threads)."""

    def __init__(self, cache_dir: Optional[os.PathLike] = None):
        from actsearch.kernels.cache import default_cache_dir

        self.dir = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "baselines"

    def _path(self, task: Task, name: str, seed: int, steps: int) -> Path:
        key = json.dumps([task.name, name, seed, steps, versions(), torch.get_num_threads()], sort_keys=True)
        return self.dir / f"{task.name}-{name}-s{seed}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"

    def get(self, task: Task, name: str, seed: int, steps: int) -> Optional[MemberResult]:
        try:
            return MemberResult(**json.loads(self._path(task, name, seed, steps).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, task: Task, name: str, seed: int, steps: int, result: MemberResult) -> None:
        path = self._path(task, name, seed, steps)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_dict()))
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ evaluate

def _seed_list(seeds) -> list[int]:
    """seeds: a count n (seeds 0..n-1) or the seeds themselves (distinct integers >= 0, in order)."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(seeds)!r}")
    return out


def _train_with_baselines(task: Task, seed_list: list[int], needed: list[str], units: list, n_steps: int,
                          cache: Optional[BaselineCache], progress) -> tuple[dict, dict, int, int]:
    """Train the baselines `needed` (those not in `cache`) and `units` (each distinct key once) with the
    seeds of `seed_list` in one population.  Returns ({baseline: {seed: result}}, {unit key: {seed:
    result}}, the number of baseline members trained, the population's size); caches new baselines."""
    base_results: dict[str, dict[int, MemberResult]] = {b: {} for b in needed}
    members: list[Member] = []
    for b in needed:
        for s in seed_list:
            hit = cache.get(task, b, s, n_steps) if cache else None
            if hit is not None:
                base_results[b][s] = hit
            else:
                members.append(Member(task.make_unit(b), s))
    n_base_trained = len(members)
    seen = set()
    for unit in units:
        if unit.key not in seen:
            seen.add(unit.key)
            members += [Member(unit, s) for s in seed_list]
    cb = (lambda done, total, name=task.name: progress(name, done, total)) if progress else None
    trained = train_population(task, members, steps=n_steps, progress=cb) if members else []
    by_key: dict[str, dict[int, MemberResult]] = {}
    for i, (m, r) in enumerate(zip(members, trained)):
        if i >= n_base_trained:
            by_key.setdefault(m.activation.key, {})[m.seed] = r
        else:
            base_results[m.activation.key][m.seed] = r
            if cache and not r.rejected:
                cache.put(task, m.activation.key, m.seed, n_steps, r)
    return base_results, by_key, n_base_trained, len(members)


def baseline_table(tasks: Union[None, str, Sequence[str]] = None, seeds: Union[int, Sequence[int]] = 5,
                   baselines: Optional[Sequence[str]] = None, steps: Optional[int] = None,
                   cache: Union[BaselineCache, None, bool] = None,
                   progress: Optional[Callable[[str, int, int], None]] = None) -> dict:
    """The baselines alone, with paired seeds, per task: each baseline's test accuracy (mean, std, per
    seed, the 95% Student-t interval of the mean) and its paired comparison with the task's reference
    (ReLU; BN-ReLU on layer tasks).  `baselines=None`: the tasks' defaults.  What docs/layers.md's table
    is made of (`actsearch baselines --tasks layers --seeds 5`)."""
    task_list = resolve_tasks([tasks] if isinstance(tasks, str) else tasks)
    task_kind(task_list)
    seed_list = _seed_list(seeds)
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    names = list(dict.fromkeys(task_list[0].baselines if baselines is None else baselines))
    for b in names:
        task_list[0].make_unit(b)
    cache = None if cache is False else (cache if isinstance(cache, BaselineCache) else BaselineCache())
    out = {"seeds": seed_list, "baselines": names, "versions": versions(), "settings": deterministic_settings(),
           "tasks": {}}
    for task in task_list:
        n_steps = task.budget.steps if steps is None else int(steps)
        needed = list(dict.fromkeys([task.reference, *names]))
        t0 = time.perf_counter()
        results, _, n_trained, _ = _train_with_baselines(task, seed_list, needed, [], n_steps, cache, progress)
        ref = [results[task.reference][s].accuracy for s in seed_list]
        rows = {}
        for b in needed:
            acc = [results[b][s].accuracy for s in seed_list]
            rows[b] = {**summarize(acc), "ci": t_interval(acc),
                       "rejected": next((f"seed {s}: {results[b][s].rejected}" for s in seed_list
                                         if results[b][s].rejected), None),
                       "vs_reference": paired_comparison(acc, ref)}
        out["tasks"][task.name] = {"kind": task.kind, "reference": task.reference, "chance": task.chance,
                                   "steps": n_steps, "rows": rows, "trained": n_trained,
                                   "cached": len(needed) * len(seed_list) - n_trained,
                                   "wall_s": time.perf_counter() - t0}
    return out


def evaluate(candidate: Candidate, tasks: Union[None, str, Sequence[str]] = None, seeds: int = 3,
             baselines: Optional[Sequence[str]] = None, steps: Optional[int] = None, screen: bool = True,
             cache: Union[BaselineCache, None, bool] = None,
             progress: Optional[Callable[[str, int, int], None]] = None) -> dict:
    """Train `candidate` and the baselines on each task with seeds 0..seeds-1; see the module docstring.
    `cache=False` trains the baselines every time.  `progress(task, done, total)` reports member-steps.
    `baselines=None`: the tasks' default baselines (ReLU, GELU, SiLU; on layer tasks BN-ReLU, GN-ReLU,
    BN-SiLU, EvoNorm-B0, EvoNorm-S0)."""
    return evaluate_many([candidate], tasks, seeds, baselines, steps, screen, cache, progress)[0]


def evaluate_many(candidates: Sequence[Candidate], tasks: Union[None, str, Sequence[str]] = None,
                  seeds: Union[int, Sequence[int], Mapping[str, Sequence[int]]] = 3,
                  baselines: Optional[Sequence[str]] = None, steps: Optional[int] = None, screen: bool = True,
                  cache: Union[BaselineCache, None, bool] = None,
                  progress: Optional[Callable[[str, int, int], None]] = None) -> list[dict]:
    """`evaluate` for several candidates at once: per task, every candidate's seeds and the uncached
    baselines train in ONE population (with >= 2 candidates, one population kernel), and each candidate
    gets the same report `evaluate` gives.  Results equal evaluating them one by one up to float rounding.
    `seeds`: a count (seeds 0..n-1), a list of seeds, or a plan {task: seeds} (then `tasks` defaults to
    its keys); each task's report lists its own `seeds`."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if isinstance(seeds, Mapping):  # a plan: task -> its seeds (staged evaluation trains what a rung adds)
        if tasks is None:
            tasks = list(seeds)
        plan = {t.name: _seed_list(seeds.get(t.name, ())) for t in resolve_tasks(list(seeds))}
    task_list = resolve_tasks([tasks] if isinstance(tasks, str) else tasks)
    if not isinstance(seeds, Mapping):
        plan = {t.name: _seed_list(seeds) for t in task_list}
    for t in task_list:
        if not plan.get(t.name):
            raise ValueError(f"no seeds for task {t.name}")
    kind_task = task_list[0]
    task_kind(task_list)  # one kind: a candidate is an activation or a layer, never both
    baselines = list(dict.fromkeys(kind_task.baselines if baselines is None else baselines))
    for b in baselines:
        kind_task.make_unit(b)  # unknown names (or names of the other kind) fail before any training
    for candidate in candidates:  # a layer on an activation task (or the reverse): refused before training
        if candidate.is_tensor_op != (kind_task.kind == "layer"):
            kind_task.make_unit(candidate)
    cache = None if cache is False else (cache if isinstance(cache, BaselineCache) else BaselineCache())
    first = plan[task_list[0].name]
    outs, acts = [], []
    for candidate in candidates:
        out = {"candidate": {"formula": candidate.source or candidate.formula, "canonical": candidate.formula,
                             "id": candidate.id, "params": dict(candidate.params)},
               "seeds": first, "baselines": baselines, "versions": versions(),
               "settings": deterministic_settings(), "screening": None, "tasks": {}}
        reason = None
        if screen:
            from actsearch.screening import screen_candidate

            sc = screen_candidate(candidate)
            out["screening"] = sc.to_dict()
            if not sc.passed:
                reason = "screening: " + "; ".join(sc.reasons)
        outs.append(out)
        acts.append((None, reason) if reason else (kind_task.make_unit(candidate), None))

    for task in task_list:
        seed_list = plan[task.name]
        n_steps = task.budget.steps if steps is None else int(steps)
        t0 = time.perf_counter()
        # baselines always include the reference (ReLU; BN-ReLU on layer tasks): the score is measured against it
        needed = list(dict.fromkeys([task.reference, *baselines]))
        base_results, by_key, n_base_trained, n_members = _train_with_baselines(
            task, seed_list, needed, [act for act, _ in acts if act is not None], n_steps, cache, progress)
        wall = time.perf_counter() - t0
        base_summary = {b: summarize([base_results[b][s].accuracy for s in seed_list]) for b in needed}
        relu_mean = base_summary[task.reference]["mean"]
        for out, (act, reason), candidate in zip(outs, acts, candidates):
            if act is None:  # failed screening: never trained, scored as chance
                cand_results = {s: MemberResult(candidate.id, s, task.chance, float("nan"), float("nan"), 0, 0.0,
                                                rejected=reason) for s in seed_list}
            else:
                cand_results = by_key[act.key]
            cand_acc = [cand_results[s].accuracy for s in seed_list]
            rejected = next((f"seed {s}: {cand_results[s].rejected}" if act is not None else cand_results[s].rejected
                             for s in seed_list if cand_results[s].rejected), None)
            out["tasks"][task.name] = {
                "metric": task.metric, "kind": task.kind, "reference": task.reference, "chance": task.chance,
                "steps": n_steps, "seeds": seed_list,
                "candidate": summarize(cand_acc),
                "baselines": dict(base_summary),  # `needed`: the reference and the requested baselines
                "vs": {b: paired_comparison(cand_acc, [base_results[b][s].accuracy for s in seed_list])
                       for b in needed},
                "rejected": rejected,
                "score": task_score(statistics.fmean(cand_acc), relu_mean, task.chance),
                "wall_s": wall,
                "candidate_wall_s": sum(r.wall_s for r in cand_results.values()),
                "saved_s": sum(r.saved_s for r in cand_results.values()),
                "steps_trained": [cand_results[s].steps for s in seed_list],
                "baselines_cached": len(needed) * len(seed_list) - n_base_trained,
                "population": n_members,
            }
            if candidate.params:  # the trained parameters: {seed: {name: [value per layer]}}, trained seeds only
                out["tasks"][task.name]["params"] = {str(s): cand_results[s].params for s in seed_list
                                                     if cand_results[s].params}
    for out in outs:
        out["score"] = statistics.fmean(t["score"] for t in out["tasks"].values())
    return outs
