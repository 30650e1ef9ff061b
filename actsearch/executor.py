"""Executors: where populations of candidates are evaluated.  The driver submits batches and waits for
outcomes; it never learns whether they ran in-process or on a Ray cluster.

  Executor       the interface (abstract base class): `capacity`, submit(items, plan, timeout_s), wait(),
                 shutdown(); docs/interfaces.md
  LocalExecutor  in the driver's process, one batch at a time (tests, debugging, `--executor local`)
  TableExecutor  answers from a tabular benchmark (actsearch.tabular, `--executor table:PATH`)
  RayExecutor    long-lived Ray actors (EvaluationWorker), `workers` of them (default one per CPU, one thread
                 each), each keeping the task data,
                 kernels and Inductor's compile cache warm; embedded local Ray by default, or an existing
                 cluster with `address`.  A batch whose worker dies (process or node) is split in halves
                 and resubmitted to fresh workers; a single candidate whose worker dies `max_retries`
                 more times is recorded as rejected ("worker_lost"), so a candidate that crashes its
                 process never stops the search; a batch running past `timeout_s` is recorded as
                 rejected ("timeout") and its worker replaced (`timeout_s` is per candidate: a batch
                 of n candidates gets n times it).  Ray's own settings (authentication, TLS)
                 are left as the cluster has them.

What travels: a batch is a list of `EvaluationItem`s (candidate id, formula text, parameters); its
outcome, one `EvaluationResult` per item (candidate id, report, worker, wall seconds).  Both are typed
named tuples, so code that unpacks the plain tuples of earlier versions (`for cid, report, worker, wall in
outcome`) reads them unchanged.  The report is evaluate_many's dict, stored as JSON as it is.

Executors measure nothing but training: the `cost` objective's kernel cost is the driver's static
estimate (actsearch.search.candidate_cost); measured kernel timings are `actsearch bench kernels`'s
(actsearch.kernels.bench), off the search path.
"""
from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Sequence

if TYPE_CHECKING:
    from actsearch.rejection import Rejection, RejectionReason


class EvaluationItem(NamedTuple):
    """One candidate to evaluate: what the driver sends (a plain (id, formula, params) tuple is one too)."""

    candidate_id: str
    formula: str
    params: dict


