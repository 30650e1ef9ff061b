"""Tabular benchmarks: every distinct screened candidate of an enumerable space trained on some tasks
with paired seeds, written as one compact table; and an executor that answers a search from the table
instead of training (NAS-Bench style), so a whole search, staged or flat, runs in seconds.

    actsearch bench space --space pangaea --tasks mnist1d-mlp,digits-cnn --seeds 5 --out DIR
    actsearch search --space pangaea --strategy evolution --executor table:DIR/table.json.gz --budget 200

Building reuses the search machinery: an exhaustive, flat (one-rung) search with `--seeds` seeds on
the tasks, in DIR (its store; re-running the command resumes it), on Ray or in-process; the table is
written from the store at the end.

Table (gzip-compressed JSON; accuracies rounded to 5 decimals, which is below the test sets' resolution
of 1/1000 and 1/540):
  {"format": "actsearch-table", "version": 1, "provenance": {versions, command, wall_s, created, space,
   steps}, "tasks": [...], "seeds": [...], "chance": {task: p},
   "baselines": {task: {name: [accuracy per seed]}},
   "candidates": [{"id", "formula", "canonical", "acc": {task: [accuracy per seed]}, "rejected"}],
   "screened_out": [{"id", "formula", "reason"}]}
"""
from __future__ import annotations

import gzip
import json
import os
import time
from collections import deque
from typing import Optional

from actsearch.executor import EvaluationResult, Executor, as_items

FORMAT = "actsearch-table"
VERSION = 1
TABLE_NAME = "table.json.gz"
MAX_GENOMES = 200_000  # pangaea has 5,103; swish with two units 39 million


class TableError(ValueError):
    """A table that cannot be used, with what is wrong."""


def _r(x):
    return None if x is None else round(float(x), 5)


def table_from_store(store, provenance: Optional[dict] = None) -> dict:
    """The table of a (flat) run: each evaluated candidate's accuracy per task and seed."""
    from actsearch.tasks import get_task

    cfg = store.config() or {}
    tasks = list(cfg.get("tasks") or [])
    seeds = list(range(int(cfg.get("seeds", 1))))
    base = store.baseline_accuracies()
    table = {"format": FORMAT, "version": VERSION,
             "provenance": {**(provenance or {}), "space": cfg.get("space"), "steps": cfg.get("steps"),
                            "versions": store.meta("versions")},
             "tasks": tasks, "seeds": seeds, "chance": {t: get_task(t).chance for t in tasks},
             "baselines": {t: {b: [_r(base.get(t, {}).get(b, {}).get(s)) for s in seeds]
                               for b in sorted(base.get(t, {}))} for t in tasks},
             "candidates": [], "screened_out": []}
    for r in sorted(store.ranked(), key=lambda r: r["order"]):
        acc = store.accuracies(r["id"])
        table["candidates"].append({"id": r["id"], "formula": r["formula"], "canonical": r["canonical"],
                                    "acc": {t: [_r(acc.get(t, {}).get(s)) for s in seeds] for t in tasks},
                                    "rejected": r["rejected"]})
    for cid, formula, reason in store._all("SELECT id, formula, screening_reason FROM candidates WHERE "
                                           "screening_passed = 0 ORDER BY created"):
        table["screened_out"].append({"id": cid, "formula": formula, "reason": reason})
    return table


