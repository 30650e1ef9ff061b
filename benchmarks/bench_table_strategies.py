"""Search strategies compared on a tabular benchmark (issue 16, item 4): every search is answered from a
table (actsearch.tabular), so many searches per strategy run in one process in seconds.

Truth.  A candidate's TRUE score is its multi-task score from ALL of the table's seeds on the search tasks
(actsearch.staging.estimate_score over every search task x every table seed; 0 = ReLU, -1 = chance).
Candidates the table marks rejected, or with a missing accuracy, have no true score.  The TOP 1% are the
candidates (with a true score) whose true score is >= the 99th percentile (numpy, linear interpolation)
of the true scores of the table's candidates.

Per strategy and search seed 0..N-1: SearchDriver(SearchConfig(space=<the table's space>, strategy, tasks,
seeds=--eval-seeds (the rung-0 seeds), budget, seed, batch, rungs, executor="table:PATH", validate_top=0))
in a temporary run dir (deleted afterwards), answered by one TableExecutor reused for every search.  From
the store, in evaluation order (results.n: the rung-0 arrival order):
  evals_to_top1   the 1-based number of evaluations up to and including the first top-1% candidate
                  (None if none was evaluated; the summaries count it as budget + 1 and say how many)
  best_true@K     the best true score among the first K evaluated candidates (K in --checkpoints, those
                  <= the budget; a search that ended early, the space exhausted, keeps its final value)
  selected_true   the true score of the search's own pick (store.ranked()[0], the conservative ranking)
  lookups         candidate (task, seed) lookups answered by the table (TableExecutor.queries): the compute
  with_true_score how many evaluated candidates have a true score (on a partial table, or with candidates the
                  table rejected, fewer than evaluated: candidates absent from the table are recorded as
                  rejected by the search, still count as evaluations, and cost no lookups)
Summaries per strategy: median and IQR (25th-75th percentiles) over search seeds.

--compare-staging STRATEGY: staged (default rungs, --eval-seeds rung-0 seeds, budget --budget) vs flat
(one rung, every task x --flat-seeds seeds) at equal compute: for each search seed the staged search runs
first, and the flat search gets the budget whose lookups (budget x tasks x flat seeds) are nearest the
staged search's lookups (refined
by up to 3 more flat searches when the table is partial and lacks candidates).  Reported per arm: best true score found, the selected candidate's true score,
whether it is in the top 1%, and lookups-to-top-1% (the lookups answered up to and including the first
top-1% candidate's rung-0 answer; never found counts as the larger arm's lookups + 1).

A strategy may carry options, NAME:KEY=VALUE[:KEY=VALUE...] (e.g. surrogate:max_features=0.33), and is
labelled by that whole spec.

Usage: python benchmarks/bench_table_strategies.py --table PATH [--strategies random,evolution,optuna,surrogate]
           [--seeds 30] [--budget 200] [--tasks T1,T2 (default: the table's)] [--rungs flat|default]
           [--batch 4] [--eval-seeds 2] [--checkpoints 50,100,200] [--compare-staging STRATEGY]
           [--flat-seeds 5] [--out FILE.json] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

DEFAULT_STRATEGIES = ("random", "evolution", "optuna", "surrogate")
DEFAULT_CHECKPOINTS = (50, 100, 200)


# ------------------------------------------------------------------------------------------ truth

def true_scores(table: dict, tasks: Sequence[str]) -> dict:
    """candidate id -> its true score (every task in `tasks` x every table seed), None when the table
    marks it rejected or lacks one of its accuracies (or a ReLU accuracy)."""
    from actsearch.staging import estimate_score

    seeds = list(table["seeds"])
    pairs = {t: seeds for t in tasks}
    base = {t: {b: {s: v for s, v in zip(seeds, vals) if v is not None} for b, vals in table["baselines"][t].items()}
            for t in tasks}
    chance = {t: table["chance"][t] for t in tasks}
    out = {}
    for row in table["candidates"]:
        if row.get("rejected"):
            out[row["id"]] = None
            continue
        cand = {t: {s: v for s, v in zip(seeds, row["acc"].get(t, [])) if v is not None} for t in tasks}
        out[row["id"]] = estimate_score(cand, base, chance, pairs).score
    return out


def top_set(truth: dict, percentile: float = 99.0) -> tuple[float, set]:
    """(threshold, ids): the candidates whose true score is >= the `percentile`-th percentile of all
    true scores."""
    valid = [v for v in truth.values() if v is not None]
    if not valid:
        raise ValueError("the table has no candidate with a true score (every one rejected or incomplete)")
    thr = float(np.percentile(valid, percentile))
    return thr, {c for c, v in truth.items() if v is not None and v >= thr}


# ------------------------------------------------------------------------------------------ searches

def _executor_class():
    from actsearch.tabular import TableExecutor

    class LoggingTableExecutor(TableExecutor):
        """A TableExecutor that is reused across searches (the table is read once) and logs, for every
        answered item in answer order, (candidate id, lookups answered so far)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.answered, self.log = 0, []

        def reset(self, config) -> None:
            self.config = config
            self.queue.clear()
            self.queries = 0
            self.answered = 0
            self.log: list = []

        def wait(self) -> list:
            out = super().wait()
            for batch in out:
                for cid, rep, _, _ in batch:
                    self.answered += sum(len(t.get("seeds", ())) for t in (rep.get("tasks") or {}).values())
                    self.log.append((cid, self.answered))
            return out

    return LoggingTableExecutor


