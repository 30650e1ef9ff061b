"""The search driver: strategy ask/tell, screening, dedup, an executor, and the store as single writer.

    strategy.ask() -> genome -> space.candidate (formula core) -> screen -> dedup by canonical id
        -> batch of candidates -> executor (Ray actors or in-process) -> evaluate_many (population-batched)
        -> store.record_result -> strategy.tell(genome, score)

Every ask and tell is logged in order in the store's `events` table.  Resuming replays that log into a
fresh strategy built with the same seed (asserting that each ask reproduces the logged genome), then
re-submits the genomes that were asked but never told (in flight when the driver died).  A result that
was stored but not yet told is told from the store, so nothing is evaluated twice and nothing is lost;
the run ends with exactly `budget` distinct evaluated candidates.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from actsearch.formula import Candidate, FormulaError
from actsearch.store import ResultStore, StoreError

MAX_STALE_ASKS = 5000  # consecutive asks without a new candidate to evaluate

# config keys that must match to resume a run (budget, workers, address may change between sessions)
RESUME_KEYS = ("space", "space_options", "strategy", "strategy_options", "tasks", "seeds", "steps", "seed",
               "objectives", "batch")


@dataclass
class SearchConfig:
    space: str = "swish"
    strategy: str = "evolution"
    tasks: list = field(default_factory=lambda: ["mnist1d-mlp"])
    budget: int = 200
    seeds: int = 2
    steps: Optional[int] = None
    seed: int = 0
    batch: int = 8                 # candidates per population (one worker call)
    workers: int = 0               # 0: one single-threaded worker per CPU of the machine / cluster
    address: Optional[str] = None  # Ray cluster address; None: embedded local Ray
    objectives: list = field(default_factory=lambda: ["score"])  # or ["score", "cost"]
    timeout_s: float = 300.0       # per candidate (a batch of n gets n times it)
    space_options: dict = field(default_factory=dict)
    strategy_options: dict = field(default_factory=dict)
    baselines: list = field(default_factory=lambda: ["relu"])
    executor: str = "ray"          # "ray" or "local" (in-process, for tests and debugging)

    def validate(self) -> None:
        from actsearch.search_spaces import get_space
        from actsearch.strategies import STRATEGIES
        from actsearch.tasks import resolve_tasks

        if self.budget <= 0:
            raise ValueError(f"--budget must be positive, got {self.budget}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {self.batch}")
        get_space(self.space, **self.space_options)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
        self.tasks = [t.name for t in resolve_tasks(self.tasks)]
        if self.address:
            check_address(self.address)
        bad = [o for o in self.objectives if o not in ("score", "cost")]
        if bad or not self.objectives or self.objectives[0] != "score":
            raise ValueError(f"--objectives must be 'score' or 'score,cost', got {','.join(self.objectives)}")


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast, before anything is created, when a Ray cluster address is malformed or unreachable
    (ray.init would retry for minutes)."""
    import socket

    addr = address.split("://", 1)[-1]
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one there with "
                         f"`ray start --head --port {port}` or fix --address") from None


def candidate_cost(candidate: Candidate) -> float:
    """Static kernel cost relative to ReLU: the registry's per-primitive weighted costs summed over the
    expression tree (other nodes, + * ** ..., cost 1 per operand joined), divided by ReLU's.  The
    fallback when no measured cost (kernels.bench.kernel_cost, taken by the worker) came back, e.g.
    for a timed-out candidate."""
    import sympy

    from actsearch.primitives import PRIMITIVES

    costs = {p.name: p.cost.weighted for p in PRIMITIVES.values()}
    total = 0.0
    for node in sympy.preorder_traversal(candidate.expr):
        if node.is_Atom:
            continue
        name = {"Max": "max", "Min": "min"}.get(type(node).__name__, type(node).__name__.lower())
        total += costs.get(name, max(1, len(node.args) - 1))
    return max(total, 1.0) / max(costs.get("relu", 1.0), 1.0)


def describe_candidate(c: Candidate, genome, screening) -> dict:
    from actsearch.catalog import nearest_known

    nearest = nearest_known(c, k=1) if screening.passed else []
    return {"id": c.id, "formula": c.source or c.formula, "canonical": c.formula, "params": dict(c.params),
            "genome": genome, "fingerprint": str(c.fingerprint)[:64],
            "screening_passed": screening.passed, "screening_reason": "; ".join(screening.reasons) or None,
            "nearest_name": nearest[0].name if nearest else None,
            "nearest_distance": float(nearest[0].distance) if nearest else None}


