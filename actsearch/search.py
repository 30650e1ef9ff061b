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
import math
import numbers
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
        # numbers first, before the imports below (torch, ~2 s): a negative worker count made the driver
        # spin forever (capacity < 0), a timeout <= 0 recorded every candidate as timed out, an empty task
        # list silently ran the default task
        for name, value, low in (("--budget", self.budget, 1), ("--seeds", self.seeds, 1),
                                 ("--batch", self.batch, 1), ("--workers", self.workers, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral)
                                       or self.steps < 1):
            raise ValueError(f"--steps must be an integer >= 1, got {self.steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"--seed must be an integer, got {self.seed!r}")
        if (isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, numbers.Real)
                or not math.isfinite(self.timeout_s) or self.timeout_s <= 0):
            raise ValueError(f"--timeout must be a finite number of seconds > 0, got {self.timeout_s!r}")
        if self.executor not in ("ray", "local"):
            raise ValueError(f"--executor must be 'ray' or 'local', got {self.executor!r}")
        if not self.tasks or not all(isinstance(t, str) and t.strip() for t in self.tasks):
            raise ValueError("--tasks is empty; name at least one task (see `actsearch tasks`) or 'all'")
        from actsearch.search_spaces import get_space
        from actsearch.strategies import STRATEGIES
        from actsearch.tasks import resolve_tasks

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


def rejection_code(report: dict) -> Optional[str]:
    """The reason code of an evaluation report: the worker's own rejection when it sent one, `diverged`
    when training stopped a seed (non-finite loss, chance accuracy), else None (not rejected)."""
    from actsearch.rejection import RejectionReason, code_of_report

    code = code_of_report(report)
    if code is None and report.get("rejected"):
        code = RejectionReason.EVALUATION_ERROR
    if code is None and any(t.get("rejected") for t in report.get("tasks", {}).values()):
        code = RejectionReason.DIVERGED
    return None if code is None else code.value


def _safe_id(c: Optional[Candidate], genome) -> str:
    """The candidate's id, or, when it cannot be computed, a stable `err_` id from its formula text
    (or its genome when it has none)."""
    import hashlib

    if c is not None:
        try:
            return c.id
        except Exception:  # noqa: BLE001 - the reason is recorded by the caller
            pass
    key = _safe_formula(c, genome)
    return "err_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _safe_formula(c: Optional[Candidate], genome) -> str:
    if c is not None:
        try:
            return c.source or c.formula
        except Exception:  # noqa: BLE001
            pass
    return "genome " + json.dumps(genome, sort_keys=True, default=str)


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
        config.validate()  # first: bad numbers are refused before the imports below pull in torch (~2 s)
        from actsearch import __version__
        from actsearch.evaluation import versions
        from actsearch.search_spaces import get_space
        from actsearch.strategies import make_strategy

        self.config, self.progress = config, progress or (lambda s: None)
        self.run_dir = str(run_dir)
        # the run's writer lock first (a second writer is refused), then a store checked before any write
        # ("create" refuses an existing results.db, "write" a missing one); released by close(), at the end
        # of run(), or by the kernel when this process dies
        self.store = ResultStore(self.run_dir, mode="write" if resume else "create")
        try:
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
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the store and release the run directory's writer lock (run() does this when it ends)."""
        self.store.close()

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
        """Build, fingerprint, screen and dedup one genome.  Returns ("eval" | "wait", candidate, genome), or
        None after telling the strategy.  This is the candidate's boundary: any exception raised on its
        way here is recorded as its rejection (a reason code and the error) and the search goes on."""
        from actsearch.rejection import Rejection
        from actsearch.screening import screen_candidate

        stage, c = "prepare", None
        try:
            c = self.space.candidate(genome)
            stage = "fingerprint"
            cid = c.id
            if cid in self.inflight_ids:
                return ("wait", c, genome)
            done = self.store.result(cid)
            if done is not None:  # duplicate of an evaluated candidate: its stored result, no training
                value = self._value(done)
                self.strategy.tell(genome, value)
                self.store.log_tell(genome, value, cid, note="duplicate")
                return None
            cand = self.store.candidate(cid)
            if cand is None:
                stage = "screen"
                screening = screen_candidate(c)
                cand = describe_candidate(c, genome, screening)
                if not screening.passed:
                    cand["reason_code"] = "screened_out"
                self.store.record_candidate(cand)
        except StoreError:  # the run's own store, not the candidate, is at fault: stop
            raise
        except Exception as exc:  # noqa: BLE001 - the candidate's boundary: recorded, and the search goes on
            self._reject_before_training(genome, c, Rejection.from_exception(exc, stage))
            return None
        if not cand["screening_passed"]:
            self.strategy.tell(genome, None)
            self.store.log_tell(genome, None, cid, note=f"{cand.get('reason_code') or 'screened_out'}: "
                                                        f"{cand['screening_reason']}")
            return None
        return ("eval", c, genome)

    def _reject_before_training(self, genome, c: Optional[Candidate], rejection) -> None:
        """Record a candidate that failed before it could be trained: a candidates row (under its id, or
        an `err_` id from its formula or genome when no id can be computed) and a tell of None."""
        cid = _safe_id(c, genome)
        formula = _safe_formula(c, genome)
        if self.store.candidate(cid) is None:
            self.store.record_candidate({
                "id": cid, "formula": formula, "canonical": formula, "params": dict(c.params) if c else {},
                "genome": genome, "fingerprint": None, "screening_passed": False,
                "screening_reason": f"{rejection.stage}: {rejection.error_type or ''}: {rejection.detail}",
                "reason_code": rejection.code.value, "nearest_name": None, "nearest_distance": None})
        self.strategy.tell(genome, None)
        self.store.log_tell(genome, None, cid, note=str(rejection))

    def run(self) -> dict:
        """Search until the budget is spent; the store is closed and the run unlocked when it returns or raises."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
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
        cost = None
        if "cost" in cfg.objectives:  # measured by the worker; the static estimate when it could not be
            cost = report.get("cost")
            if cost is None:
                try:
                    cost = candidate_cost(self.space.candidate(self.store.candidate(cid)["genome"]))
                except Exception:  # noqa: BLE001 - no cost is better than a crashed search
                    cost = None
        self.store.record_result(cid, score, report, cost=cost, wall_s=wall, worker=worker,
                                 reason_code=rejection_code(report))
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
                "rejections": self.store.rejection_counts(),
                "elapsed_s": el, "rate_per_min": 60 * (n - started) / el if el > 0 else 0.0,
                "best": ({"id": best["id"], "formula": best["formula"], "score": best["score"]} if best else None)}
