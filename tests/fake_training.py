"""Fakes for driver tests: a small space whose best candidate is known (RatioSpace, registered as
"ratio-test" by the `ratio_space` fixture of conftest.py), and an executor for staged-evaluation tests:
reports in evaluate_many's format for any plan {task: seeds}, with known true qualities and paired seed
noise, and a ledger of every (candidate, task, seed) it "trains".  On layer tasks it reports the layer
baselines (as a worker does: the task's reference and the executor config's baselines, refusing a
baseline of the other kind); `hashed_quality` gives any formula (an evonorm layer) a fixed quality."""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

from actsearch.search_spaces.base import SearchSpace

BASELINE_QUALITY = {"relu": 0.0, "gelu": 0.01, "silu": 0.02}
LAYER_BASELINE_QUALITY = {"bn-relu": 0.0, "gn-relu": -0.01, "bn-silu": 0.005, "evonorm-b0": 0.01, "evonorm-s0": 0.02}


def hashed_quality(formula: str, task: str = "") -> float:
    """A fixed true quality in [-0.05, 0.05] for any formula (and task: conflicting tasks)."""
    h = hashlib.sha256(f"{formula}|{task}".encode()).digest()
    return (int.from_bytes(h[:4], "big") / 2 ** 32 - 0.5) * 0.1


def baseline_qualities(task: str, names=None) -> dict:
    """name -> true quality of the baselines a worker trains on `task`: its reference and `names` (None:
    the task's own baselines); a ValueError for a baseline of the other kind, as evaluate_many raises."""
    from actsearch.tasks import get_task

    t = get_task(task)
    table = LAYER_BASELINE_QUALITY if t.kind == "layer" else BASELINE_QUALITY
    out = {}
    for b in dict.fromkeys([t.reference, *(t.baselines if names is None else names)]):
        if b not in table:
            raise ValueError(f"fake worker: {b!r} is not a baseline of the {t.kind} task {task}")
        out[b] = table[b]
    return out


def slope(formula: str) -> float:
    """a/b of RatioSpace's x*sigmoid(a*x/b)."""
    a, b = map(int, re.findall(r"sigmoid\((\d+)\*x/(\d+)\)", formula)[0])
    return a / b


def ratio_quality(formula: str) -> float:
    """RatioSpace's x*sigmoid(a*x/b): best at a/b = 1.5 (true quality +0.05), worse away from it."""
    return 0.05 - 0.1 * abs(slope(formula) - 1.5)


def conflicting_task_quality(formula: str, task: str) -> float:
    """Conflicting tasks for RatioSpace: digits-cnn prefers a/b = 1.5, any other task a/b = 0.5."""
    best = 1.5 if task == "digits-cnn" else 0.5
    return 0.05 - 0.1 * abs(slope(formula) - best)


def accuracy(quality: float, key: str, task: str, seed: int, noise: float) -> float:
    """0.6 + quality + a seed effect shared by every member of (task, seed) (what pairing removes) +
    the member's own noise."""
    shared = random.Random(f"{task}|{seed}").gauss(0, 0.03)
    own = random.Random(f"{key}|{task}|{seed}").gauss(0, noise)
    return 0.6 + quality + shared + own


def report(key: str, quality: float, plan: dict, noise: float = 0.01, baselines=None) -> dict:
    """`baselines`: the names the executor's config trains (None: each task's own; the reference always)."""
    tasks = {}
    for task, seeds in plan.items():
        cand = [accuracy(quality, key, task, s, noise) for s in seeds]
        base = {b: {"per_seed": [accuracy(q, b, task, s, noise) for s in seeds]}
                for b, q in baseline_qualities(task, baselines).items()}
        for b in base.values():
            b["mean"] = sum(b["per_seed"]) / len(seeds)
        tasks[task] = {"seeds": list(seeds), "candidate": {"per_seed": cand, "mean": sum(cand) / len(cand)},
                       "baselines": base, "rejected": None, "candidate_wall_s": 0.0, "vs": {}}
    first = next(iter(plan.values()))
    return {"score": None, "seeds": list(first), "tasks": tasks}