def write_table(table: dict, path: os.PathLike) -> str:
    path = str(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(table, f, separators=(",", ":"), allow_nan=False)
    os.replace(tmp, path)
    return path


_LOADED: dict = {}  # (path, mtime, size) -> table: config validation, the executor and benchmarks share one load


def load_table(path: os.PathLike) -> dict:
    """The table at `path` (TableError names what is wrong); loaded once per file version per process.
    Treat it as read-only: it is shared."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size) if st else None
    if key in _LOADED:
        return _LOADED[key]
    table = _read_table(path)
    if key is not None:
        _LOADED.clear()  # one table at a time is what searches and benchmarks use
        _LOADED[key] = table
    return table


def _read_table(path: os.PathLike) -> dict:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            table = json.load(f)
    except FileNotFoundError:
        raise TableError(f"no table at {path} (build one with `actsearch bench space ... --out DIR`)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise TableError(f"{path} is not a readable actsearch table ({exc})") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise TableError(f"{path} is not an actsearch table (no format {FORMAT!r})")
    if table.get("version") != VERSION:
        raise TableError(f"{path} is a table of version {table.get('version')}; this actsearch reads version {VERSION}")
    return table


class TableExecutor(Executor):
    """Answers evaluations from a table: each candidate's accuracies for the seeds a plan asks for,
    with the table's baselines, in evaluate_many's report format.  `capacity` batches are in flight at
    once (as with that many workers); answers come back in submission order, so a search on a table is
    deterministic.  A candidate absent from the table (another space, or screened out when the table was
    built) or a seed the table lacks is recorded as rejected (evaluation_error), never invented."""

    def __init__(self, config, path: os.PathLike, capacity: int = 4):
        self.table = load_table(path)
        self.path = str(path)
        self.config, self.capacity = config, capacity
        self.by_id = {c["id"]: c for c in self.table["candidates"]}
        self.screened = {c["id"] for c in self.table.get("screened_out", [])}
        missing = [t for t in config.tasks if t not in self.table["tasks"]]
        if missing:
            raise TableError(f"the table {path} has tasks {', '.join(self.table['tasks'])}, not {', '.join(missing)}")
        self.queue: deque = deque()
        self.queries = 0  # candidate (task, seed) lookups answered

    def submit(self, items: list, plan: Optional[dict] = None, timeout_s: Optional[float] = None) -> None:
        plan = plan or {t: list(range(self.config.seeds)) for t in self.config.tasks}
        self.queue.append([EvaluationResult(it.candidate_id, self.report(it.candidate_id, plan), "table", 0.0)
                           for it in as_items(items)])

    def report(self, cid: str, plan: dict) -> dict:
        from actsearch.evaluation import paired_comparison, summarize, task_score
        from actsearch.rejection import Rejection, RejectionReason

        row = self.by_id.get(cid)
        table_seeds = self.table["seeds"]
        lacking = {t: [s for s in seeds if s not in table_seeds] for t, seeds in plan.items()}
        lacking = {t: s for t, s in lacking.items() if s}
        if row is None or lacking or any(t not in self.table["tasks"] for t in plan):
            why = ("not in the table (" + ("screened out when it was built" if cid in self.screened
                                           else "not in the space it was built from") + ")" if row is None
                   else f"the table has no seeds {lacking} (it has {table_seeds})")
            return Rejection(RejectionReason.EVALUATION_ERROR, "evaluate", f"{cid} {why}").to_report()
        tasks = {}
        for t, seeds in plan.items():
            idx = [table_seeds.index(s) for s in seeds]
            cand = [row["acc"][t][i] for i in idx]
            base = {b: [v[i] for i in idx] for b, v in self.table["baselines"][t].items()}
            if any(v is None for v in cand) or any(v is None for v in base.get("relu", [None])):
                return Rejection(RejectionReason.EVALUATION_ERROR, "evaluate",
                                 f"the table has no accuracy for some of seeds {seeds} on {t}").to_report()
            rejected = row.get("rejected")
            tasks[t] = {"metric": "accuracy", "chance": self.table["chance"][t], "seeds": list(seeds),
                        "candidate": summarize(cand), "baselines": {b: summarize(v) for b, v in base.items()},
                        "vs": {b: paired_comparison(cand, v) for b, v in base.items()},
                        "rejected": rejected.split(": ", 1)[-1] if rejected else None,
                        "score": task_score(sum(cand) / len(cand), sum(base["relu"]) / len(seeds),
                                            self.table["chance"][t]),
                        "wall_s": 0.0, "candidate_wall_s": 0.0}
        self.queries += sum(len(seeds) for seeds in plan.values())  # counted once the whole plan is answered
        first = next(iter(plan.values()))
        return {"score": sum(t["score"] for t in tasks.values()) / len(tasks), "seeds": list(first), "tasks": tasks}

    def wait(self) -> list[list[EvaluationResult]]:
        return [self.queue.popleft()] if self.queue else []


def build_space_table(space: str, tasks: list, seeds: int, out_dir: str, steps: Optional[int] = None,
                      workers: int = 0, executor: str = "ray", batch: int = 8, limit: Optional[int] = None,
                      progress=None, command: str = "") -> dict:
    """Train every distinct screened candidate of `space` (or its first `limit` genomes) on `tasks`
    with `seeds` paired seeds, in the run directory `out_dir` (resumed when it exists); write
    out_dir/table.json.gz and return {"table": path, "candidates", "screened_out", "wall_s", ...}."""
    from actsearch.search import SearchConfig, SearchDriver
    from actsearch.search_spaces import get_space
    from actsearch.store import ResultStore

    sp = get_space(space)
    size = sp.size()
    if size is None:
        raise ValueError(f"space {space!r} cannot be enumerated; a table needs a finite space (pangaea, or swish "
                         f"with one unit)")
    if size > MAX_GENOMES and not limit:
        raise ValueError(f"space {space!r} has {size:,} genomes, too many to tabulate (at most {MAX_GENOMES:,}); "
                         f"pass --limit N for its first N distinct candidates")
    budget = min(size, limit) if limit else size
    cfg = SearchConfig(space=space, strategy="exhaustive", tasks=list(tasks), budget=budget, seeds=seeds,
                       steps=steps, batch=batch, workers=workers, executor=executor, rungs="flat", validate_top=0)
    resume = os.path.exists(os.path.join(out_dir, "results.db"))
    t0 = time.time()
    summary = SearchDriver(cfg, out_dir, resume=resume, progress=progress).run()
    with ResultStore(out_dir, mode="read") as store:
        prior = (store.meta("table_wall_s") or 0.0)
        # a build interrupted before its end never stored its wall time: the store's own record of the
        # work (worker seconds of every training, first to last candidate) survives every resume
        first, last = store._all("SELECT MIN(created), MAX(created) FROM candidates")[0]
        worker_s = sum(v["wall_s"] for v in store.rung_spending().values())
        table = table_from_store(store, {"command": command, "wall_s": prior + time.time() - t0,
                                         "worker_s": worker_s, "span_s": (last - first) if first else 0.0,
                                         "created": time.time()})
    with ResultStore(out_dir, mode="write") as store:
        store._set_meta("table_wall_s", table["provenance"]["wall_s"])
    path = write_table(table, os.path.join(out_dir, TABLE_NAME))
    return {"table": path, "candidates": len(table["candidates"]), "screened_out": len(table["screened_out"]),
            "evaluated": summary["evaluated"], "exhausted": summary["exhausted"],
            "wall_s": table["provenance"]["wall_s"], "bytes": os.path.getsize(path)}


def table_statistics(table: dict, alpha: float = 0.05) -> dict:
    """A table's distribution: per task, how many candidates beat / are beaten by ReLU, GELU and SiLU
    significantly (paired t-test over the table's seeds, Holm-corrected over the candidates of each
    task x baseline family, statsmodels; also at a Benjamini-Hochberg false discovery rate of alpha,
    "better_fdr" / "worse_fdr", which describes the distribution but backs no claim about a single
    candidate); the Spearman rank correlation of the candidates' scores between
    every two tasks (scipy); and where the catalog's named activations that are in the table rank by
    their multi-task score (rank 1 = best, among the non-rejected candidates)."""
    import statistics as st

    from scipy import stats

    from actsearch.staging import estimate_score
    from actsearch.validation import benjamini_hochberg, holm, paired_test

    tasks, seeds = table["tasks"], table["seeds"]
    base = {t: {b: dict(zip(seeds, v)) for b, v in table["baselines"][t].items()} for t in tasks}
    rows = [c for c in table["candidates"] if not c.get("rejected")
            and all(v is not None for t in tasks for v in c["acc"][t])]
    out: dict = {"candidates": len(table["candidates"]), "valid": len(rows), "seeds": len(seeds), "alpha": alpha,
                 "tasks": {}}
    scores = {}
    for t in tasks:
        per_task = {"best": None, "baselines": {}}
        for b in ("relu", "gelu", "silu"):
            if b not in table["baselines"][t]:
                continue
            tests = [paired_test(c["acc"][t], table["baselines"][t][b]) for c in rows]
            adj = holm([x["p"] for x in tests], alpha)
            fdr = benjamini_hochberg([x["p"] for x in tests], alpha)
            per_task["baselines"][b] = {
                "mean": st.fmean(table["baselines"][t][b]),
                "better": sum(1 for x, p in zip(tests, adj) if p < alpha and x["diff"] > 0),
                "worse": sum(1 for x, p in zip(tests, adj) if p < alpha and x["diff"] < 0),
                "better_fdr": sum(1 for x, p in zip(tests, fdr) if p < alpha and x["diff"] > 0),
                "worse_fdr": sum(1 for x, p in zip(tests, fdr) if p < alpha and x["diff"] < 0),
                "better_raw": sum(1 for x in tests if x["p"] < alpha and x["diff"] > 0)}
        chance = {t: table["chance"][t]}
        scores[t] = [estimate_score({t: dict(zip(seeds, c["acc"][t]))}, base, chance, {t: seeds}).score for c in rows]
        i = max(range(len(rows)), key=lambda k: scores[t][k]) if rows else None
        per_task["best"] = None if i is None else {"formula": rows[i]["canonical"], "score": scores[t][i]}
        out["tasks"][t] = per_task
    out["spearman"] = {f"{a} ~ {b}": float(stats.spearmanr(scores[a], scores[b]).statistic)
                       for i, a in enumerate(tasks) for b in tasks[i + 1:] if len(rows) > 2}
    overall = [estimate_score({t: dict(zip(seeds, c["acc"][t])) for t in tasks}, base, table["chance"],
                              {t: seeds for t in tasks}).score for c in rows]
    order = sorted(range(len(rows)), key=lambda k: -overall[k])
    rank = {rows[k]["id"]: r + 1 for r, k in enumerate(order)}
    from actsearch.catalog import load_catalog

    named = []
    for name, known in load_catalog().items():
        try:
            cid = known.candidate.id
        except Exception:  # noqa: BLE001 - a catalog entry outside the formula language's reach
            continue
        if cid in rank:
            k = order[rank[cid] - 1]
            named.append({"name": name, "id": cid, "rank": rank[cid], "of": len(rows), "score": overall[k]})
    out["catalog"] = sorted(named, key=lambda d: d["rank"])
    out["top"] = [{"formula": rows[k]["canonical"], "score": overall[k]} for k in order[:10]]
    return out
