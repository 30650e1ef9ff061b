"""Known-activation catalog and functional nearest-neighbour lookup.

Distance (documented contract): root-mean-square difference of the two functions' outputs on the
1000 clipped N(0,1) probe points (where pre-activations of a normalised network live), both at their
initial parameters, with **no** rescaling of the output.  `affine_distance` additionally allows the
best affine map of the known function's output (a·g+b, least squares) and is reported alongside, since
a following linear layer can absorb such a map; rank by it with `affine=True`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Optional

import numpy as np

from actsearch.catalog_data import CATALOG_ENTRIES
from actsearch.formula import Candidate, parse_formula
from actsearch.identity import PROBE_NORMAL
from actsearch.numeric import evaluate


@dataclass(frozen=True)
class KnownActivation:
    name: str
    title: str
    formula: str
    reference: str
    year: int
    family: str
    params: Mapping[str, float] = field(default_factory=dict)
    torch: Optional[str] = None

    @property
    def candidate(self) -> Candidate:
        return _candidate(self.name)


@dataclass(frozen=True)
class Match:
    name: str
    title: str
    distance: float
    affine_distance: float
    reference: str
    year: int

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "distance": self.distance,
                "affine_distance": self.affine_distance, "reference": self.reference, "year": self.year}


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, KnownActivation]:
    out = {}
    for e in CATALOG_ENTRIES:
        k = KnownActivation(name=e["name"], title=e.get("title", e["name"]), formula=e["formula"],
                            reference=e["reference"], year=int(e["year"]), family=e.get("family", "other"),
                            params=dict(e.get("params", {})), torch=e.get("torch"))
        if k.name in out:
            raise ValueError(f"duplicate catalog name {k.name!r}")
        out[k.name] = k
    return out


@lru_cache(maxsize=None)
def _candidate(name: str) -> Candidate:
    k = load_catalog()[name]
    return parse_formula(k.formula, params=k.params)


@lru_cache(maxsize=1)
def _catalog_matrix():
    cat = load_catalog()
    names = list(cat)
    rows = np.stack([evaluate(_candidate(n).safe_expr, PROBE_NORMAL, cat[n].params) for n in names])
    return names, rows


def nearest_known(candidate: Candidate, k: int = 5, affine: bool = False) -> list[Match]:
    """The k catalog entries closest to `candidate` (see module docstring for the distance)."""
    if candidate.is_tensor_op:
        return []  # the catalog is of scalar activations; normalization layers are compared by task score
    names, G = _catalog_matrix()
    f = evaluate(candidate.safe_expr, PROBE_NORMAL, candidate.params)
    cat = load_catalog()
    with np.errstate(all="ignore"):
        raw = np.sqrt(np.mean((G - f) ** 2, axis=1))
        fc = f - f.mean()
        Gc = G - G.mean(axis=1, keepdims=True)
        gg = np.einsum("ij,ij->i", Gc, Gc)
        a = np.where(gg > 0, Gc @ fc / np.where(gg > 0, gg, 1.0), 0.0)
        aff = np.sqrt(np.mean((fc - a[:, None] * Gc) ** 2, axis=1))
    raw = np.where(np.isfinite(raw), raw, np.inf)
    aff = np.where(np.isfinite(aff), aff, np.inf)
    key = aff if affine else raw
    order = np.lexsort((raw, key))[:k]
    return [Match(names[i], cat[names[i]].title, float(raw[i]), float(aff[i]),
                  cat[names[i]].reference, cat[names[i]].year) for i in order]
