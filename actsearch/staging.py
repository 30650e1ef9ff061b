"""Staged (multi-fidelity) evaluation: rungs, per-seed score estimates, and asynchronous successive
halving (ASHA, Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning").

A search evaluates every new candidate cheaply at rung 0 (by default the first search task, 2 seeds).
A candidate whose rung-k score is in the top 1/eta of the rung-k results completed so far is promoted
to rung k+1, which adds search tasks and seeds; the last rung has every search task with >= 5 seeds.
Promotion is decided whenever a worker needs work (promotions first, highest rung first, then new
rung-0 candidates), never at a barrier, so workers never wait for a rung to fill.

Seeds accumulate and stay paired: rung k trains only the (task, seed) pairs the candidate lacks, seed s
of a candidate and seed s of every baseline start from the same weights and see the same batches, and
the rung's score is computed over all of the rung's pairs.

Score estimate (`estimate_score`): the per-seed score y_s = mean over the rung's tasks of
(candidate_s - reference_s) / (reference_mean - chance), whose mean is the multi-task score of
`actsearch.evaluation` (0 is the reference baseline, -1 chance).  The reference is the tasks' own
(`Task.reference`): ReLU on activation tasks, BN-ReLU on layer tasks; a search's tasks are all of one
kind, so they share it.  `estimate_score` also gives the candidate's own 95%
Student-t interval over its seeds.  Rankings (`top`, the candidates sent to validation) use the lower
bound (LCB) of a 95% interval in the score's units whose spread is pooled over every candidate of the
same rung (they share its tasks and seeds): sd^2 = sum_i sum_s (y_is - mean_i)^2 / sum_i (n_i - 1), with
sum_i (n_i - 1) degrees of freedom (`pooled_spread`).  A candidate's own interval from 2 seeds has one
degree of freedom (t = 12.7) and mostly measures how alike its two seeds happened to be, so ranking by
it would favour candidates that are lucky in their spread rather than good; the pooled spread is
estimated from the whole rung (assuming seed noise of similar size across candidates, which the
paired design makes plausible), so within a rung the ranking is by the mean, and across rungs a score
on 5 seeds (interval / sqrt(5)) outranks a slightly higher one on 2 -- the largest of many 2-seed means
is the winner's curse.  Promotion uses the mean, as ASHA does.

Rung specification (`--rungs`): comma-separated `TASKS:SEEDS`, TASKS the number of the search tasks (in
`--tasks` order) or `all`; e.g. `1:2,2:3,all:5`.  `flat` is one rung, every task with `--seeds` seeds
(the unstaged search).  Tasks and seeds never decrease from one rung to the next, each rung adds
something, and the last rung uses every search task.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

MAX_SEEDS = 1000           # search seeds are 0..MAX_SEEDS-1; validation seeds start above them
DEFAULT_ETA = 3
DEFAULT_LAST_SEEDS = 5


@dataclass(frozen=True)
class Rung:
    """Rung `index`: the first len(tasks) search tasks, seeds 0..seeds-1 on each."""
    index: int
    tasks: tuple
    seeds: int

    def pairs(self) -> dict[str, list[int]]:
        return {t: list(range(self.seeds)) for t in self.tasks}

    def delta(self, previous: Optional["Rung"]) -> dict[str, list[int]]:
        """The (task, seeds) this rung trains that `previous` did not: what a promotion costs."""
        have = previous.pairs() if previous else {}
        out = {}
        for t, seeds in self.pairs().items():
            new = [s for s in seeds if s not in set(have.get(t, ()))]
            if new:
                out[t] = new
        return out

    @property
    def n_pairs(self) -> int:
        return len(self.tasks) * self.seeds

    def label(self) -> str:
        return f"{len(self.tasks)} task{'s' if len(self.tasks) > 1 else ''} x {self.seeds} seed{'s' if self.seeds > 1 else ''}"

    def to_dict(self) -> dict:
        return {"index": self.index, "tasks": list(self.tasks), "seeds": self.seeds}


def default_rungs(tasks: Sequence[str], seeds: int = 2) -> list[Rung]:
    """Rung 0: the first task with `seeds` seeds; rung 1: half the tasks (at least one) with 3; the last:
    every task with max(5, seeds).  Rungs that would add nothing are dropped."""
    n = len(tasks)
    last = max(DEFAULT_LAST_SEEDS, seeds)
    shape = [(1, seeds), (max(1, math.ceil(n / 2)), min(max(seeds + 1, 3), last)), (n, last)]
    out: list[tuple[int, int]] = []
    for nt, s in shape:
        if out and nt <= out[-1][0] and s <= out[-1][1]:
            continue
        out.append((max(nt, out[-1][0]) if out else nt, max(s, out[-1][1]) if out else s))
    return [Rung(i, tuple(tasks[:nt]), s) for i, (nt, s) in enumerate(out)]


def parse_rungs(spec: Optional[str], tasks: Sequence[str], seeds: int = 2) -> list[Rung]:
    """The rungs of `spec` (see the module docstring) over the search tasks; None or "" gives
    `default_rungs(tasks, seeds)`.  ValueError names what is wrong."""
    tasks = list(tasks)
    if spec is None or not str(spec).strip():
        return default_rungs(tasks, seeds)
    text = str(spec).strip()
    if text.lower() == "flat":
        return [Rung(0, tuple(tasks), seeds)]
    shape = []
    for i, part in enumerate(text.split(",")):
        part = part.strip()
        nt_text, sep, s_text = part.partition(":")
        if not sep:
            raise ValueError(f"--rungs: rung {i} is {part!r}; write TASKS:SEEDS (e.g. 1:2,2:3,all:5) or 'flat'")
        nt_text, s_text = nt_text.strip().lower(), s_text.strip()
        if nt_text == "all":
            nt = len(tasks)
        elif nt_text.isdigit() and 1 <= int(nt_text) <= len(tasks):
            nt = int(nt_text)
        else:
            raise ValueError(f"--rungs: rung {i} asks for {nt_text!r} tasks; give 1..{len(tasks)} (the number of "
                             f"--tasks) or 'all'")
        if not s_text.isdigit() or not 1 <= int(s_text) <= MAX_SEEDS:
            raise ValueError(f"--rungs: rung {i} asks for {s_text!r} seeds; give an integer 1..{MAX_SEEDS}")
        shape.append((nt, int(s_text)))
    for i in range(1, len(shape)):
        (a, b), (c, d) = shape[i - 1], shape[i]
        if c < a or d < b:
            raise ValueError(f"--rungs: rung {i} ({c}:{d}) has fewer tasks or seeds than rung {i - 1} ({a}:{b}); "
                             f"rungs only add tasks and seeds")
        if (c, d) == (a, b):
            raise ValueError(f"--rungs: rung {i} ({c}:{d}) adds nothing to rung {i - 1}")
    if shape[-1][0] != len(tasks):
        raise ValueError(f"--rungs: the last rung uses {shape[-1][0]} of the {len(tasks)} search tasks; it must use "
                         f"all of them (write all:SEEDS), or drop the unused tasks from --tasks")
    return [Rung(i, tuple(tasks[:nt]), s) for i, (nt, s) in enumerate(shape)]


# ------------------------------------------------------------------------------------------ estimates

@dataclass
class ScoreEstimate:
    """A candidate's score on one rung's tasks and seeds, with its per-seed values and interval."""
    score: Optional[float]
    ci: Optional[list]                 # [lo, hi], 95% Student-t over seeds; None with one seed
    lcb: Optional[float]               # ci[0]; None with one seed
    per_seed: list                     # y_s, in `seeds` order
    seeds: list
    tasks: list
    task_scores: dict                  # task -> score on that task
    vs: dict = field(default_factory=dict)  # task -> baseline -> paired comparison (evaluation.paired_comparison)
    missing: list = field(default_factory=list)  # "task/seed" pairs without data (then score is None)
    reference: str = "relu"            # the baseline the score is measured against (its zero)

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_score(candidate: Mapping[str, Mapping[int, float]], baselines: Mapping[str, Mapping[str, Mapping[int, float]]],
                   chance: Mapping[str, float], pairs: Mapping[str, Sequence[int]],
                   compare: Sequence[str] = (), confidence: float = 0.95, reference: str = "relu") -> ScoreEstimate:
    """The score over `pairs` (task -> seeds, the same seeds on every task) from accuracies:
    candidate[task][seed], baselines[task][name][seed] (`reference` required: the tasks' reference
    baseline, "relu" on activation tasks, "bn-relu" on layer tasks), chance[task]."""
    from actsearch.evaluation import paired_comparison, t_interval

    tasks = list(pairs)
    seeds = list(next(iter(pairs.values()))) if pairs else []
    if any(list(pairs[t]) != seeds for t in tasks):
        raise ValueError("estimate_score needs the same seeds on every task")
    missing = [f"{t}/{s}" for t in tasks for s in seeds
               if s not in candidate.get(t, {}) or s not in baselines.get(t, {}).get(reference, {})]
    if missing or not tasks or not seeds:
        return ScoreEstimate(None, None, None, [], seeds, tasks, {}, {}, missing, reference)
    contrib: dict[str, list[float]] = {}
    vs: dict[str, dict] = {}
    for t in tasks:
        ref = [baselines[t][reference][s] for s in seeds]
        cand = [candidate[t][s] for s in seeds]
        margin = statistics.fmean(ref) - chance[t]
        contrib[t] = [(c - r) / margin if margin > 0 else 0.0 for c, r in zip(cand, ref)]
        vs[t] = {b: paired_comparison(cand, [baselines[t][b][s] for s in seeds], confidence)
                 for b in dict.fromkeys([reference, *compare]) if all(s in baselines[t].get(b, {}) for s in seeds)}
    per_seed = [statistics.fmean(contrib[t][i] for t in tasks) for i in range(len(seeds))]
    ci = t_interval(per_seed, confidence)
    return ScoreEstimate(statistics.fmean(per_seed), ci, ci[0] if ci else None, per_seed, seeds, tasks,
                         {t: statistics.fmean(v) for t, v in contrib.items()}, vs, [], reference)


def worst_task(task_scores: Optional[Mapping[str, Optional[float]]], tasks: Sequence[str]) -> Optional[float]:
    """The score on the candidate's worst task of `tasks` (`--objectives worst-task`, `validate --select
    worst-task`); None unless every task has a score."""
    if not task_scores or any(task_scores.get(t) is None for t in tasks):
        return None
    return min(float(task_scores[t]) for t in tasks)


def ranking_key(score: Optional[float], lcb: Optional[float], rejected: bool = False, order: int = 0) -> tuple:
    """Sort key, best first when sorted ascending: valid before rejected, then by the lower confidence
    bound (none, from one seed, counts as -inf), then by the mean, then by evaluation order."""
    neg = -math.inf
    return (bool(rejected) or score is None, -(lcb if lcb is not None else neg), -(score if score is not None else neg),
            order)


# ------------------------------------------------------------------------------------------ ASHA

class AshaPromotions:
    """The bookkeeping of asynchronous successive halving, without I/O: which candidates completed
    each rung with which value, which were promoted out of it, and which may be promoted now.

    A candidate that completed rung k (k < last) is promotable when its value is among the top
    floor(n_k / eta) of the n_k values completed at rung k so far, it is not rejected (value None),
    and it was not promoted before.  As in ASHA, n_k only grows, so early promotions are made from
    few results and the number promoted out of a rung can exceed floor(n_k / eta) when later results
    push early promotees out of the top; with results arriving in random order the excess is small
    (tests/test_staging.py measures it).  Ties go to the earlier completion."""

    def __init__(self, n_rungs: int, eta: int = DEFAULT_ETA):
        if eta < 2:
            raise ValueError(f"--eta must be an integer >= 2, got {eta!r}")
        self.n_rungs, self.eta = n_rungs, eta
        self.done: list[dict] = [dict() for _ in range(n_rungs)]     # cid -> (value, completion order)
        self.promoted: list[dict] = [dict() for _ in range(n_rungs)]  # cid -> promotion order, out of rung k
        self._order = 0

    def record(self, rung: int, cid: str, value: Optional[float]) -> None:
        self._order += 1
        self.done[rung][cid] = (value, self._order)

    def mark_promoted(self, rung: int, cid: str) -> None:
        self._order += 1
        self.promoted[rung][cid] = self._order

    def promotable(self, rung: int) -> list[str]:
        """Candidates to promote out of `rung` now, best first."""
        if rung >= self.n_rungs - 1:
            return []
        done = self.done[rung]
        k = len(done) // self.eta
        if k == 0:
            return []
        ranked = sorted(((v, o, c) for c, (v, o) in done.items() if v is not None), key=lambda t: (-t[0], t[1]))
        return [c for _, _, c in ranked[:k] if c not in self.promoted[rung]]

    def next_promotions(self, limit: int) -> tuple[Optional[int], list[str]]:
        """Up to `limit` candidates of one rung to promote now, from the highest rung that has any:
        (the rung they leave, their ids), or (None, [])."""
        for rung in range(self.n_rungs - 2, -1, -1):
            ids = self.promotable(rung)
            if ids:
                return rung, ids[:limit]
        return None, []

    def counts(self) -> list[dict]:
        return [{"rung": k, "completed": len(self.done[k]), "promoted": len(self.promoted[k])}
                for k in range(self.n_rungs)]


def rungs_spec(rungs: Sequence[Rung]) -> str:
    """The canonical `--rungs` text of `rungs` (task counts as numbers): what a run records."""
    return ",".join(f"{len(r.tasks)}:{r.seeds}" for r in rungs)


# ------------------------------------------------------------------------------------------ pooled intervals

@dataclass(frozen=True)
class PooledSpread:
    """The seed-to-seed spread of per-seed scores pooled over the candidates of one rung."""
    sd: float
    df: int

    def interval(self, mean: float, n: int, confidence: float = 0.95) -> Optional[list]:
        from scipy import stats

        if self.df < 1 or n < 1 or not math.isfinite(self.sd):
            return None
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.sd / math.sqrt(n)
        return [mean - half, mean + half]


def pooled_spread(per_seed_lists: Sequence[Sequence[float]]) -> Optional[PooledSpread]:
    """sqrt(sum_i sum_s (y_is - mean_i)^2 / sum_i (n_i - 1)) over candidates i of one rung (they share its
    tasks and seeds), with sum_i (n_i - 1) degrees of freedom; None when there are none."""
    ss, df = 0.0, 0
    for ys in per_seed_lists:
        if len(ys) >= 2:
            m = statistics.fmean(ys)
            ss += sum((y - m) ** 2 for y in ys)
            df += len(ys) - 1
    return PooledSpread(math.sqrt(ss / df), df) if df else None