def parse_strategy(spec: str) -> tuple[str, dict]:
    """"surrogate" -> ("surrogate", {}); "surrogate:max_features=0.33:kappa=2" -> ("surrogate",
    {"max_features": 0.33, "kappa": 2.0}): a strategy with options, labelled by its whole spec."""
    name, *pairs = spec.split(":")
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"strategy spec {spec!r}: options are KEY=VALUE, got {pair!r}")
        try:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return name, options


def run_search(table_path: str, executor, space: str, strategy: str, seed: int, budget: int, tasks: Sequence[str],
               eval_seeds: int = 2, rungs: Optional[str] = "flat", batch: int = 4,
               space_options: Optional[dict] = None) -> dict:
    """One search on the table in a temporary run dir (deleted afterwards): its evaluation order, the
    lookups answered at each rung-0 answer, its pick and its compute."""
    from actsearch.search import SearchConfig, SearchDriver
    from actsearch.store import ResultStore

    name, options = parse_strategy(strategy)
    cfg = SearchConfig(space=space, space_options=dict(space_options or {}), strategy=name,
                       strategy_options=options, tasks=list(tasks), seeds=eval_seeds,
                       budget=budget, seed=seed, batch=batch, rungs=rungs, executor=f"table:{table_path}",
                       validate_top=0)
    run_dir = tempfile.mkdtemp(prefix=f"tabstrat-{strategy}-s{seed}-")
    t0 = time.time()
    try:
        cfg.validate()  # resolves the task names before the executor sees the config
        executor.reset(cfg)
        # no Optuna mirror: thousands of throwaway table searches (~50 ms a trial)
        summary = SearchDriver(cfg, run_dir, executor=executor, optuna_study=False).run()
        with ResultStore(run_dir, mode="read") as store:
            ranked = store.ranked()
            evaluations = store.evaluation_count()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    first_lookups: dict = {}
    for cid, n in executor.log:  # the first answer of a candidate is its rung-0 answer
        first_lookups.setdefault(cid, n)
    order = [r["id"] for r in sorted(ranked, key=lambda r: r["order"])]
    return {"strategy": strategy, "seed": seed, "budget": budget, "rungs": cfg.rungs, "eval_seeds": eval_seeds,
            "order": order, "lookups_at": [first_lookups.get(c) for c in order],
            "selected": ranked[0]["id"] if ranked and ranked[0]["score"] is not None else None,
            "lookups": executor.queries, "evaluations": evaluations, "evaluated": summary["evaluated"],
            "exhausted": summary.get("exhausted", False), "wall_s": time.time() - t0}


def run_metrics(run: dict, truth: dict, top: set, checkpoints: Sequence[int]) -> dict:
    """The metrics of one search (see the module docstring), with its best-true-score curve."""
    order = run["order"]
    pos = next((i + 1 for i, c in enumerate(order) if c in top), None)
    curve, best = [], None
    for c in order:
        v = truth.get(c)
        if v is not None and (best is None or v > best):
            best = v
        curve.append(best)
    at = {}
    for k in checkpoints:
        if k <= run["budget"]:
            at[str(k)] = curve[min(k, len(curve)) - 1] if curve else None
    sel = run["selected"]
    return {"seed": run["seed"], "evals_to_top1": pos,
            "lookups_to_top1": run["lookups_at"][pos - 1] if pos else None,
            "best_true_at": at, "best_true": curve[-1] if curve else None,
            "selected": sel, "selected_true": truth.get(sel) if sel else None, "selected_in_top1": sel in top,
            "evaluated": len(order), "with_true_score": sum(1 for c in order if truth.get(c) is not None),
            "lookups": run["lookups"], "evaluations": run["evaluations"],
            "exhausted": run["exhausted"], "wall_s": round(run["wall_s"], 3), "curve": curve}


