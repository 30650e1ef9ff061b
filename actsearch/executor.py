"""Executors: where populations of candidates are evaluated.  The driver submits batches and waits for
outcomes; it never learns whether they ran in-process or on a Ray cluster.

  LocalExecutor  in the driver's process, one batch at a time (tests, debugging, `--executor local`)
  RayExecutor    long-lived Ray actors (EvaluationWorker), `workers` of them (default one per CPU, one thread
                 each), each keeping the task data,
                 kernels and Inductor's compile cache warm; embedded local Ray by default, or an existing
                 cluster with `address`.  A batch whose worker dies (process or node) is resubmitted to a
                 fresh worker (up to `max_retries` times); a batch running past `timeout_s` is recorded as
                 rejected ("timeout") and its worker replaced (`timeout_s` is per candidate: a batch
                 of n candidates gets n times it).  Ray's own settings (authentication, TLS)
                 are left as the cluster has them.
"""
from __future__ import annotations

import os
import socket
import time
from collections import deque
from typing import Optional

Item = tuple  # (candidate_id, formula, params)


def evaluate_items(items: list, tasks: list, seeds: int, steps: Optional[int], baselines: list,
                   cache_dir: Optional[str], worker: str, cost: bool = False) -> list:
    """Evaluate a batch of candidates as one population per task; [(id, report, worker, wall_s)].
    With `cost`, each report also gets the candidate's measured kernel cost relative to ReLU."""
    from actsearch.evaluation import BaselineCache, evaluate_many
    from actsearch.formula import parse_formula
    from actsearch.kernels.inductor import error_summary

    t0 = time.perf_counter()
    try:
        cands = [parse_formula(formula, params=params or None) for _, formula, params in items]
        reports = evaluate_many(cands, tasks, seeds=seeds, baselines=baselines, steps=steps, screen=False,
                                cache=BaselineCache(cache_dir) if cache_dir else None)
    except Exception as exc:  # noqa: BLE001 - a broken candidate is recorded, and the search goes on
        if len(items) > 1:  # find the culprit: evaluate one by one
            return [r for item in items
                    for r in evaluate_items([item], tasks, seeds, steps, baselines, cache_dir, worker, cost)]
        reason = f"evaluation error: {error_summary(exc)}"
        return [(items[0][0], {"score": None, "tasks": {}, "seeds": [], "rejected": reason}, worker,
                 time.perf_counter() - t0)]
    wall = (time.perf_counter() - t0) / max(1, len(items))
    if cost:
        from actsearch.kernels.bench import kernel_cost

        for c, rep in zip(cands, reports):
            rep["cost"] = kernel_cost(c)
    return [(cid, rep, worker, wall) for (cid, _, _), rep in zip(items, reports)]


def timeout_outcome(items: list, seconds: float, worker: str) -> list:
    reason = f"timeout: no result within {seconds:.0f} s"
    return [(cid, {"score": None, "tasks": {}, "seeds": [], "rejected": reason}, worker, seconds)
            for cid, _, _ in items]


def _setup_process(cache_dir: Optional[str], threads: int) -> None:
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache_dir, "inductor"))
        os.environ.setdefault("ACTSEARCH_CACHE_DIR", cache_dir)
    import torch

    torch.set_num_threads(max(1, threads))
    # A search worker compiles one population kernel per batch for as long as the run lasts; Dynamo's
    # default of 256 compiled graphs per process would turn later batches uncompiled (slow, correct).
    import torch._dynamo.config as dynamo_config

    if hasattr(dynamo_config, "accumulated_recompile_limit"):
        dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 100_000)


class LocalExecutor:
    capacity = 1

    def __init__(self, config, cache_dir: Optional[str] = None, threads: Optional[int] = None):
        self.config, self.cache_dir = config, cache_dir
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.done: deque = deque()
        _setup_process(cache_dir, self.threads)

    def submit(self, items: list) -> None:
        c = self.config
        self.done.append(evaluate_items(items, c.tasks, c.seeds, c.steps, c.baselines, self.cache_dir,
                                        f"local:{socket.gethostname()}:{os.getpid()}", "cost" in c.objectives))

    def wait(self) -> list:
        out = list(self.done)
        self.done.clear()
        return out

    def shutdown(self) -> None:
        pass