class EvaluationResult(NamedTuple):
    """One candidate's outcome: what an executor's wait() returns, one per submitted item.  `report` is
    evaluate_many's report (or a rejected one, Rejection.to_report()), stored as JSON as it is."""

    candidate_id: str
    report: dict
    worker: str
    wall_s: float

    @property
    def score(self) -> Optional[float]:
        return self.report.get("score")

    @property
    def rejection(self) -> "Optional[Rejection]":
        """The worker's Rejection when it sent one (the report's `rejection`), else None."""
        from actsearch.rejection import Rejection

        d = self.report.get("rejection")
        return Rejection.from_dict(d) if isinstance(d, dict) and d.get("code") is not None else None

    @property
    def reason_code(self) -> "Optional[RejectionReason]":
        """The reason code the report carries (its rejection's, else the code leading its `rejected`)."""
        from actsearch.rejection import code_of_report

        return code_of_report(self.report)

    def to_dict(self) -> dict:
        return {"candidate_id": self.candidate_id, "report": self.report, "worker": self.worker,
                "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: dict) -> "EvaluationResult":
        return cls(d["candidate_id"], d["report"], d["worker"], float(d["wall_s"]))

    @classmethod
    def rejected(cls, candidate_id: str, rejection: "Rejection", worker: str, wall_s: float) -> "EvaluationResult":
        return cls(candidate_id, rejection.to_report(), worker, wall_s)


def as_items(items: Sequence) -> list[EvaluationItem]:
    """`items` as EvaluationItems (plain 3-tuples are accepted, as callers of earlier versions send)."""
    return [i if isinstance(i, EvaluationItem) else EvaluationItem(*i) for i in items]


class Executor(ABC):
    """Where batches of candidates are evaluated (docs/interfaces.md).

    `capacity`: how many batches the driver keeps in flight at once.  submit() starts one batch; wait()
    blocks until at least one submitted batch has finished (an executor with nothing in flight may
    return []) and returns the finished batches' outcomes, each a list of EvaluationResults, one per
    item of the batch, in any order within the batch.  shutdown() releases what the executor holds."""

    capacity: int = 1

    @abstractmethod
    def submit(self, items: list, plan: Optional[dict] = None, timeout_s: Optional[float] = None) -> None:
        """Evaluate `items` (EvaluationItems) on `plan` ({task: seeds}; default: the config's tasks with
        seeds 0..seeds-1).  `timeout_s`: per candidate, where the executor enforces one."""

    @abstractmethod
    def wait(self) -> list[list[EvaluationResult]]:
        """The outcomes of the batches that finished (each whole, one entry per item)."""

    def shutdown(self) -> None:
        """Release workers and clusters; nothing to release by default."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def evaluate_items(items: list, tasks: list, seeds, steps: Optional[int], baselines: list,
                   cache_dir: Optional[str], worker: str) -> list[EvaluationResult]:
    """Evaluate a batch of candidates as one population per task; one EvaluationResult per item.
    `seeds`: a count, or a plan {task: seeds} (staged evaluation: the pairs a rung adds; then `tasks` is
    ignored).

    A batch that raises is evaluated again one candidate at a time, so the candidate that broke it is
    found and recorded as rejected (its report's `rejection`: reason code, stage, error) and the others
    are scored as usual."""
    from actsearch.evaluation import BaselineCache, evaluate_many
    from actsearch.formula import parse_formula

    items = as_items(items)
    t0 = time.perf_counter()
    try:
        cands = [parse_formula(it.formula, params=it.params or None) for it in items]
        reports = evaluate_many(cands, None if isinstance(seeds, dict) else tasks, seeds=seeds, baselines=baselines, steps=steps, screen=False,
                                cache=BaselineCache(cache_dir) if cache_dir else None)
    except Exception as exc:  # noqa: BLE001 - a broken candidate is recorded, and the search goes on
        if len(items) > 1:  # find the culprit: evaluate one by one
            return [r for item in items
                    for r in evaluate_items([item], tasks, seeds, steps, baselines, cache_dir, worker)]
        rejection = locate_failure(items[0], exc)
        return [EvaluationResult.rejected(items[0].candidate_id, rejection, worker, time.perf_counter() - t0)]
    wall = (time.perf_counter() - t0) / max(1, len(items))
    return [EvaluationResult(it.candidate_id, rep, worker, wall) for it, rep in zip(items, reports)]


def locate_failure(item, exc: BaseException) -> "Rejection":
    """The Rejection for one candidate (an EvaluationItem) whose evaluation raised `exc`: the stage is
    found by redoing the cheap stages alone (parse, kernel source generation); what is left is
    compilation or training."""
    from actsearch.formula import parse_formula
    from actsearch.rejection import Rejection

    _, formula, params = item
    try:
        candidate = parse_formula(formula, params=params or None)
    except Exception as first:  # noqa: BLE001
        return Rejection.from_exception(first, "prepare")
    try:
        from actsearch.kernels.fused import get_kernel

        get_kernel(candidate)
    except Exception as first:  # noqa: BLE001
        return Rejection.from_exception(first, "codegen")
    return Rejection.from_exception(exc, "compile" if _is_compile_error(exc) else "evaluate")


def _is_compile_error(exc: BaseException) -> bool:
    """Raised by a compiler (Inductor, Dynamo, Triton, the C++ toolchain) rather than by training."""
    for e in (exc, exc.__cause__, exc.__context__):
        if e is None:
            continue
        mod = type(e).__module__ or ""
        if mod.startswith(("torch._inductor", "torch._dynamo", "triton", "torch.fx")) or "Compile" in type(e).__name__:
            return True
    return False


def timeout_outcome(items: list, seconds: float, worker: str) -> list[EvaluationResult]:
    from actsearch.rejection import Rejection, RejectionReason

    rejection = Rejection(RejectionReason.TIMEOUT, "evaluate", f"no result within {seconds:.0f} s")
    return [EvaluationResult.rejected(it.candidate_id, rejection, worker, seconds) for it in as_items(items)]


def worker_lost_outcome(items: list, deaths: int, error: str) -> list[EvaluationResult]:
    from actsearch.rejection import Rejection, RejectionReason

    rejection = Rejection(RejectionReason.WORKER_LOST, "evaluate",
                          f"its worker died {deaths} times while evaluating it alone ({error})")
    return [EvaluationResult.rejected(it.candidate_id, rejection, "lost", 0.0) for it in as_items(items)]


def _setup_process(cache_dir: Optional[str], threads: int) -> None:
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache_dir, "inductor"))
        os.environ.setdefault("ACTSEARCH_CACHE_DIR", cache_dir)
    import torch

    torch.set_num_threads(max(1, threads))
    # A search worker compiles one population kernel per batch for as long as the run lasts; Dynamo's
    # default of 256 compiled graphs per process would turn later batches uncompiled (slow, correct).
    from actsearch.kernels.torch_compat import raise_recompile_limit

    raise_recompile_limit(100_000)  # a guarded private access (kernels/torch_compat.py)


class LocalExecutor(Executor):
    capacity = 1

    def __init__(self, config, cache_dir: Optional[str] = None, threads: Optional[int] = None):
        self.config, self.cache_dir = config, cache_dir
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.done: deque = deque()
        _setup_process(cache_dir, self.threads)

    def submit(self, items: list, plan: Optional[dict] = None, timeout_s: Optional[float] = None) -> None:
        """Evaluate `items` now on `plan` ({task: seeds}; default: the search tasks, seeds 0..seeds-1)."""
        c = self.config
        self.done.append(evaluate_items(items, c.tasks, plan or c.seeds, c.steps, c.baselines, self.cache_dir,
                                        f"local:{socket.gethostname()}:{os.getpid()}"))

    def wait(self) -> list[list[EvaluationResult]]:
        out = list(self.done)
        self.done.clear()
        return out


class EvaluationWorker:
    """A Ray actor: sets up its process once (threads, caches, task data), then evaluates batches."""

    def __init__(self, tasks: list, seeds: int, steps: Optional[int], baselines: list, cache_dir: Optional[str],
                 threads: int):
        _setup_process(cache_dir, threads)
        from actsearch.tasks import resolve_tasks

        for t in resolve_tasks(tasks):
            t.data()  # generated once per worker, kept warm
        self.args = (tasks, seeds, steps, baselines, cache_dir)
        import ray

        ctx = ray.get_runtime_context()
        self.name = f"{ctx.get_node_id()[:8]}:{os.getpid()}"

    def evaluate(self, items: list, plan: Optional[dict] = None) -> list[EvaluationResult]:
        tasks, seeds, steps, baselines, cache_dir = self.args
        return evaluate_items(items, tasks, plan or seeds, steps, baselines, cache_dir, self.name)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Batch:
    """A submitted batch: it may run as several parts (halves after a worker died); its outcome goes
    back once, whole, when every part has come back."""

    parts: int                      # parts still running or waiting
    plan: Optional[dict]
    timeout_s: float                # per candidate
    results: list = field(default_factory=list)


@dataclass
class _Part:
    """A part of a batch waiting for a worker, or (with its worker and start time) running on one."""

    items: list
    tries: int
    batch: int
    worker: Any = None
    started: float = 0.0


class RayExecutor(Executor):
    def __init__(self, config, cache_dir: Optional[str] = None, max_retries: int = 3):
        from actsearch.ray_local import _single_machine_switch, start_embedded_ray

        if not config.address:  # the embedded Ray binds to loopback: set before Ray is imported
            _single_machine_switch()
        import ray

        self.ray = ray
        self.config, self.cache_dir, self.max_retries = config, cache_dir, max_retries
        self.owns_ray = False
        self.watchdog = None
        if not ray.is_initialized():
            try:
                if config.address:
                    ray.init(address=config.address, log_to_driver=False)
                else:
                    self.watchdog = start_embedded_ray(include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {config.address}" if config.address else "an embedded Ray"
                raise RuntimeError(f"cannot start or reach {where}: {str(exc).splitlines()[0] if str(exc) else exc} "
                                   f"(is `ray start --head` running there, and is the address HOST:PORT?)") from None
            self.owns_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # default: one single-threaded worker per CPU.  Measured (bench_search.py, steady state):
        # 2 workers x 1 thread evaluate 1.7x as many candidates per minute as 1 worker x 2 threads;
        # the proxy models are too small to use two threads well.
        self.n_workers = config.workers or max(1, cpus)
        self.threads = max(1, cpus // self.n_workers)
        self.capacity = self.n_workers
        self.remote_cls = ray.remote(num_cpus=self.threads, max_restarts=0)(EvaluationWorker)
        self.idle = [self._new_worker() for _ in range(self.n_workers)]
        self.alive, self.deaths = self.n_workers, 0
        self.backlog: list[_Part] = []       # parts waiting for a free worker
        self.running: dict = {}              # ref -> _Part
        self.batches: dict[int, _Batch] = {}  # batch number -> its state
        self._next_batch = 0

    def _new_worker(self):
        c = self.config
        return self.remote_cls.remote(c.tasks, c.seeds, c.steps, c.baselines, self.cache_dir, self.threads)

    def submit(self, items: list, plan: Optional[dict] = None, timeout_s: Optional[float] = None) -> None:
        """Evaluate one batch on `plan` ({task: seeds}; default: the search tasks, seeds 0..seeds-1); its
        outcome (one entry per candidate) comes back from wait() whole.  `timeout_s`: per candidate
        (default: the config's), for plans that train more than rung 0."""
        self._next_batch += 1
        self.batches[self._next_batch] = _Batch(1, plan, timeout_s or self.config.timeout_s)
        self._start(_Part(as_items(items), 0, self._next_batch))

    def _start(self, part: _Part) -> None:
        if self.idle:
            worker = self.idle.pop()
        elif self._can_add_worker():
            worker = self._new_worker()
            self.alive += 1
        else:  # every worker is busy (a dead one's batch waits for the next free worker)
            self.backlog.append(part)
            return
        part.worker, part.started = worker, time.time()
        self.running[worker.evaluate.remote(part.items, self.batches[part.batch].plan)] = part

    def _part_done(self, batch: int, outcome: list, out: list) -> None:
        entry = self.batches[batch]
        entry.parts -= 1
        entry.results.extend(outcome)
        if entry.parts == 0:
            out.append(self.batches.pop(batch).results)

    def _can_add_worker(self) -> bool:
        """Below the worker count and room for one more on the cluster (a worker that cannot be placed
        would wait forever), or no worker left at all (then wait for the cluster to grow)."""
        if self.alive == 0:
            return True
        return (self.alive < self.n_workers
                and self.ray.available_resources().get("CPU", 0) >= self.threads)

    def _replace_dead(self) -> None:
        if self._can_add_worker():
            self.alive += 1
            self.idle.append(self._new_worker())

    def wait(self) -> list[list[EvaluationResult]]:
        """Block until at least one batch finishes; returns finished batches' outcomes."""
        ray = self.ray
        while True:
            while self.backlog and (self.idle or self._can_add_worker()):
                self._start(self.backlog.pop(0))
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=1.0)
            out: list = []
            for ref in ready:
                part = self.running.pop(ref)
                items, tries, batch = part.items, part.tries, part.batch
                try:
                    result = [EvaluationResult(*r) for r in ray.get(ref)]
                    self.idle.append(part.worker)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as exc:
                    # the worker or its node died: the same candidates go to another worker; nothing is
                    # recorded for them until a result arrives, so nothing is lost or counted twice.
                    # A batch is split in halves first: a candidate that crashes its process (e.g. in a
                    # kernel) is isolated in O(log n) retries and recorded, never stopping the search.
                    self.alive -= 1
                    self.deaths += 1
                    if len(items) > 1:
                        half = len(items) // 2
                        self.batches[batch].parts += 1  # two parts replace this one
                        self.backlog[:0] = [_Part(items[:half], tries, batch), _Part(items[half:], tries, batch)]
                    elif tries >= self.max_retries:
                        self._part_done(batch, worker_lost_outcome(items, tries + 1, type(exc).__name__), out)
                    else:
                        self.backlog.insert(0, _Part(items, tries + 1, batch))
                    self._replace_dead()
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be unpickled
                    from actsearch.rejection import Rejection, RejectionReason

                    self.idle.append(part.worker)
                    rejection = Rejection.from_exception(exc, "evaluate", RejectionReason.INTERNAL_ERROR)
                    result = [EvaluationResult.rejected(it.candidate_id, rejection, "driver", time.time() - part.started)
                              for it in items]
                self._part_done(batch, result, out)
            now = time.time()
            for ref, part in list(self.running.items()):
                if now - part.started > self.batches[part.batch].timeout_s * len(part.items):  # per candidate
                    self.running.pop(ref)
                    ray.kill(part.worker)
                    self.alive -= 1
                    self._replace_dead()
                    self._part_done(part.batch, timeout_outcome(part.items, now - part.started, "timeout"), out)
            if out:
                return out

    def shutdown(self) -> None:
        for worker in self.idle:
            self.ray.kill(worker)
        for part in self.running.values():
            self.ray.kill(part.worker)
        self.idle, self.running = [], {}
        if self.owns_ray:
            from actsearch.ray_local import stop_watchdog

            self.ray.shutdown()
            stop_watchdog(self.watchdog)


def make_executor(config, run_dir: str) -> Executor:
    if config.executor.startswith("table:"):  # actsearch.tabular: answers from a table, trains nothing
        from actsearch.tabular import TableExecutor

        return TableExecutor(config, config.executor[len("table:"):])
    cache_dir = os.path.join(os.path.abspath(run_dir), "cache")
    if config.executor == "local":
        return LocalExecutor(config, cache_dir)
    return RayExecutor(config, cache_dir)