def spread(values: Sequence[Optional[float]]) -> dict:
    """Median and IQR (numpy percentiles 25 / 50 / 75) of the values that are not None."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(vals, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": len(vals)}


def subspace_ids(space: str, space_options: dict) -> set:
    """The candidate ids of every genome of a (smaller) space, e.g. pangaea with fewer unary operators
    (their features are cached for the process: a surrogate search of that space reuses them)."""
    from actsearch.search_spaces import get_space
    from actsearch.surrogate_features import genome_features

    sp = get_space(space, **space_options)
    return {cid for cid in (genome_features(sp, g)[0] for g in sp.enumerate()) if cid is not None}


class Bench:
    """The table loaded once, its truth, and one reusable executor.  With `space_options` the searches
    run in that variant of the table's space (e.g. {"unary": [...]}, a subspace whose every candidate
    the table holds) and the truth and top 1% are those of the subspace's candidates."""

    def __init__(self, table_path: str, tasks: Optional[Sequence[str]] = None, space_options: Optional[dict] = None):
        from actsearch.search import SearchConfig
        from actsearch.tabular import load_table

        self.path = str(table_path)
        self.table = load_table(self.path)
        self.space = self.table.get("provenance", {}).get("space")
        if not self.space:
            raise ValueError(f"{self.path}: the table does not name the space it was built from")
        self.tasks = list(tasks) if tasks else list(self.table["tasks"])
        self.truth = true_scores(self.table, self.tasks)
        self.space_options = dict(space_options or {})
        if self.space_options:
            ids = subspace_ids(self.space, self.space_options)
            self.truth = {c: v for c, v in self.truth.items() if c in ids}
        self.threshold, self.top = top_set(self.truth)
        self.executor = _executor_class()(SearchConfig(space=self.space, tasks=self.tasks), self.path)

    def info(self) -> dict:
        valid = {c: v for c, v in self.truth.items() if v is not None}
        best = sorted(valid, key=lambda c: -valid[c])[:10]
        formula = {c["id"]: c["formula"] for c in self.table["candidates"]}
        return {"path": self.path, "space": self.space, "space_options": self.space_options, "tasks": self.tasks,
                "seeds": self.table["seeds"],
                "candidates": len(self.truth), "with_true_score": len(valid),
                "screened_out": len(self.table.get("screened_out", [])), "top1_threshold": self.threshold,
                "top1": sorted(self.top), "top1_size": len(self.top),
                "best": [{"id": c, "formula": formula[c], "true": valid[c]} for c in best]}

    def search(self, strategy: str, seed: int, budget: int, rungs: Optional[str], eval_seeds: int, batch: int,
               checkpoints: Sequence[int]) -> dict:
        run = run_search(self.path, self.executor, self.space, strategy, seed, budget, self.tasks, eval_seeds,
                         rungs, batch, self.space_options)
        return {**run_metrics(run, self.truth, self.top, checkpoints), "order": run["order"]}


def summarize(runs: list, budget: int, checkpoints: Sequence[int]) -> dict:
    never = sum(1 for r in runs if r["evals_to_top1"] is None)
    return {"searches": len(runs), "never_found": never,
            "evals_to_top1": spread([r["evals_to_top1"] if r["evals_to_top1"] is not None else budget + 1
                                     for r in runs]),
            "best_true_at": {str(k): spread([r["best_true_at"].get(str(k)) for r in runs])
                             for k in checkpoints if k <= budget},
            "best_true": spread([r["best_true"] for r in runs]),
            "selected_true": spread([r["selected_true"] for r in runs]),
            "selected_in_top1": sum(1 for r in runs if r["selected_in_top1"]),
            "lookups": spread([r["lookups"] for r in runs]),
            "with_true_score": spread([r["with_true_score"] for r in runs]),
            "wall_s": spread([r["wall_s"] for r in runs])}


