"""Staged vs flat search at EQUAL training compute, on the swish space.

For each search seed s:
  staged  SearchConfig(space="swish", strategy="evolution", rungs=None (the default rungs), seeds=2, seed=s,
          budget=--budget rung-0 candidates); its compute is counted from its store: the candidate
          (task, seed) trainings of the search (evaluations table, validation trainings excluded) times
          each task's training steps (--steps, or the task's own budget)
  flat    rungs="flat", seeds=2, the same tasks and seed s, with the budget whose compute
          (budget x tasks x 2 seeds x steps) is nearest the staged search's; its compute is counted from
          its store the same way (the ratio flat / staged is printed and recorded)
Baseline trainings are not counted (shared by every candidate of a run, and cached).

Then the best candidate of each search is validated (actsearch.validation.validate_store: fresh seeds on
the search tasks, held-out tasks, paired t-tests, Holm) -- one validation per arm, so every arm's Holm
family has the same size:
  "staged"                    the staged run's top-1 by the conservative ranking (store.ranked()[0]:
                              lower confidence bound at the candidate's highest rung)
  "flat (LCB)"                the flat run's top-1 by the same ranking
  "flat (mean, old ranking)"  the flat run's top-1 by mean score (what actsearch ranked by before); when it
                              is the LCB's candidate it is not validated again: the arm gets the same numbers
                              and `same_as: "flat (LCB)"`

Recorded per arm and search seed: the candidate, its search score (+CI), fresh-seed score on the search
tasks (+CI), the winner's-curse gap (search - fresh), held-out score (+CI), verdict, wall seconds of the
search and of the validation, compute (member-trainings x steps).  A markdown table per seed, a summary
(medians over search seeds per arm: held-out score, fresh score, gap), and everything as JSON (--out).

Resumable: each run lives in --run-root/<arm>-s<seed> (staged-sN, flat-sN; both flat arms share flat-sN);
an existing run is resumed (a finished one finishes at once) and a validation already recorded in the run
dir's bench_staged.json (same candidate, seeds, tasks) is reused, so a killed benchmark picks up where it
stopped.  Wall times: those of the session that finished the step (a resumed step says so: `resumed`).
Caveat on wall times: the flat search runs after the staged one of the same seed and, with the same
strategy seed, proposes the same first candidates, so it finds some population kernels already compiled.

Usage: python benchmarks/bench_staged.py [--search-seeds 0,1,2] [--budget 48] [--tasks mnist1d-mlp]
           [--steps N] [--validate-seeds 5] [--validate-tasks T1,T2] [--out FILE.json] [--workers 0]
           [--executor ray|local] [--json] [--run-root runs/bench-staged]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from typing import Optional

ARMS = ("staged", "flat (LCB)", "flat (mean, old ranking)")
STATE = "bench_staged.json"  # per run dir: wall times and validations, for resuming


def _split(text: Optional[str]) -> Optional[list]:
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search-seeds", default="0,1,2", help="comma-separated strategy seeds (default 0,1,2)")
    ap.add_argument("--budget", type=int, default=48, help="rung-0 candidates of the staged search (default 48)")
    ap.add_argument("--tasks", default="mnist1d-mlp", help="comma-separated search tasks (default mnist1d-mlp)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per task (default: each task's own)")
    ap.add_argument("--validate-seeds", type=int, default=5, help="fresh seeds per validation task (default 5)")
    ap.add_argument("--validate-tasks", default=None,
                    help="comma-separated validation tasks (default: the search tasks and the held-out tasks)")
    ap.add_argument("--out", default=None,
                    help="JSON output (default benchmarks/results/staged-vs-flat-<date>.json)")
    ap.add_argument("--workers", type=int, default=0, help="Ray workers (default 0: one per CPU)")
    ap.add_argument("--executor", default="ray", choices=["ray", "local"])
    ap.add_argument("--json", action="store_true", help="print the JSON on stdout (tables go to stderr)")
    ap.add_argument("--run-root", default="runs/bench-staged", help="run directories: RUN_ROOT/<arm>-s<seed>")
    args = ap.parse_args(argv)
    try:
        args.search_seeds = [int(s) for s in _split(args.search_seeds)]
    except ValueError:
        ap.error(f"--search-seeds must be comma-separated integers, got {args.search_seeds!r}")
    if not args.search_seeds:
        ap.error("--search-seeds is empty")
    args.tasks = _split(args.tasks)
    args.validate_tasks = _split(args.validate_tasks)
    if not args.tasks:
        ap.error("--tasks is empty")
    if args.validate_tasks is not None and not args.validate_tasks:
        ap.error("--validate-tasks is empty; name at least one task or leave it out")
    if args.budget < 1:
        ap.error("--budget must be >= 1")
    if args.validate_seeds < 2:
        ap.error("--validate-seeds must be >= 2 (a paired test needs two)")
    if args.out is None:
        args.out = os.path.join("benchmarks", "results", f"staged-vs-flat-{time.strftime('%Y-%m-%d')}.json")
    return args


# ------------------------------------------------------------------------------------------ helpers

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def task_steps(tasks, steps: Optional[int]) -> dict:
    from actsearch.tasks import get_task

    return {t: int(steps) if steps is not None else get_task(t).budget.steps for t in tasks}


def search_compute(store, steps_of: dict) -> dict:
    """The search's candidate trainings (validation excluded) per task and rung, and their training steps."""
    per_task: dict = {}
    per_rung: dict = {}
    for task, metrics in store.db.execute("SELECT task, metrics FROM evaluations").fetchall():
        rung = json.loads(metrics).get("rung", 0)
        if rung == "validation":
            continue
        per_task[task] = per_task.get(task, 0) + 1
        per_rung[str(rung)] = per_rung.get(str(rung), 0) + 1
    unknown = [t for t in per_task if t not in steps_of]
    if unknown:
        raise RuntimeError(f"the store holds trainings on {unknown}, which are not search tasks")
    return {"trainings": sum(per_task.values()), "trainings_per_task": per_task, "trainings_per_rung": per_rung,
            "steps": sum(n * steps_of[t] for t, n in per_task.items())}


