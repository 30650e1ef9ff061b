"""The search driver: strategy ask/tell, screening, dedup, staged evaluation, an executor, validation,
and the store as single writer.

    strategy.ask() -> genome -> space.candidate (formula core) -> screen -> dedup by canonical id
        -> batch of candidates -> executor (Ray actors or in-process) -> evaluate_many (population-batched)
        -> store.record_rung -> strategy.tell(genome, rung-0 score)
    promotions (actsearch.staging, asynchronous successive halving): a candidate in the top 1/eta of its
        rung -> the (task, seed) pairs the next rung adds -> executor -> store.record_rung
        -> strategy.update(genome, score at the higher rung)
    the end: actsearch.validation (top K on fresh seeds and held-out tasks) -> store.record_validation

Whenever the executor has room the driver submits, in this order, candidates to promote (highest rung
first) and then new rung-0 candidates; it never waits for a rung to fill.  `budget` counts rung-0
candidates.

Every ask and tell is logged in order in the store's `events` table.  Resuming replays that log into a
fresh strategy built with the same seed (asserting that each ask reproduces the logged genome), then
re-submits the genomes that were asked but never told (in flight when the driver died).  A result that
was stored but not yet told is told from the store, so nothing is evaluated twice and nothing is lost;
the run ends with exactly `budget` distinct evaluated candidates.  Updates are logged in the same
transaction as the rung result they come from and replayed in order.  Promotions are rows of the store's
`rungs` table ('promoted', then 'done'): a resumed run rebuilds the promotion book from them and first
resubmits the promotions that were in flight, so no (candidate, task, seed) is ever trained twice.
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
from actsearch.staging import (DEFAULT_ETA, MAX_SEEDS, AshaPromotions, estimate_score, parse_rungs, rungs_spec,
                               worst_task)
from actsearch.store import ResultStore, StoreError

MAX_STALE_ASKS = 5000  # consecutive asks without a new candidate to evaluate

# config keys that must match to resume a run (budget, workers, address may change between sessions)
OBJECTIVE_SETS = (["score"], ["score", "cost"], ["tasks"], ["worst-task"])
RESUME_KEYS = ("space", "space_options", "strategy", "strategy_options", "tasks", "seeds", "steps", "seed",
               "objectives", "batch", "rungs", "eta")
# a run made before staged evaluation was flat (one rung) with eta 3
LEGACY_DEFAULTS = {"rungs": "flat", "eta": 3}


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
    objectives: list = field(default_factory=lambda: ["score"])  # or ["score", "cost"], ["tasks"], ["worst-task"]
    timeout_s: float = 300.0       # per candidate (a batch of n gets n times it)
    space_options: dict = field(default_factory=dict)
    strategy_options: dict = field(default_factory=dict)
    baselines: Optional[list] = None  # None: the tasks' own (Task.baselines: ReLU, GELU, SiLU; or the layer ones)
    executor: str = "ray"          # "ray", "local" (in-process, for tests and debugging) or "table:PATH"
    rungs: Optional[str] = None    # staged evaluation (actsearch.staging): None = default rungs, "flat" = one
    eta: Optional[int] = None      # promotion: the top 1/eta of a rung (None: 3, or the resumed run's own)
    validate_top: int = 0          # at the end, validate the top K (0: no validation; the CLI's default is 5)
    validate_seeds: int = 5        # fresh seeds per validation task
    validate_tasks: Optional[list] = None  # None: the search tasks and the held-out tasks (validation.py)
    validate_select: Optional[str] = None  # how the top K are chosen (validation.SELECTIONS); None: worst-task
    #                                        for --objectives worst-task, else score

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
        if not isinstance(self.executor, str) or not (self.executor in ("ray", "local")
                                                      or self.executor.startswith("table:")):
            raise ValueError(f"--executor must be 'ray', 'local' or 'table:PATH', got {self.executor!r}")
        if self.executor.startswith("table:"):  # a tabular benchmark answers instead of training
            from actsearch.tabular import load_table

            table = load_table(self.executor[len("table:"):])
            if table.get("provenance", {}).get("space") not in (None, self.space):
                raise ValueError(f"--executor {self.executor}: the table was built from space "
                                 f"{table['provenance']['space']!r}, not {self.space!r}")
        if not self.tasks or not all(isinstance(t, str) and t.strip() for t in self.tasks):
            raise ValueError("--tasks is empty; name at least one task (see `actsearch tasks`) or 'all'")
        from actsearch.search_spaces import get_space
        from actsearch.strategies import STRATEGIES
        from actsearch.tasks import resolve_tasks

        space = get_space(self.space, **self.space_options)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
        task_list = resolve_tasks(self.tasks)
        self.tasks = [t.name for t in task_list]
        kind = check_kinds(self.space, space, task_list)
        self.baselines = check_baselines(self.baselines, task_list[0])
        if self.address:
            check_address(self.address)
        if list(self.objectives) not in OBJECTIVE_SETS:
            raise ValueError(f"--objectives must be 'score', 'score,cost', 'tasks' (one score per task, each "
                             f"maximised) or 'worst-task' (the score on the worst task), got {','.join(self.objectives)}")
        if self.every_task and len(self.tasks) < 2:
            raise ValueError(f"--objectives {self.objectives[0]} needs at least two --tasks "
                             f"({'one objective per task' if self.per_task else 'a worst task among several'})")
        if self.seeds > MAX_SEEDS:
            raise ValueError(f"--seeds must be <= {MAX_SEEDS}, got {self.seeds}")
        if self.eta is not None and (isinstance(self.eta, bool) or not isinstance(self.eta, numbers.Integral)
                                     or self.eta < 2):
            raise ValueError(f"--eta must be an integer >= 2, got {self.eta!r}")
        rungs = parse_rungs(self.rung_spec(), self.tasks, self.seeds)
        if self.every_task and any(len(r.tasks) != len(self.tasks) for r in rungs):
            raise ValueError(f"--objectives {self.objectives[0]}: every rung must train every task (each candidate "
                             f"needs a score on each), got --rungs {self.rungs}; use e.g. all:2,all:3,all:5")
        for name, value, low in (("--validate-top", self.validate_top, 0), ("--validate-seeds", self.validate_seeds, 2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.validate_select is not None:
            from actsearch.validation import check_selection

            check_selection(self.validate_select, self.tasks if self.validate_top > 0 else None, "--validate-select")
        if self.validate_tasks is not None:
            if not self.validate_tasks:
                raise ValueError("--validate-tasks is empty; name at least one task or leave it out")
            validate_list = resolve_tasks(self.validate_tasks)
            self.validate_tasks = [t.name for t in validate_list]
            other = [t for t in validate_list if t.kind != kind]
            if other:
                raise ValueError(f"--validate-tasks {', '.join(t.name for t in other)}: {other[0].kind} task"
                                 f"{'s' if len(other) > 1 else ''}, but the search's tasks are {kind} tasks; "
                                 f"validate on tasks of the search's kind ({_GROUP_HINT[kind]})")

    @property
    def per_task(self) -> bool:
        """One objective per search task (a layer's score on each architecture, selected by Pareto rank)."""
        return list(self.objectives) == ["tasks"]

    @property
    def worst_task(self) -> bool:
        """One objective: the score on the candidate's worst search task (a candidate must do well on
        every architecture, not on average)."""
        return list(self.objectives) == ["worst-task"]

    @property
    def every_task(self) -> bool:
        """Objectives that need a score on every search task at every rung."""
        return self.per_task or self.worst_task

    def selection(self) -> str:
        """How validation chooses the top K: --validate-select, or the search's own objective."""
        return self.validate_select or ("worst-task" if self.worst_task else "score")

    def n_objectives(self) -> int:
        return len(self.tasks) if self.per_task else len(self.objectives)

    def directions(self) -> tuple:
        if self.per_task:
            return ("maximize",) * len(self.tasks)
        return ("maximize",) + ("minimize",) * (len(self.objectives) - 1)

    def rung_spec(self) -> Optional[str]:
        """--rungs, or with per-task or worst-task objectives and no --rungs, the default rung shapes on every task."""
        if self.every_task and (self.rungs is None or not str(self.rungs).strip()):
            last = max(5, self.seeds)
            return f"all:{self.seeds},all:{min(max(self.seeds + 1, 3), last)},all:{last}"
        return self.rungs

    def resolved_rungs(self) -> list:
        return parse_rungs(self.rung_spec(), self.tasks, self.seeds)


_GROUP_HINT = {"activation": "e.g. all, mnist1d-mlp-deep", "layer": "e.g. layers"}
_SPACE_WORDS = {"activation": "scalar activation functions", "layer": "normalization-activation layers"}


def space_kind(space) -> str:
    """What a search space's candidates are: "layer" (normalization-activation layers, trained on layer
    tasks: the evonorm space) or "activation" (scalar activations: every other space).  A space may say
    so itself with a `kind` attribute."""
    kind = getattr(space, "kind", None)
    if kind in ("activation", "layer"):
        return kind
    from actsearch.search_spaces import EvoNormSpace

    return "layer" if isinstance(space, EvoNormSpace) else "activation"


def check_kinds(space_name: str, space, task_list) -> str:
    """The one kind of a search (its tasks' and its space's), or a ValueError that says what to change:
    a search trains one kind of candidate, so its tasks cannot mix activation and layer tasks, and its
    space must make candidates of its tasks' kind."""
    from actsearch.tasks import LAYER_TASKS

    kinds = {t.kind for t in task_list}
    if len(kinds) > 1:
        by = {k: [t.name for t in task_list if t.kind == k] for k in sorted(kinds)}
        raise ValueError("--tasks mixes activation tasks (" + ", ".join(by["activation"]) + ") and layer tasks ("
                         + ", ".join(by["layer"]) + "); a search trains one kind of candidate: name activation "
                         "tasks (e.g. 'all') or layer tasks ('layers'), not both")
    kind = kinds.pop()
    have = space_kind(space)
    if have != kind:
        names = ", ".join(t.name for t in task_list)
        fix = ("use --space evonorm for layers, or activation tasks (e.g. --tasks all)" if kind == "layer" else
               f"use layer tasks (--tasks layers: {', '.join(LAYER_TASKS)}) for it, or an activation space "
               f"(swish, pangaea, tree)")
        what = (f"{'an' if kind == 'activation' else 'a'} {kind} task, which trains" if len(task_list) == 1
                else f"{kind} tasks, which train")
        raise ValueError(f"--space {space_name} searches {_SPACE_WORDS[have]}, but --tasks {names} "
                         f"{'is' if len(task_list) == 1 else 'are'} {what} {_SPACE_WORDS[kind]}; {fix}")
    return kind


def check_baselines(baselines, task) -> list:
    """The search's baselines: `baselines`, each a built-in of the tasks' kind, or None for the tasks' own
    (`task.baselines`).  The reference (`task.reference`) is always trained besides them."""
    if baselines is None:
        return list(task.baselines)
    if isinstance(baselines, str) or not baselines or not all(isinstance(b, str) and b.strip() for b in baselines):
        raise ValueError(f"--baselines must be a non-empty list of baseline names, got {baselines!r}")
    out = list(dict.fromkeys(b.strip() for b in baselines))
    for b in out:
        try:
            task.make_unit(b)
        except ValueError as exc:
            raise ValueError(f"--baselines: {exc} (the {task.kind} tasks' baselines: "
                             f"{', '.join(task.baselines)})") from None
    return out


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
    expression tree (other nodes, + * ** ..., cost 1 per operand joined), divided by ReLU's.  The `cost`
    objective: deterministic (a resumed run gets the same costs) and free; workers time nothing (the
    measured kernel cost, kernels.bench.kernel_cost, is a benchmark: benchmarks/bench_kernel_cost.py)."""
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
                 progress: Optional[Callable[[dict], None]] = None, executor=None, *, optuna_study: bool = True):
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
                if config.eta is None:
                    config.eta = DEFAULT_ETA
                if config.rungs is None:  # the run records the rungs it uses, so a resume needs no --rungs
                    config.rungs = rungs_spec(config.resolved_rungs())
                self.store.set_config(asdict(config), {**versions(), "actsearch": __version__})
            else:
                stored = {**LEGACY_DEFAULTS, **stored}
                for key in ("rungs", "eta"):  # not given: the run's own
                    if getattr(config, key) is None:
                        setattr(config, key, stored[key])
                mine = asdict(config)
                if stored["rungs"] != mine["rungs"] and rungs_spec(config.resolved_rungs()) == rungs_spec(
                        parse_rungs(stored["rungs"], stored.get("tasks", config.tasks), stored.get("seeds", 2))):
                    config.rungs = mine["rungs"] = stored["rungs"]  # the same rungs, written another way
                diff = [k for k in RESUME_KEYS if stored.get(k) != mine.get(k)]
                if diff:
                    raise StoreError(f"{self.run_dir} was started with different settings ({', '.join(f'{k}={stored.get(k)!r}' for k in diff)}); "
                                     f"resume with the same settings (only --budget, --workers, --address and the "
                                     f"validation options may change)")
            self.rungs = config.resolved_rungs()
            from actsearch.tasks import task_defaults

            self.kind, self.reference, _ = task_defaults(config.tasks)  # the score's zero: relu or bn-relu
            self.asha = AshaPromotions(len(self.rungs), config.eta)
            self.space = get_space(config.space, **config.space_options)
            self.strategy = make_strategy(config.strategy, self.space, seed=config.seed,
                                          n_objectives=config.n_objectives(), directions=config.directions(),
                                          **config.strategy_options)
            self.executor = executor
            self.pending: list = []  # genomes asked but not told, to (re)submit
            self._replay()
            self._restore_promotions()
            from actsearch.optuna_study import SearchMirror

            # RUN_DIR/optuna.db for optuna-dashboard: kept in step with the store after each batch (never
            # stops the search; a resume adds only what is missing).  optuna_study=False: none (~30 ms a
            # trial, e.g. for benchmarks of many tabular searches); rebuild_study can write it later
            self.optuna_study = SearchMirror(self.run_dir, asdict(config), self.rungs, enabled=optuna_study)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the store and release the run directory's writer lock (run() does this when it ends)."""
        if getattr(self, "optuna_study", None) is not None:
            self.optuna_study.close()
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
            elif kind == "update":
                self.strategy.update(genome, tuple(value) if isinstance(value, list) else value)
            else:
                self.strategy.tell(genome, tuple(value) if isinstance(value, list) else value)
                key = json.dumps(genome, sort_keys=True)
                for i, g in enumerate(open_asks):
                    if json.dumps(g, sort_keys=True) == key:
                        del open_asks[i]
                        break
        self.pending = open_asks

    def _restore_promotions(self) -> None:
        """The promotion book from the store's rungs table; promotions in flight when the driver stopped
        are resubmitted first (`self.pending_promotions`: rung -> ids, in promotion order)."""
        self.pending_promotions: dict[int, list] = {}
        for row in self.store.rung_rows():
            cid, rung = row["candidate_id"], row["rung"]
            if rung >= len(self.rungs):
                raise StoreError(f"{self.run_dir} holds results of rung {rung}, but the run has {len(self.rungs)} rungs; "
                                 f"the store does not match its settings")
            if rung > 0 and cid not in self.asha.promoted[rung - 1]:
                self.asha.mark_promoted(rung - 1, cid)
            if row["status"] == "done":
                self.asha.record(rung, cid, self._promotion_value(row["score"], (row["summary"] or {}).get("task_scores")))
                if cid in self.pending_promotions.get(rung, []):
                    self.pending_promotions[rung].remove(cid)
            else:
                self.pending_promotions.setdefault(rung, []).append(cid)

    # -- one candidate's way to the executor
    def _value(self, result: Optional[dict], cid: Optional[str] = None):
        """What the strategy is told for a stored result (its highest rung's)."""
        if result is None:
            return None
        task_scores = self.store.task_scores(cid) if cid and self.config.every_task else None
        return self._objective_value(result["score"], result["cost"], task_scores)

    def _objective_value(self, score: Optional[float], cost: Optional[float], task_scores: Optional[dict]):
        """The objective(s) the strategy is told: the score; (score, cost); the per-task scores in --tasks
        order; or the worst task's score.  None for no score (treated as rejected)."""
        cfg = self.config
        if score is None:
            return None
        if cfg.per_task:
            return self._task_value(task_scores)
        if cfg.worst_task:
            return worst_task(task_scores, cfg.tasks)
        if len(cfg.objectives) == 1:
            return float(score)
        return (float(score), float(cost if cost is not None else 0.0))

    def _promotion_value(self, score: Optional[float], task_scores: Optional[dict]) -> Optional[float]:
        """What ASHA promotes on: the mean score, or with --objectives worst-task the worst task's score."""
        if score is None or not self.config.worst_task:
            return score
        return worst_task(task_scores, self.config.tasks)

    def _task_value(self, task_scores: Optional[dict]) -> Optional[tuple]:
        """Per-task objectives: the candidate's score on each search task, in --tasks order (None when one
        is missing: the candidate is then treated as rejected by the strategy)."""
        if not task_scores or any(task_scores.get(t) is None for t in self.config.tasks):
            return None
        return tuple(float(task_scores[t]) for t in self.config.tasks)

    def _prepare(self, genome) -> Optional[tuple]:
        """Build, fingerprint, screen and dedup one genome.  Returns ("eval" | "wait", candidate, genome), or
        None after telling the strategy.  This is the candidate's boundary: any exception raised on its
        way here is recorded as its rejection (a reason code and the error) and the search goes on."""
        from actsearch.layer_stability import check_stability
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
                value = self._value(done, cid)
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
                elif c.is_tensor_op:  # a layer: EvoNorm's stability protocol, before any training
                    stage = "stability"
                    stability = check_stability(c)
                    if not stability.passed:
                        cand.update(screening_passed=False, reason_code="unstable",
                                    screening_reason=f"{stability.reason} (checked in {stability.seconds:.2f} s)")
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
        self.inflight_ids: dict[str, list] = {}   # rung-0 candidate id -> genomes waiting for it
        self.inflight_rung: dict[str, int] = {}   # candidate id -> the rung it is being evaluated for
        self._stale = 0
        self._exhausted = False
        self._queue = list(self.pending)
        self.pending = []
        inflight_batches = 0
        started = self.store.n_results()
        try:
            while True:
                # fill the executor: promotions first (highest rung first), then new rung-0 candidates
                while inflight_batches < ex.capacity:
                    job = self._promotion_batch() or self._new_batch()
                    if job is None:
                        break
                    items, plan = job
                    ex.submit(items, plan, timeout_s=cfg.timeout_s * max(
                        1.0, sum(map(len, plan.values())) / self.rungs[0].n_pairs))
                    inflight_batches += 1
                if inflight_batches == 0:  # nothing to promote, the budget spent (or the space exhausted)
                    for cid in list(self.inflight_ids):  # only waiters on nothing can remain here
                        self._tell_waiters(cid, self.store.result(cid))
                    break
                for outcome in ex.wait():
                    inflight_batches -= 1
                    for cid, report, worker, wall in outcome:
                        rung = self.inflight_rung.pop(cid, 0)
                        result = self._record(cid, rung, report, worker, wall)
                        if rung == 0:
                            self._tell_waiters(cid, result)
                    self.optuna_study.sync(self.store)
                    self.progress(self.status(t_start, started))
            self.optuna_study.sync(self.store)
            summary = self.status(t_start, started, final=True)
            summary["exhausted"] = self._exhausted
            summary["reference"] = self.reference
            if cfg.n_objectives() > 1:
                summary["pareto"] = self.pareto()
            if cfg.validate_top > 0 and cfg.executor.startswith("table:"):
                summary["validation"] = None  # a table has no fresh seeds to validate on
                summary["validation_skipped"] = "a tabular executor has only the table's seeds, none fresh"
            elif cfg.validate_top > 0:
                from actsearch.validation import validate_store

                summary["validation"] = validate_store(
                    self.store, ex, top=cfg.validate_top, seeds=cfg.validate_seeds, tasks=cfg.validate_tasks,
                    baselines=cfg.baselines, select=cfg.selection(),
                    progress=lambda st: self.progress({**self.status(t_start, started), "validation": st}))
        finally:
            if self.executor is None:
                ex.shutdown()
        summary["elapsed_s"] = time.time() - t_start
        return summary

    def _items(self, ids) -> list:
        out = []
        for cid in ids:
            c = self.store.candidate(cid)
            out.append((cid, c["formula"], dict(c["params"] or {})))
        return out

    def _promotion_batch(self) -> Optional[tuple]:
        """(items, plan) of up to `batch` candidates to promote, or None (self.inflight_rung says the rung).  Promotions found in flight
        by a resume come first; they are already recorded, so they are not recorded again."""
        for rung in sorted(self.pending_promotions, reverse=True):
            ids = self.pending_promotions[rung][:self.config.batch]
            if ids:
                del self.pending_promotions[rung][:len(ids)]
                return self._submit_promotion(rung, ids, record=False)
        frm, ids = self.asha.next_promotions(self.config.batch)
        if not ids:
            return None
        return self._submit_promotion(frm + 1, ids, record=True)

    def _submit_promotion(self, rung: int, ids: list, record: bool) -> tuple:  # (items, plan)
        for cid in ids:
            if record:
                self.store.promote(cid, rung)
                self.asha.mark_promoted(rung - 1, cid)
            self.inflight_rung[cid] = rung
        return self._items(ids), self.rungs[rung].delta(self.rungs[rung - 1])

    def _new_batch(self) -> Optional[tuple]:
        """(items, plan) of up to `batch` new rung-0 candidates within the budget, or None."""
        cfg = self.config
        done = self.store.n_results()
        batch: list = []
        while not self._exhausted and len(batch) < cfg.batch and done + len(self.inflight_ids) + len(batch) < cfg.budget:
            if self._stale > MAX_STALE_ASKS:  # the strategy only repeats itself: a finished space
                self._exhausted = True
                break
            if self._queue:
                genome = self._queue.pop(0)
            else:
                genome = self.strategy.ask()
                if genome is None:
                    self._exhausted = True
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
            return None
        for c, g in batch:
            self.inflight_ids.setdefault(c.id, []).append(g)
            self.inflight_rung[c.id] = 0
        return [(c.id, c.source or c.formula, dict(c.params)) for c, _ in batch], self.rungs[0].pairs()

    def pareto(self) -> list[dict]:
        """The Pareto front of (score up, cost down) over the evaluated candidates; with per-task
        objectives, of the per-task scores (each up) at each candidate's highest rung."""
        from actsearch.strategies import pareto_front

        if self.config.per_task:
            return self.store.task_front(self.config.tasks)
        rows = [r for r in self.store.ranked() if r["score"] is not None and r["cost"] is not None]
        front = pareto_front([(r["score"], r["cost"]) for r in rows])
        return sorted(({"id": rows[i]["id"], "formula": rows[i]["formula"], "score": rows[i]["score"],
                        "cost": rows[i]["cost"]} for i in front), key=lambda d: d["cost"])

    def _estimate(self, cid: str, rung: int, report: dict):
        """The candidate's score over every (task, seed) of `rung`: its stored trainings and those of
        `report`, against the baselines' (the run's, and those trained with `report`)."""
        from actsearch.tasks import get_task

        cand = self.store.accuracies(cid)
        base = self.store.baseline_accuracies()
        for task, t in report.get("tasks", {}).items():
            seeds = t.get("seeds", report.get("seeds", []))
            cand.setdefault(task, {}).update(zip(seeds, t["candidate"]["per_seed"]))
            for name, b in (t.get("baselines") or {}).items():
                for seed, acc in zip(seeds, b.get("per_seed", [])):
                    base.setdefault(task, {}).setdefault(name, {}).setdefault(seed, acc)
        pairs = self.rungs[rung].pairs()
        return estimate_score(cand, base, {t: get_task(t).chance for t in pairs}, pairs,
                              compare=[b for b in self.config.baselines if b != self.reference],
                              reference=self.reference)

    def _record(self, cid: str, rung: int, report: dict, worker: str, wall: float) -> dict:
        cfg = self.config
        est = self._estimate(cid, rung, report) if report.get("tasks") else None
        score = est.score if est is not None and est.score is not None else report.get("score")
        if rung > 0 and est is not None and est.score is None:
            score = None  # a rung the candidate did not complete has no score of its own
        if score is not None and score != score:  # NaN
            score = None
        cost = None
        if "cost" in cfg.objectives:  # the static estimate (candidate_cost); a report's own cost if it has one
            cost = report.get("cost")
            if cost is None and rung == 0:
                try:
                    cost = candidate_cost(self.space.candidate(self.store.candidate(cid)["genome"]))
                except Exception:  # noqa: BLE001 - no cost is better than a crashed search
                    cost = None
        task_scores = est.task_scores if est is not None else None
        updates: list = []
        if rung > 0:  # the strategy learns the value at the candidate's highest rung (the cost is rung 0's)
            stored_cost = self.store.result(cid)["cost"] if "cost" in cfg.objectives else None
            value = self._objective_value(score, stored_cost, task_scores)
            updates = [(g, value) for g in self.store.told_genomes(cid)]
        summary = {**est.to_dict(), "rung": rung, "rung_label": self.rungs[rung].label()} if est is not None else None
        self.store.record_rung(cid, rung, report, score, lcb=est.lcb if est is not None else None, summary=summary,
                               cost=cost, wall_s=wall, worker=worker,
                               reason_code=rejection_code(report) if rung == 0 else None, updates=updates)
        self.asha.record(rung, cid, self._promotion_value(score, task_scores))
        for g, value in updates:
            self.strategy.update(g, value)
        return self.store.result(cid)

    def _tell_waiters(self, cid: str, result: Optional[dict]) -> None:
        value = self._value(result, cid)
        for g in self.inflight_ids.pop(cid, []):
            self.strategy.tell(g, value)
            self.store.log_tell(g, value, cid)

    def status(self, t_start: float, started: int, final: bool = False) -> dict:
        n = self.store.n_results()
        el = time.time() - t_start
        # the conservative ranking reads every rung row: at most every 5 s for the progress line
        if final or time.time() - getattr(self, "_best_at", 0.0) > 5.0:
            ranked = self.store.ranked(1)
            self._best, self._best_at = (ranked[0] if ranked else None), time.time()
        best = self._best  # ranked puts rejected candidates last
        spent = self.store.rung_spending()
        rungs = []
        for r, c in zip(self.rungs, self.asha.counts()):
            rungs.append({**r.to_dict(), "label": r.label(), "completed": c["completed"],
                          "promoted": c["promoted"], "in_flight": sum(1 for k in self.inflight_rung.values() if k == r.index)
                          if hasattr(self, "inflight_rung") else 0,
                          "trainings": spent.get(r.index, {}).get("trainings", 0),
                          "wall_s": spent.get(r.index, {}).get("wall_s", 0.0)})
        rejections = self.store.rejection_counts()
        # what rejecting before training saved: each unstable layer would have cost a rung-0 evaluation
        # (the run's mean so far), measured in the same units as the rungs' wall_s
        r0 = spent.get(0, {})
        per_candidate = r0.get("wall_s", 0.0) / n if n else None
        unstable = rejections.get("unstable", 0)
        savings = {"unstable": {"count": unstable, "est_saved_s": (unstable * per_candidate
                                                                   if per_candidate is not None else None)}}
        return {"run_dir": self.run_dir, "evaluated": n, "budget": self.config.budget,
                "rejected": self.store.n_rejected(), "screened_out": self.store.n_screened_out(),
                "rejections": rejections, "rejection_savings": savings, "eta": self.config.eta, "rungs": rungs,
                "elapsed_s": el, "rate_per_min": 60 * (n - started) / el if el > 0 else 0.0,
                "best": ({"id": best["id"], "formula": best["formula"], "score": best["score"], "rung": best["rung"],
                          "lcb": best["lcb"]} if best else None)}