class PlanExecutor:
    """capacity batches in flight, answered in submission order; crash_after: raise KeyboardInterrupt
    (the driver dies) when that many batches have been answered.  `task_quality(formula, task)`: a true
    quality per task instead of `quality(formula)`; `rejected(formula, task)`: a rejection text for the
    task (the candidate "diverged" there), or None.  `config`: the search's config (as make_executor gets
    it), whose `baselines` are trained besides each task's reference; None: each task's own baselines.
    `baselines_trained`: every (task, baseline name) reported."""

    def __init__(self, quality=ratio_quality, capacity: int = 2, crash_after=None, ledger=None, noise: float = 0.01,
                 task_quality=None, config=None, rejected=None):
        self.quality, self.capacity, self.crash_after, self.noise = quality, capacity, crash_after, noise
        self.task_quality, self.config, self.rejected = task_quality, config, rejected
        self.queue: list = []
        self.answered = 0
        self.ledger = ledger if ledger is not None else Counter()  # (cid, task, seed) -> times trained
        self.plans: list = []
        self.baselines_trained: set = set()

    def submit(self, items, plan=None, timeout_s=None):
        assert plan, "staged evaluation always sends a plan"
        self.queue.append((items, plan))
        self.plans.append(plan)

    def next_batch(self):
        """The oldest batch in flight, (items, plan); the driver dies here once crash_after are answered."""
        if self.crash_after is not None and self.answered >= self.crash_after:
            raise KeyboardInterrupt("simulated driver death")
        items, plan = self.queue.pop(0)
        self.answered += 1
        return items, plan

    def wait(self):
        items, plan = self.next_batch()
        names = self.config.baselines if self.config is not None else None
        out = []
        for cid, formula, params in items:
            tasks = {}
            for task, seeds in plan.items():
                for s in seeds:
                    self.ledger[(cid, task, s)] += 1
                q = self.task_quality(formula, task) if self.task_quality else self.quality(formula)
                tasks.update(report(cid, q, {task: seeds}, self.noise, names)["tasks"])
                if self.rejected is not None:
                    tasks[task]["rejected"] = self.rejected(formula, task)
                self.baselines_trained |= {(task, b) for b in tasks[task]["baselines"]}
            out.append((cid, {"score": None, "seeds": list(next(iter(plan.values()))), "tasks": tasks}, "fake", 0.0))
        return [out]

    def shutdown(self):
        pass


class RatioSpace(SearchSpace):
    """x*sigmoid(((a+1)/(b+1))*x): different genomes with equal ratios are the same candidate."""

    name = "ratio-test"

    def sample(self, rng):
        return [rng.randrange(6), rng.randrange(6)]

    def formula(self, g):
        return f"x*sigmoid({g[0] + 1}*x/{g[1] + 1})"

    def enumerate(self):
        return ([a, b] for a in range(6) for b in range(6))

    def size(self):
        return 36

    def mutate(self, g, rng):
        g = list(g)
        i = rng.randrange(2)
        g[i] = min(5, max(0, g[i] + rng.choice([-1, 1])))
        return g

    def crossover(self, a, b, rng):
        return [a[0], b[1]], [b[0], a[1]]

    def suggest(self, trial):
        return [trial.suggest_int("a", 0, 5), trial.suggest_int("b", 0, 5)]


def ratio_table(tmp_path, tasks=("digits-cnn", "mnist1d-mlp")):
    """Every candidate of RatioSpace (register it first: the `ratio_space` fixture) on `tasks` x 5 seeds of
    fake training, as a table: (table path, the run directory it was built in)."""
    from actsearch.search import SearchConfig, SearchDriver
    from actsearch.store import ResultStore
    from actsearch.tabular import table_from_store, write_table

    run = tmp_path / "bench"
    cfg = SearchConfig(space="ratio-test", strategy="exhaustive", tasks=list(tasks), budget=100, seeds=5, batch=4,
                       executor="local", rungs="flat")
    SearchDriver(cfg, run, executor=PlanExecutor()).run()
    with ResultStore(run, mode="read") as store:
        table = table_from_store(store, {"command": "test"})
    return write_table(table, tmp_path / "table.json.gz"), run


def wait_for_results(db, n: int, proc, timeout_s: float = 240.0) -> int:
    """Poll a run's store until it has `n` results or `proc` ends (a kill -9 test waits for its moment);
    returns the count seen."""
    import sqlite3
    import time

    seen, deadline = 0, time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None and seen < n:
        if db.exists():
            try:
                with sqlite3.connect(str(db), timeout=5) as con:
                    seen = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0
        time.sleep(0.2)
    return seen