def _read_state(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, STATE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_state(run_dir: str, state: dict) -> None:
    path = os.path.join(run_dir, STATE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, default=str)
    os.replace(tmp, path)


def _progress(label: str):
    last = [0.0]

    def show(st: dict) -> None:
        now = time.time()
        if now - last[0] < 10:
            return
        last[0] = now
        if "validation" in st:
            v = st["validation"]
            _log(f"  [{label}] validation {v.get('done')}/{v.get('of')}")
            return
        rungs = " ".join(f"r{r['index']}:{r['completed']}" for r in st.get("rungs", []))
        best = st.get("best") or {}
        _log(f"  [{label}] {st.get('evaluated')}/{st.get('budget')} evaluated ({rungs}), {st.get('elapsed_s', 0):.0f} s, "
             f"best {best.get('score') if best else None}")

    return show


def run_search(cfg, run_dir: str, executor, label: str) -> dict:
    """Run (or resume, or find finished) the search of `cfg` in `run_dir` with `executor`; returns
    {"wall_s", "resumed", "summary"}."""
    from actsearch.search import SearchDriver

    resume = os.path.exists(os.path.join(run_dir, "results.db"))
    state = _read_state(run_dir)
    t0 = time.perf_counter()
    summary = SearchDriver(cfg, run_dir, resume=resume, progress=_progress(label), executor=executor,
                           optuna_study=False).run()  # strategy comparisons: no Optuna mirror
    wall = time.perf_counter() - t0
    search = state.get("search")
    if search and search.get("budget") == cfg.budget:  # finished before: keep the session that finished it
        return {**search, "reused": True}
    search = {"wall_s": wall, "resumed": resume, "budget": cfg.budget, "evaluated": summary.get("evaluated"),
              "exhausted": summary.get("exhausted"), "rungs": summary.get("rungs")}
    _write_state(run_dir, {**state, "search": search})
    return {**search, "reused": False}


def best_by_mean(store) -> dict:
    """The old ranking's best: the highest mean score among non-rejected candidates (first evaluated on ties)."""
    rows = [r for r in store.ranked() if r["rejected"] is None and r["score"] is not None]
    if not rows:
        raise RuntimeError(f"{store.run_dir}: no valid evaluated candidate")
    return max(rows, key=lambda r: (r["score"], -r["order"]))


def best_by_lcb(store) -> dict:
    rows = [r for r in store.ranked() if r["rejected"] is None and r["score"] is not None]
    if not rows:
        raise RuntimeError(f"{store.run_dir}: no valid evaluated candidate")
    return rows[0]


def validate_one(store, executor, run_dir: str, key: str, cid: str, seeds: int, tasks: Optional[list],
                 label: str) -> dict:
    """validate_store on one candidate, or the validation recorded in the run dir's state for the same
    candidate, seeds and tasks.  Returns {"summary", "row", "wall_s", "reused"}."""
    from actsearch.validation import fresh_seeds, held_out_tasks, validate_store

    search_tasks = list((store.config() or {}).get("tasks") or [])
    want_tasks = list(dict.fromkeys(tasks)) if tasks else search_tasks + held_out_tasks(search_tasks)
    state = _read_state(run_dir)
    old = (state.get("validations") or {}).get(key)
    if old and old.get("id") == cid and old.get("seeds") == fresh_seeds(seeds) and old.get("tasks") == want_tasks:
        return {**old, "reused": True}
    t0 = time.perf_counter()
    show = _progress(label)
    summary = validate_store(store, executor, top=1, seeds=seeds, tasks=want_tasks, ids=[cid],
                             progress=lambda st: show({"validation": st}))
    wall = time.perf_counter() - t0
    row = summary["candidates"][0]
    rec = {"id": cid, "seeds": fresh_seeds(seeds), "tasks": want_tasks, "wall_s": wall,
           "summary": {k: v for k, v in summary.items() if k not in ("candidates", "reference")}, "row": row,
           "reference": summary.get("reference")}
    state = _read_state(run_dir)
    state.setdefault("validations", {})[key] = rec
    _write_state(run_dir, state)
    return {**rec, "reused": False}


def arm_record(arm: str, seed: int, run_dir: str, cand: dict, val: dict, search: dict, compute: dict) -> dict:
    row = val["row"]
    fresh, held = row.get("fresh") or {}, row.get("held_out") or {}
    refs = val["summary"].get("reference_scores") or {}
    return {
        "arm": arm, "search_seed": seed, "run_dir": run_dir,
        "candidate": {"id": cand["id"], "formula": cand["formula"], "canonical": cand.get("canonical")},
        "search_score": row.get("search_score"), "search_ci": row.get("search_ci"), "search_lcb": cand.get("lcb"),
        "search_rung": cand.get("rung"),
        "fresh": fresh.get("score"), "fresh_ci": fresh.get("ci"), "fresh_tasks": fresh.get("tasks"),
        "held_out": held.get("score"), "held_out_ci": held.get("ci"), "held_out_tasks": held.get("tasks"),
        "gap": row.get("gap"), "verdict": row.get("verdict"), "verdict_code": row.get("verdict_code"),
        "missing": row.get("missing"),
        "search_wall_s": search["wall_s"], "search_resumed": search.get("resumed", False),
        "validation_wall_s": val["wall_s"], "validation_trainings": val["summary"].get("trainings"),
        "compute": compute,
        "validation": {"tasks": row.get("tasks"), "seeds": val["seeds"], "n_tests": val["summary"].get("n_tests"),
                       "best_baseline": val["summary"].get("best_baseline"),
                       "reference_scores": {b: {"fresh": (v.get("fresh") or {}).get("score"),
                                                "held_out": (v.get("held_out") or {}).get("score")}
                                            for b, v in refs.items()}},
        "same_as": None,
    }


@contextlib.contextmanager
def searched(cfg, run_dir: str, label: str, steps_of: dict):
    """Run (or resume) the search of `cfg` in `run_dir`, then yield (its summary, its store open for writing,
    the executor, its compute) to validate with; the store is closed and the executor shut down after."""
    from actsearch.executor import make_executor
    from actsearch.store import ResultStore

    ex = make_executor(cfg, run_dir)
    try:
        search = run_search(cfg, run_dir, ex, label)
        store = ResultStore(run_dir, mode="write")
        try:
            yield search, store, ex, search_compute(store, steps_of)
        finally:
            store.close()
    finally:
        ex.shutdown()


# ------------------------------------------------------------------------------------------ one seed

def run_seed(args, seed: int) -> dict:
    from actsearch.search import SearchConfig

    common = dict(space="swish", strategy="evolution", tasks=list(args.tasks), seeds=2, seed=seed, validate_top=0,
                  steps=args.steps, executor=args.executor, workers=args.workers)
    out: dict = {"search_seed": seed, "arms": {}}

    # (a) staged
    staged_dir = os.path.join(args.run_root, f"staged-s{seed}")
    cfg = SearchConfig(budget=args.budget, rungs=None, **common)
    cfg.validate()
    steps_of = task_steps(cfg.tasks, args.steps)
    _log(f"seed {seed}: staged search, budget {args.budget} -> {staged_dir}")
    with searched(cfg, staged_dir, f"staged s{seed}", steps_of) as (search, store, ex, staged_compute):
        cand = best_by_lcb(store)
        _log(f"seed {seed}: staged compute {staged_compute['steps']} member-steps "
             f"({staged_compute['trainings']} trainings, per rung {staged_compute['trainings_per_rung']}); "
             f"validating {cand['formula']}")
        val = validate_one(store, ex, staged_dir, "staged", cand["id"], args.validate_seeds, args.validate_tasks,
                           f"staged s{seed}")
        out["arms"]["staged"] = arm_record("staged", seed, staged_dir, cand, val, search, staged_compute)
        out["staged_rungs"] = (store.config() or {}).get("rungs")

    # (b) flat, at the staged search's compute
    per_candidate = sum(2 * steps_of[t] for t in cfg.tasks)
    exact = staged_compute["steps"] / per_candidate
    flat_budget = max(1, int(math.floor(exact + 0.5)))
    flat_dir = os.path.join(args.run_root, f"flat-s{seed}")
    fcfg = SearchConfig(budget=flat_budget, rungs="flat", **common)
    fcfg.validate()
    _log(f"seed {seed}: flat search, budget {flat_budget} (exact {exact:.2f}) -> {flat_dir}")
    with searched(fcfg, flat_dir, f"flat s{seed}", steps_of) as (fsearch, store, ex, flat_compute):
        lcb_best, mean_best = best_by_lcb(store), best_by_mean(store)
        val = validate_one(store, ex, flat_dir, "flat (LCB)", lcb_best["id"], args.validate_seeds,
                           args.validate_tasks, f"flat s{seed}")
        out["arms"]["flat (LCB)"] = arm_record("flat (LCB)", seed, flat_dir, lcb_best, val, fsearch, flat_compute)
        if mean_best["id"] == lcb_best["id"]:
            rec = dict(out["arms"]["flat (LCB)"], arm="flat (mean, old ranking)", same_as="flat (LCB)",
                       validation_wall_s=0.0)
        else:
            val = validate_one(store, ex, flat_dir, "flat (mean, old ranking)", mean_best["id"],
                               args.validate_seeds, args.validate_tasks, f"flat s{seed}")
            rec = arm_record("flat (mean, old ranking)", seed, flat_dir, mean_best, val, fsearch, flat_compute)
        out["arms"]["flat (mean, old ranking)"] = rec

    out["compute"] = {"staged_steps": staged_compute["steps"], "flat_steps": flat_compute["steps"],
                      "staged_trainings": staged_compute["trainings"], "flat_trainings": flat_compute["trainings"],
                      "ratio": flat_compute["steps"] / staged_compute["steps"] if staged_compute["steps"] else None,
                      "flat_budget": flat_budget, "flat_budget_exact": exact,
                      "planned_flat_steps": flat_budget * per_candidate, "steps_per_task": steps_of,
                      "staged_budget": args.budget}
    c = out["compute"]
    _log(f"seed {seed}: compute staged {c['staged_steps']} vs flat {c['flat_steps']} member-steps "
         f"(ratio flat/staged {c['ratio']:.3f}; flat budget {flat_budget})")
    return out


# ------------------------------------------------------------------------------------------ report

def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def seed_table(res: dict) -> str:
    c = res["compute"]
    lines = [f"### search seed {res['search_seed']}",
             f"compute (member-trainings x steps): staged {c['staged_steps']} ({c['staged_trainings']} trainings), "
             f"flat {c['flat_steps']} ({c['flat_trainings']} trainings, budget {c['flat_budget']}); "
             f"ratio flat/staged {c['ratio']:.3f}", "",
             "| arm | candidate | search score | fresh score | gap | held-out score | verdict | search s | validation s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        a = res["arms"].get(arm)
        if a is None:
            continue
        same = f" (= {a['same_as']})" if a.get("same_as") else ""
        lines.append(f"| {arm}{same} | `{a['candidate']['formula']}` | {_f(a['search_score'])}{_ci(a['search_ci'])} | "
                     f"{_f(a['fresh'])}{_ci(a['fresh_ci'])} | {_f(a['gap'])} | {_f(a['held_out'])}{_ci(a['held_out_ci'])} | "
                     f"{a['verdict']} | {a['search_wall_s']:.0f} | {a['validation_wall_s']:.0f} |")
    return "\n".join(lines)


def _median(values) -> Optional[float]:
    vals = [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(vals) if vals else None


def summarize(per_seed: list) -> dict:
    out = {}
    for arm in ARMS:
        recs = [r["arms"][arm] for r in per_seed if arm in r["arms"]]
        out[arm] = {"n_seeds": len(recs),
                    "median_held_out": _median(r["held_out"] for r in recs),
                    "median_fresh": _median(r["fresh"] for r in recs),
                    "median_gap": _median(r["gap"] for r in recs),
                    "median_search_score": _median(r["search_score"] for r in recs),
                    "median_compute_steps": _median(r["compute"]["steps"] for r in recs),
                    "median_search_wall_s": _median(r["search_wall_s"] for r in recs),
                    "verdicts": [r["verdict_code"] for r in recs],
                    "same_candidate_as_lcb": sum(1 for r in recs if r.get("same_as"))}
    out["median_compute_ratio"] = _median(r["compute"]["ratio"] for r in per_seed)
    return out


def summary_table(summary: dict) -> str:
    lines = ["### summary (median over search seeds)",
             f"compute ratio flat/staged: {summary['median_compute_ratio']:.3f}", "",
             "| arm | seeds | held-out score | fresh score | gap (winner's curse) | search score | verdicts |",
             "|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        s = summary[arm]
        lines.append(f"| {arm} | {s['n_seeds']} | {_f(s['median_held_out'])} | {_f(s['median_fresh'])} | "
                     f"{_f(s['median_gap'])} | {_f(s['median_search_score'])} | {', '.join(map(str, s['verdicts']))} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from actsearch.evaluation import versions

    t0 = time.time()
    per_seed = []
    tables = []
    for seed in args.search_seeds:
        res = run_seed(args, seed)
        per_seed.append(res)
        tables.append(seed_table(res))
        print(tables[-1] + "\n", file=sys.stderr if args.json else sys.stdout, flush=True)
    summary = summarize(per_seed)
    result = {"benchmark": "staged vs flat search at equal training compute", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "settings": {"space": "swish", "strategy": "evolution", "search_seeds": args.search_seeds,
                           "budget": args.budget, "tasks": args.tasks, "steps": args.steps, "seeds": 2,
                           "validate_seeds": args.validate_seeds, "validate_tasks": args.validate_tasks,
                           "executor": args.executor, "workers": args.workers, "run_root": os.path.abspath(args.run_root),
                           "cpus": os.cpu_count()},
              "versions": versions(), "arms": list(ARMS), "per_seed": per_seed, "summary": summary,
              "elapsed_s": time.time() - t0}
    print(summary_table(summary), file=sys.stderr if args.json else sys.stdout, flush=True)
    if os.path.dirname(os.path.abspath(args.out)):
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, default=str)
    _log(f"wrote {args.out}")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