class SearchDriver:
    def __init__(self, config: SearchConfig, run_dir: os.PathLike, resume: bool = False,
                 progress: Optional[Callable[[dict], None]] = None, executor=None):
        from actsearch import __version__
        from actsearch.evaluation import versions
        from actsearch.search_spaces import get_space
        from actsearch.strategies import make_strategy

        config.validate()
        self.config, self.progress = config, progress or (lambda s: None)
        self.run_dir = str(run_dir)
        exists = os.path.exists(os.path.join(self.run_dir, "results.db"))
        if exists and not resume:
            raise StoreError(f"{self.run_dir} already holds a run; pass --resume to continue it, or choose another "
                             f"--run-dir (nothing was changed)")
        if resume and not exists:
            raise StoreError(f"nothing to resume: {self.run_dir}/results.db does not exist")
        self.store = ResultStore(self.run_dir)
        stored = self.store.config()
        if stored is None:
            self.store.set_config(asdict(config), {**versions(), "actsearch": __version__})
        else:
            diff = [k for k in RESUME_KEYS if stored.get(k) != asdict(config).get(k)]
            if diff:
                raise StoreError(f"{self.run_dir} was started with different settings ({', '.join(f'{k}={stored.get(k)!r}' for k in diff)}); "
                                 f"resume with the same settings (only --budget, --workers and --address may change)")
        self.space = get_space(config.space, **config.space_options)
        self.strategy = make_strategy(config.strategy, self.space, seed=config.seed,
                                      n_objectives=len(config.objectives), **config.strategy_options)
        self.executor = executor
        self.pending: list = []  # genomes asked but not told, to (re)submit
        self._replay()

    # -- resume
    def _replay(self) -> None:
        open_asks: list = []
        for kind, genome, value in self.store.events():
            if kind == "ask":
                g = self.strategy.ask()
                if json.dumps(g, sort_keys=True) != json.dumps(genome, sort_keys=True):
                    raise StoreError(f"resuming {self.run_dir}: the strategy proposed {g!r} where the log has "
                                     f"{genome!r} - the run was made with another version of the space or strategy; "
                                     f"resume it with that version or start a new --run-dir")
                open_asks.append(genome)
            else:
                self.strategy.tell(genome, tuple(value) if isinstance(value, list) else value)
                key = json.dumps(genome, sort_keys=True)
                for i, g in enumerate(open_asks):
                    if json.dumps(g, sort_keys=True) == key:
                        del open_asks[i]
                        break
        self.pending = open_asks

    # -- one candidate's way to the executor
    def _value(self, result: Optional[dict]):
        if result is None or result["score"] is None:
            return None
        if len(self.config.objectives) == 1:
            return float(result["score"])
        return (float(result["score"]), float(result["cost"] if result["cost"] is not None else 0.0))

    def _prepare(self, genome) -> Optional[tuple]:
        """Parse, screen, dedup.  Returns (candidate, genome) to evaluate, or None after telling the strategy."""
        from actsearch.screening import screen_candidate

        try:
            c = self.space.candidate(genome)
        except FormulaError as exc:
            self.strategy.tell(genome, None)
            self.store.log_tell(genome, None, note=f"invalid formula: {exc}")
            return None
        if c.id in self.inflight_ids:
            return ("wait", c, genome)
        done = self.store.result(c.id)
        if done is not None:  # duplicate of an evaluated candidate: its stored result, no training
            value = self._value(done)
            self.strategy.tell(genome, value)
            self.store.log_tell(genome, value, c.id, note="duplicate")
            return None
        cand = self.store.candidate(c.id)
        if cand is None:
            cand = describe_candidate(c, genome, screen_candidate(c))
            self.store.record_candidate(cand)
        if not cand["screening_passed"]:
            self.strategy.tell(genome, None)
            self.store.log_tell(genome, None, c.id, note=f"screening: {cand['screening_reason']}")
            return None
        return ("eval", c, genome)

    def run(self) -> dict:
        from actsearch.executor import make_executor

        cfg = self.config
        t_start = time.time()
        ex = self.executor or make_executor(cfg, self.run_dir)
        self.inflight_ids: dict[str, list] = {}   # candidate id -> genomes waiting for it
        self._stale = 0
        inflight_batches = 0
        queue = list(self.pending)
        self.pending = []
        exhausted = False
        started = self.store.n_results()
        try:
            while True:
                done = self.store.n_results()
                if done >= cfg.budget and not self.inflight_ids:
                    break
                # fill the executor: batches of up to cfg.batch new candidates, within the budget
                while (inflight_batches < ex.capacity and not exhausted
                       and done + len(self.inflight_ids) < cfg.budget):
                    batch: list = []
                    while len(batch) < cfg.batch and done + len(self.inflight_ids) + len(batch) < cfg.budget:
                        if self._stale > MAX_STALE_ASKS:  # the strategy only repeats itself: a finished space
                            exhausted = True
                            break
                        if queue:
                            genome = queue.pop(0)
                        else:
                            genome = self.strategy.ask()
                            if genome is None:
                                exhausted = True
                                break
                            self.store.log_ask(genome)
                        prep = self._prepare(genome)
                        if prep is None:
                            self._stale += 1
                            continue
                        kind, c, g = prep
                        if kind == "wait" or any(c.id == b.id for b, _ in batch):
                            self.inflight_ids.setdefault(c.id, []).append(g)
                            self._stale += 1
                            continue
                        self._stale = 0
                        batch.append((c, g))
                    if not batch:
                        break
                    for c, g in batch:
                        self.inflight_ids.setdefault(c.id, []).append(g)
                    ex.submit([(c.id, c.source or c.formula, dict(c.params)) for c, _ in batch])
                    inflight_batches += 1
                if inflight_batches == 0:
                    if exhausted or done >= cfg.budget:
                        # only waiters on nothing can remain here
                        for cid in list(self.inflight_ids):
                            self._tell_waiters(cid, self.store.result(cid))
                        break
                    continue
                for outcome in ex.wait():
                    inflight_batches -= 1
                    for cid, report, worker, wall in outcome:
                        self._tell_waiters(cid, self._record(cid, report, worker, wall))
                    self.progress(self.status(t_start, started))
        finally:
            if self.executor is None:
                ex.shutdown()
        summary = self.status(t_start, started)
        summary["exhausted"] = exhausted
        if len(cfg.objectives) > 1:
            summary["pareto"] = self.pareto()
        return summary

    def pareto(self) -> list[dict]:
        """The Pareto front of (score up, cost down) over the evaluated candidates."""
        from actsearch.strategies import pareto_front

        rows = [r for r in self.store.ranked() if r["score"] is not None and r["cost"] is not None]
        front = pareto_front([(r["score"], r["cost"]) for r in rows])
        return sorted(({"id": rows[i]["id"], "formula": rows[i]["formula"], "score": rows[i]["score"],
                        "cost": rows[i]["cost"]} for i in front), key=lambda d: d["cost"])

    def _record(self, cid: str, report: dict, worker: str, wall: float) -> dict:
        cfg = self.config
        score = report.get("score")
        if score is not None and score != score:  # NaN
            score = None
        cand = self.store.candidate(cid)
        cost = None
        if "cost" in cfg.objectives:  # measured by the worker; the static estimate when it could not be
            cost = report.get("cost")
            if cost is None:
                cost = candidate_cost(self.space.candidate(cand["genome"]))
        self.store.record_result(cid, score, report, cost=cost, wall_s=wall, worker=worker)
        return self.store.result(cid)

    def _tell_waiters(self, cid: str, result: Optional[dict]) -> None:
        value = self._value(result)
        for g in self.inflight_ids.pop(cid, []):
            self.strategy.tell(g, value)
            self.store.log_tell(g, value, cid)

    def status(self, t_start: float, started: int) -> dict:
        ranked = self.store.ranked(1)
        n = self.store.n_results()
        el = time.time() - t_start
        best = ranked[0] if ranked else None  # ranked puts rejected candidates last
        return {"run_dir": self.run_dir, "evaluated": n, "budget": self.config.budget,
                "rejected": self.store.n_rejected(), "screened_out": self.store.n_screened_out(),
                "elapsed_s": el, "rate_per_min": 60 * (n - started) / el if el > 0 else 0.0,
                "best": ({"id": best["id"], "formula": best["formula"], "score": best["score"]} if best else None)}