def compare(table: str, strategies: Sequence[str] = DEFAULT_STRATEGIES, seeds: int = 30, budget: int = 200,
            tasks: Optional[Sequence[str]] = None, rungs: Optional[str] = "flat", batch: int = 4, eval_seeds: int = 2,
            checkpoints: Sequence[int] = DEFAULT_CHECKPOINTS, compare_staging: Optional[str] = None,
            flat_seeds: int = 5, progress=None, bench: Optional[Bench] = None,
            space_options: Optional[dict] = None) -> dict:
    """Every strategy x search seed on the table; the result dict (what --out writes)."""
    progress = progress or (lambda msg: None)
    b = bench or Bench(table, tasks, space_options)
    rungs = None if rungs in (None, "default") else rungs
    t0 = time.time()
    out = {"settings": {"strategies": list(strategies), "seeds": seeds, "budget": budget, "tasks": b.tasks,
                        "rungs": rungs or "default", "batch": batch, "eval_seeds": eval_seeds,
                        "checkpoints": [k for k in checkpoints if k <= budget]},
           "table": b.info(), "strategies": {}}
    for s in strategies:
        runs = []
        for seed in range(seeds):
            runs.append(b.search(s, seed, budget, rungs, eval_seeds, batch, checkpoints))
            progress(f"{s} seed {seed}: evals to top 1% {runs[-1]['evals_to_top1']}, best true "
                     f"{_f(runs[-1]['best_true'])}, {runs[-1]['wall_s']:.1f} s")
        out["strategies"][s] = {"summary": summarize(runs, budget, checkpoints), "runs": runs}
    if compare_staging:
        out["staging"] = compare_staging_arms(b, compare_staging, seeds, budget, batch, eval_seeds, flat_seeds,
                                              progress)
    out["wall_s"] = time.time() - t0
    return out


def compare_staging_arms(b: Bench, strategy: str, seeds: int, budget: int, batch: int, eval_seeds: int = 2,
                         flat_seeds: int = 5, progress=None) -> dict:
    """Staged (default rungs, `budget` rung-0 candidates) vs flat (`flat_seeds` seeds on every task) at
    equal lookups, per search seed (see the module docstring)."""
    progress = progress or (lambda msg: None)
    if flat_seeds > len(b.table["seeds"]):
        raise ValueError(f"--flat-seeds {flat_seeds}: the table has only {len(b.table['seeds'])} seeds")
    per_flat = flat_seeds * len(b.tasks)
    arms: dict = {"staged": [], "flat": []}
    for seed in range(seeds):
        st = b.search(strategy, seed, budget, None, eval_seeds, batch, ())
        # the budget whose lookups are nearest the staged search's: budget x tasks x seeds on a complete
        # table; a partial table answers fewer (candidates it lacks cost nothing), so the guess is refined
        fb = max(1, round(st["lookups"] / per_flat))
        tried: dict = {}
        for _ in range(4):
            if fb in tried:
                break
            tried[fb] = b.search(strategy, seed, fb, "flat", flat_seeds, batch, ())
            got = tried[fb]["lookups"]
            if abs(got - st["lookups"]) <= per_flat / 2 or tried[fb]["exhausted"] or got == 0:
                break
            fb = max(1, round(fb * st["lookups"] / got))
        fb = min(tried, key=lambda k: (abs(tried[k]["lookups"] - st["lookups"]), k))
        fl = tried[fb]
        cap = max(st["lookups"], fl["lookups"]) + 1
        for arm, r, bud in (("staged", st, budget), ("flat", fl, fb)):
            arms[arm].append({**{k: r[k] for k in ("seed", "evals_to_top1", "lookups_to_top1", "best_true", "selected",
                                                   "selected_true", "selected_in_top1", "evaluated", "lookups",
                                                   "wall_s")}, "budget": bud, "never_cap": cap})
        progress(f"staging {strategy} seed {seed}: staged {st['lookups']} lookups ({budget} candidates), "
                 f"flat {fl['lookups']} ({fb} candidates)")
    summary = {}
    for arm, runs in arms.items():
        summary[arm] = {"searches": len(runs), "never_found": sum(1 for r in runs if r["lookups_to_top1"] is None),
                        "lookups_to_top1": spread([r["lookups_to_top1"] if r["lookups_to_top1"] is not None
                                                   else r["never_cap"] for r in runs]),
                        "best_true": spread([r["best_true"] for r in runs]),
                        "selected_true": spread([r["selected_true"] for r in runs]),
                        "selected_in_top1": sum(1 for r in runs if r["selected_in_top1"]),
                        "budget": spread([r["budget"] for r in runs]), "lookups": spread([r["lookups"] for r in runs])}
    ratio = [f["lookups"] / s["lookups"] for s, f in zip(arms["staged"], arms["flat"]) if s["lookups"]]
    return {"strategy": strategy, "staged_rungs": "default", "eval_seeds": eval_seeds, "flat_seeds": flat_seeds,
            "lookup_ratio_flat_over_staged": spread(ratio), "summary": summary, "runs": arms}


# ------------------------------------------------------------------------------------------ report