class EvaluationWorker:
    """A Ray actor: sets up its process once (threads, caches, task data), then evaluates batches."""

    def __init__(self, tasks: list, seeds: int, steps: Optional[int], baselines: list, cache_dir: Optional[str],
                 threads: int, cost: bool = False):
        _setup_process(cache_dir, threads)
        from actsearch.tasks import resolve_tasks

        for t in resolve_tasks(tasks):
            t.data()  # generated once per worker, kept warm
        self.args = (tasks, seeds, steps, baselines, cache_dir)
        self.cost = cost
        import ray

        ctx = ray.get_runtime_context()
        self.name = f"{ctx.get_node_id()[:8]}:{os.getpid()}"

    def evaluate(self, items: list) -> list:
        tasks, seeds, steps, baselines, cache_dir = self.args
        return evaluate_items(items, tasks, seeds, steps, baselines, cache_dir, self.name, self.cost)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    def __init__(self, config, cache_dir: Optional[str] = None, max_retries: int = 3):
        import ray

        self.ray = ray
        self.config, self.cache_dir, self.max_retries = config, cache_dir, max_retries
        self.owns_ray = False
        if not ray.is_initialized():
            try:
                if config.address:
                    ray.init(address=config.address, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, log_to_driver=False)
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
        self.backlog: list = []  # (items, tries) waiting for a free worker
        self.running: dict = {}  # ref -> (worker, items, t_submit, tries)

    def _new_worker(self):
        c = self.config
        return self.remote_cls.remote(c.tasks, c.seeds, c.steps, c.baselines, self.cache_dir, self.threads,
                                      "cost" in c.objectives)

    def submit(self, items: list, tries: int = 0) -> None:
        if self.idle:
            worker = self.idle.pop()
        elif self._can_add_worker():
            worker = self._new_worker()
            self.alive += 1
        else:  # every worker is busy (a dead one's batch waits for the next free worker)
            self.backlog.append((items, tries))
            return
        ref = worker.evaluate.remote(items)
        self.running[ref] = (worker, items, time.time(), tries)

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

    def wait(self) -> list:
        """Block until at least one batch finishes; returns finished batches' outcomes."""
        ray = self.ray
        while True:
            while self.backlog and (self.idle or self._can_add_worker()):
                self.submit(*self.backlog.pop(0))
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=1.0)
            out = []
            for ref in ready:
                worker, items, t0, tries = self.running.pop(ref)
                try:
                    out.append(ray.get(ref))
                    self.idle.append(worker)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as exc:
                    # the worker or its node died: the same batch goes to another worker; nothing is
                    # recorded for it until a result arrives, so nothing is lost or counted twice
                    self.alive -= 1
                    self.deaths += 1
                    if tries >= self.max_retries:
                        raise RuntimeError(f"a batch failed {tries + 1} times on dying workers: {exc}") from None
                    self.backlog.insert(0, (items, tries + 1))
                    self._replace_dead()
            now = time.time()
            for ref, (worker, items, t0, tries) in list(self.running.items()):
                if now - t0 > self.config.timeout_s * len(items):  # the timeout is per candidate
                    self.running.pop(ref)
                    ray.kill(worker)
                    self.alive -= 1
                    self._replace_dead()
                    out.append(timeout_outcome(items, now - t0, "timeout"))
            if out:
                return out

    def shutdown(self) -> None:
        for worker in self.idle:
            self.ray.kill(worker)
        for worker, *_ in self.running.values():
            self.ray.kill(worker)
        self.idle, self.running = [], {}
        if self.owns_ray:
            self.ray.shutdown()


def make_executor(config, run_dir: str):
    cache_dir = os.path.join(os.path.abspath(run_dir), "cache")
    if config.executor == "local":
        return LocalExecutor(config, cache_dir)
    return RayExecutor(config, cache_dir)
