"""Tune a candidate's initial parameter values with Optuna's samplers (`actsearch tune`).

A parametric family is only as good as where its parameters start: PAU starts at a fit to leaky ReLU,
APA at SiLU, xGELU at GELU.  The named starts of the `families` search space cover the obvious choices;
this module searches the continuous initial values themselves.

Protocol (selection and claim on different seeds, as everywhere in actsearch):
  1. An Optuna study (the sampler named: TPE by default; random, QMC, GP; CMA-ES where the `cmaes`
     package is installed) asks `batch` trials at a time; each trial's initial values make one candidate
     (the same formula; the initial values are part of its id); the batch trains as one population on
     the tuning seeds with `evaluate_many`, and each trial is told its score (the mean over tasks of the
     score against the task's reference: 0 is ReLU / BN-ReLU, -1 is chance; actsearch.evaluation.task_score).  The default initial values are trial 0 (enqueued), so the best
     trial is never worse than the default on the tuning seeds.
  2. The best trial's values and the default values are then compared on `validate_seeds` fresh seeds
     (never used for tuning): per task, the paired difference best - default with its 95% t-interval.
     Tuning wins on the tuning seeds by construction; only this comparison says whether it generalises.

Search ranges: `ranges` {name: (low, high)}, else per parameter from its default value v: log-uniform
on [v/4, 4v] for v > 0, on [4v, v/4] for v < 0 (a parameter keeps its sign, so a safe denominator such
as APA's lambda stays safe), uniform on [-1, 1] for v = 0.
The study can be stored (`storage`, e.g. sqlite:///RUN_DIR/tune.db; resumable: trials already told are
not trained again) and read with optuna-dashboard.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence, Union

from actsearch.formula import Candidate, parse_formula

SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes")


@dataclass
class TuneTrial:
    number: int
    params: dict
    score: Optional[float]          # None: rejected (diverged, screened out) on some task
    task_scores: dict
    rejected: Optional[str] = None
    default: bool = False           # the enqueued default initial values


@dataclass
class TuneComparison:
    """Best versus default initial values on one task, on fresh seeds: paired difference of accuracy."""
    task: str
    seeds: list
    best: float
    default: float
    diff: float
    ci: Optional[list]
    verdict: str


@dataclass
class TuneResult:
    formula: str
    default_params: dict
    best_params: dict
    best_score: float
    default_score: float
    sampler: str
    tasks: list
    tuning_seeds: list
    trials: list = field(default_factory=list)        # TuneTrial
    validation: list = field(default_factory=list)    # TuneComparison, one per task (fresh seeds)
    storage: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def default_ranges(params: Mapping[str, float]) -> dict:
    """The search range of each parameter from its default value (see the module docstring)."""
    out = {}
    for name, v in params.items():
        v = float(v)
        if v > 0:
            out[name] = (v / 4.0, v * 4.0)
        elif v < 0:
            out[name] = (v * 4.0, v / 4.0)
        else:
            out[name] = (-1.0, 1.0)
    return out


def make_sampler(name: str, seed: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (optuna's CmaEsSampler needs it)
        except ImportError:
            raise ValueError("the cmaes sampler needs the `cmaes` package (pip install cmaes); "
                             "or use --sampler tpe, gp, qmc or random") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def _suggest(trial, ranges: Mapping[str, tuple], defaults: Mapping[str, float]) -> dict:
    out = {}
    for name, (lo, hi) in ranges.items():
        v = float(defaults[name])
        if v < 0:  # log scale on the magnitude, the sign kept
            out[name] = -trial.suggest_float(f"neg_{name}", -hi, -lo, log=True)
        else:
            out[name] = trial.suggest_float(name, lo, hi, log=v > 0)
    return out


def _distribution_params(params: Mapping[str, float], defaults: Mapping[str, float]) -> dict:
    """Optuna's parameter names and values for enqueuing the given initial values."""
    return {(f"neg_{k}" if float(defaults[k]) < 0 else k): (-float(v) if float(defaults[k]) < 0 else float(v))
            for k, v in params.items()}