def _f(v, fmt="+.4f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _miqr(d: dict, fmt="+.4f") -> str:
    if d["median"] is None:
        return "-"
    return f"{_f(d['median'], fmt)} [{_f(d['q25'], fmt)}, {_f(d['q75'], fmt)}]"


def markdown(result: dict) -> str:
    info, st = result["table"], result["settings"]
    lines = [f"Table {info['path']} (space {info['space']}, tasks {', '.join(info['tasks'])}, "
             f"{len(info['seeds'])} seeds): {info['candidates']} candidates, {info['with_true_score']} with a true "
             f"score; top 1%: {info['top1_size']} candidate(s), true score >= {info['top1_threshold']:+.4f}.",
             f"{st['seeds']} search seeds per strategy, budget {st['budget']}, rungs {st['rungs']}, "
             f"{st['eval_seeds']} rung-0 seeds, batch {st['batch']}. Median [IQR] over search seeds.", ""]
    ks = st["checkpoints"]
    head = (["strategy", "evals to top 1%", "never found"] + [f"best true @{k}" for k in ks]
            + ["pick's true score", "pick in top 1%", "in table", "lookups", "s / search"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s, d in result["strategies"].items():
        m = d["summary"]
        row = ([s, _miqr(m["evals_to_top1"], "g"), f"{m['never_found']}/{m['searches']}"]
               + [_miqr(m["best_true_at"][str(k)]) for k in ks]
               + [_miqr(m["selected_true"]), f"{m['selected_in_top1']}/{m['searches']}",
                  _f(m["with_true_score"]["median"], "g"), _f(m["lookups"]["median"], "g"), _f(m["wall_s"]["median"], ".2f")])
        lines.append("| " + " | ".join(row) + " |")
    if "staging" in result:
        sg = result["staging"]
        lines += ["", f"Staged (default rungs, {sg['eval_seeds']} rung-0 seeds) vs flat ({sg['flat_seeds']} seeds, "
                      f"every task) at equal lookups, strategy {sg['strategy']} (flat / staged lookups: "
                      f"{_miqr(sg['lookup_ratio_flat_over_staged'], '.3f')}):", "",
                  "| arm | candidates | lookups | lookups to top 1% | never found | best true found | pick's true score "
                  "| pick in top 1% |", "|---|---|---|---|---|---|---|---|"]
        for arm, m in sg["summary"].items():
            lines.append(f"| {arm} | {_miqr(m['budget'], 'g')} | {_miqr(m['lookups'], 'g')} | "
                         f"{_miqr(m['lookups_to_top1'], 'g')} | {m['never_found']}/{m['searches']} | "
                         f"{_miqr(m['best_true'])} | {_miqr(m['selected_true'])} | "
                         f"{m['selected_in_top1']}/{m['searches']} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", required=True)
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    p.add_argument("--seeds", type=int, default=30, help="search seeds 0..N-1 per strategy")
    p.add_argument("--budget", type=int, default=200, help="rung-0 candidates per search")
    p.add_argument("--tasks", default=None, help="search tasks (default: the table's)")
    p.add_argument("--rungs", default="flat", help="flat | default | a TASKS:SEEDS spec")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--eval-seeds", type=int, default=2, help="rung-0 seeds (SearchConfig.seeds)")
    p.add_argument("--checkpoints", default=",".join(map(str, DEFAULT_CHECKPOINTS)))
    p.add_argument("--compare-staging", default=None, metavar="STRATEGY")
    p.add_argument("--flat-seeds", type=int, default=5)
    p.add_argument("--space-options", default=None, metavar="JSON",
                   help='search a variant of the table\'s space, e.g. \'{"unary": ["relu", "tanh"]}\' (the truth '
                        'and top 1%% are then the subspace\'s)')
    p.add_argument("--out", default=None)
    p.add_argument("--json", action="store_true", help="print the JSON (without per-run curves) instead of markdown")
    a = p.parse_args(argv)
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()] if a.tasks else None
    checkpoints = [int(k) for k in a.checkpoints.split(",") if k.strip()]
    result = compare(a.table, strategies, a.seeds, a.budget, tasks, a.rungs, a.batch, a.eval_seeds, checkpoints,
                     a.compare_staging, a.flat_seeds, progress=lambda m: print(m, file=sys.stderr, flush=True),
                     space_options=json.loads(a.space_options) if a.space_options else None)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    if a.json:
        slim = {**result, "strategies": {s: {"summary": d["summary"]} for s, d in result["strategies"].items()}}
        if "staging" in slim:
            slim["staging"] = {k: v for k, v in slim["staging"].items() if k != "runs"}
        print(json.dumps(slim, indent=1))
    else:
        print(markdown(result))
    return result


if __name__ == "__main__":
    main()
