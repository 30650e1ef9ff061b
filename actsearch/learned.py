"""What a candidate's learnable parameters became in training, read from its stored evaluation report.

Every evaluation keeps, per task and seed, each learnable parameter's trained value per layer (a float for
a scalar parameter; for a per-channel one in a layer, the channel summary {mean, std, min, q25, median,
q75, max}; actsearch.training.trained_params).  This module pools them for display and export: per
parameter, the values over the seeds and layers of one task (a per-channel entry counts with its median
over channels), summarised by their median and quartiles next to the initial value.  `top` shows it as
``beta 1 -> 1.43``, `report` plots the learned shape beside the initial one, and `export --params
trained` writes the medians (actsearch.export.trained_param_values).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import numpy as np


@dataclass
class PooledParams:
    """The trained values of one task's seeds and layers, pooled per parameter."""
    task: str
    seeds: list
    layers: list                   # the numbers of layers the seeds reported (one entry per distinct count)
    values: dict                   # {name: [value per seed and layer]}

    def describe(self) -> str:
        n_layers = "/".join(str(n) for n in self.layers)
        return (f"median over task {self.task}, seed{'s' if len(self.seeds) > 1 else ''} "
                f"{', '.join(map(str, self.seeds))}; {n_layers} layer{'s' if n_layers != '1' else ''} each")


@dataclass
class LearnedParam:
    name: str
    initial: Optional[float]
    median: float
    q25: float
    q75: float
    n: int                          # values pooled (seeds x layers)
    task: str

    def to_dict(self) -> dict:
        return asdict(self)


def tasks_with_params(report: Mapping) -> list[str]:
    return [name for name, t in (report or {}).get("tasks", {}).items() if t.get("params")]


def pooled_params(report: Mapping, task: Optional[str] = None, default_task: Optional[str] = None) -> PooledParams:
    """The trained values of `task` (default: `default_task` when the report trained it, else the report's
    first task with trained parameters).  A ValueError when there are none (for that task)."""
    tasks = (report or {}).get("tasks", {})
    trained = tasks_with_params(report)
    if task is None:
        task = default_task if default_task in trained else next(iter(trained), None)
        if task is None:
            raise ValueError("the report holds no trained parameters (a candidate without learnable parameters, "
                             "every seed rejected, or a run recorded before trained parameters were kept); "
                             "export the initial values with --params initial")
    elif task not in trained:
        have = ", ".join(trained) or "none"
        why = "was not evaluated on it" if task not in tasks else "has no trained parameters for it"
        raise ValueError(f"the candidate {why}: task {task!r} (tasks with trained parameters: {have})")
    per_seed = tasks[task]["params"]
    values: dict[str, list[float]] = {}
    layers = set()
    for seed_params in per_seed.values():
        for name, per_layer in seed_params.items():
            layers.add(len(per_layer))
            values.setdefault(name, []).extend(
                float(v["median"]) if isinstance(v, Mapping) else float(v) for v in per_layer)
    seeds = sorted(per_seed, key=lambda k: int(k) if str(k).isdigit() else str(k))
    return PooledParams(task, seeds, sorted(layers), values)


def learned_params(report: Mapping, initial: Optional[Mapping[str, float]] = None, task: Optional[str] = None,
                   default_task: Optional[str] = None) -> list[LearnedParam]:
    """Per parameter: initial value, median and quartiles of the trained values; [] without trained values."""
    try:
        pooled = pooled_params(report, task, default_task)
    except ValueError:
        return []
    out = []
    for name, vals in pooled.values.items():
        if not vals:
            continue
        q25, q75 = (float(q) for q in np.quantile(vals, [0.25, 0.75]))
        init = (initial or {}).get(name)
        out.append(LearnedParam(name, None if init is None else float(init), statistics.median(vals), q25, q75,
                                len(vals), pooled.task))
    return out


def learned_text(learned: list, limit: int = 3) -> str:
    """`beta 1 -> 1.43; ...` (at most `limit` parameters, then `+k`)."""
    parts = []
    for p in learned[:limit]:
        start = f"{p.initial:.3g} -> " if p.initial is not None else ""
        parts.append(f"{p.name} {start}{p.median:.3g}")
    more = f"; +{len(learned) - limit}" if len(learned) > limit else ""
    return "; ".join(parts) + more


def learned_values(learned: list) -> dict:
    """{name: trained median}: the parameter values of the learned shape."""
    return {p.name: p.median for p in learned}


__all__ = ["PooledParams", "LearnedParam", "pooled_params", "learned_params", "learned_text", "learned_values",
           "tasks_with_params"]