def tune_initial_params(candidate: Union[str, Candidate], tasks: Union[str, Sequence[str]] = "mnist1d-mlp",
                        trials: int = 16, batch: int = 4, seeds: int = 2, sampler: str = "tpe",
                        ranges: Optional[Mapping[str, tuple]] = None, seed: int = 0, validate_seeds: int = 3,
                        steps: Optional[int] = None, storage: Optional[str] = None,
                        study_name: str = "actsearch-tune", progress=None,
                        params: Optional[Mapping[str, float]] = None) -> TuneResult:
    """Tune `candidate`'s initial parameter values (see the module docstring).  `candidate`: a Candidate
    or formula text with its parameters' default values in `params`."""
    import optuna

    from actsearch.evaluation import evaluate_many, paired_comparison

    if isinstance(candidate, str):
        candidate = parse_formula(candidate, params=params)
    if not candidate.params:
        raise ValueError(f"{candidate.formula} has no learnable parameters to tune")
    if trials < 1 or batch < 1 or seeds < 1:
        raise ValueError("trials, batch and seeds must be positive")
    defaults = {k: float(v) for k, v in candidate.params.items()}
    rng = default_ranges(defaults)
    for name, r in (ranges or {}).items():
        if name not in defaults:
            raise ValueError(f"unknown parameter {name!r} in ranges; {candidate.formula} has: {', '.join(defaults)}")
        lo, hi = (float(r[0]), float(r[1]))
        if not lo < hi:
            raise ValueError(f"range of {name} must have low < high, got ({lo}, {hi})")
        if (defaults[name] > 0 and lo <= 0) or (defaults[name] < 0 and hi >= 0):
            raise ValueError(f"range of {name} must keep its default's sign (log scale): got ({lo}, {hi}) "
                             f"for default {defaults[name]}")
        rng[name] = (lo, hi)
    task_list = [tasks] if isinstance(tasks, str) else list(tasks)
    seed_list = list(range(seeds))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    existing = 0
    if storage is not None:  # a resumed study: the sampler continues with a new stream, not the old draws
        try:
            existing = len(optuna.load_study(study_name=study_name, storage=storage).trials)
        except KeyError:
            existing = 0
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=make_sampler(sampler, seed + existing), load_if_exists=storage is not None)
    if not study.trials:
        study.enqueue_trial(_distribution_params(defaults, defaults), user_attrs={"default": True})
        study.set_user_attr("formula", candidate.source or candidate.formula)
        study.set_user_attr("tasks", task_list)
        study.set_user_attr("seeds", seed_list)
    # finished trials of a stored study count; unfinished ones (a killed run) are failed and re-asked
    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    done = sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL for t in study.trials)

    def make(params):
        return parse_formula(candidate.source or candidate.formula, params=params)

    # what a candidate id scored: a sampler that proposes initial values already trained (same id) gets
    # the stored result instead of a second training
    known = {t.user_attrs["id"]: (t.value, t.user_attrs) for t in study.trials
             if t.state.is_finished() and "id" in t.user_attrs}
    while done < trials:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        values = [_suggest(t, rng, defaults) for t in asked]
        cands = [make(v) for v in values]
        untrained = list({c.id: c for c in cands if c.id not in known}.values())
        for c, rep in zip(untrained, evaluate_many(untrained, task_list, seed_list, steps=steps) if untrained else []):
            rejected = next((tr["rejected"] for tr in rep["tasks"].values() if tr["rejected"]), None)
            attrs = {"task_scores": {k: tr["score"] for k, tr in rep["tasks"].items()}, "id": c.id}
            if rejected:
                attrs["rejected"] = rejected
            known[c.id] = (None if rejected else rep["score"], attrs)
        for t, v, c in zip(asked, values, cands):
            value, attrs = known[c.id]
            t.set_user_attr("initial_params", v)
            for k in ("task_scores", "id", "rejected"):
                if k in attrs:
                    t.set_user_attr(k, attrs[k])
            if value is None:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, value)
        done += len(asked)
        if progress:
            progress(done, trials)

    finished = [t for t in study.trials if t.state.is_finished()]
    out_trials = [TuneTrial(t.number, t.user_attrs.get("initial_params", {}),
                            t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                            t.user_attrs.get("task_scores", {}), t.user_attrs.get("rejected"),
                            bool(t.user_attrs.get("default"))) for t in finished]
    scored = [t for t in out_trials if t.score is not None]
    if not scored:
        raise ValueError("every trial was rejected (diverged or screened out); narrow the ranges")
    best = max(scored, key=lambda t: (t.score, -t.number))
    default = next((t for t in out_trials if t.default), None)
    default_score = default.score if default is not None and default.score is not None else math.nan

    validation = []
    if validate_seeds > 0:
        from actsearch.validation import fresh_seeds

        fresh = fresh_seeds(validate_seeds)  # validation's seeds: disjoint from the tuning seeds 0..n-1
        pair = [make(best.params), make(defaults)]
        if pair[0].id == pair[1].id:  # the default won: nothing to compare
            validation = [TuneComparison(t, fresh, math.nan, math.nan, 0.0, None, "the default is best")
                          for t in task_list]
        else:
            rb, rd = evaluate_many(pair, task_list, fresh, steps=steps)
            for t in task_list:
                b, d = rb["tasks"][t]["candidate"], rd["tasks"][t]["candidate"]
                cmp = paired_comparison(b["per_seed"], d["per_seed"])
                validation.append(TuneComparison(t, fresh, b["mean"], d["mean"], cmp["diff"], cmp["ci"],
                                                 cmp["verdict"]))
    return TuneResult(candidate.source or candidate.formula, defaults, best.params, best.score, default_score,
                      sampler, task_list, seed_list, out_trials, validation, storage)


__all__ = ["SAMPLERS", "TuneResult", "TuneTrial", "TuneComparison", "default_ranges", "make_sampler",
           "tune_initial_params"]
