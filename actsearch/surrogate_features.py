"""Training-free features of a candidate activation function, for the surrogate strategy.

In the spirit of AQuaSurF (Bingham & Miikkulainen 2023, "Efficient Activation Function Optimization
through Surrogate Modeling"), which regresses a network's accuracy on the function's outputs at
N(0,1) points and on statistics of a network at initialisation, a candidate is described, without any
training, by (`FEATURE_NAMES`, `FEATURE_DIM` = 147 numbers):

* ``f``  (70): its protected form (`Candidate.safe_expr`, what screening, the catalog and the kernels
  evaluate) at `PROBE_POINTS`: the 64 quantiles (i + 1/2)/64 of N(0,1) (where pre-activations of a
  normalised network live, as the catalog's N(0,1) probes) and the six points -6, -4, -3, 3, 4, 6
  (behaviour away from 0), at the candidate's initial parameters;
* ``df`` (70): its first derivative at the same points, as a central difference of the protected form
  (step `DERIVATIVE_STEP` = 1e-4).  Not `Candidate.safe_derivative` (which screening evaluates): sympy's
  symbolic differentiation costs 4 ms per pangaea candidate and 13 ms per tree candidate (2 loaded CPU
  cores), twenty times everything else, and a surrogate featurises thousands of candidates.  The two
  agree to ~1e-6 (the rounding below) wherever the function is smooth; no probe point is 0, where most
  kinks are;
* ``mlp`` (7): AQuaSurF-like statistics of a tiny random network at initialisation: three 16-wide
  layers h = a W (W ~ N(0, 1/16), fixed seed) on 64 N(0,1) inputs, a = f(h); the mean and standard
  deviation of each layer's activations, and log(|input gradient| / |output gradient|) of a fixed random
  output gradient backpropagated through the derivative (a cheap stand-in for AQuaSurF's Fisher
  information eigenvalues: whether gradients vanish or explode).  About 1 ms per candidate.

Robustness: every value is clipped to +-`CLIP` (1e3), NaN becomes 0, and values are rounded to 20
mantissa bits (`identity.quantize`), so that two spellings of one function that sympy happens to
structure differently give identical features (the canonical form's tidy-up is time-bounded).
Features are a pure function of the candidate: `genome_features` caches them per (formula text,
parameters) -> candidate id and per candidate id, in module-level caches shared by every strategy of
the process (genomes of one candidate share their features).  A candidate that cannot be built or
evaluated has features None.  `standardise` scales each feature to zero mean and unit standard
deviation over a matrix of candidates (constant features stay 0).

Tensor (normalization-activation) candidates (the evonorm space) are evaluated on the same 70 probe
points arranged as a (2, 5, 7) tensor (N, C, L), so their moments are moments of the probes, and the
slope is the directional derivative along all points at once; the tiny MLP's (64, 16) activations are
an (N, C) tensor to them (batch moments per unit).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy.special import ndtri

from actsearch.formula import parse_formula
from actsearch.identity import quantize
from actsearch.numeric import evaluate

CLIP = 1e3
DERIVATIVE_STEP = 1e-4
FEATURE_SEED = 20230601

PROBE_QUANTILES = ndtri((np.arange(64) + 0.5) / 64)                     # 64 quantiles of N(0,1), |x| <= 2.66
PROBE_FAR = np.array([-6.0, -4.0, -3.0, 3.0, 4.0, 6.0])
PROBE_POINTS = np.concatenate([PROBE_QUANTILES, PROBE_FAR])
TENSOR_PROBE_SHAPE = (2, 5, 7)  # the probe points as an (N, C, L) tensor, for layers

_N_LAYERS, _WIDTH, _BATCH = 3, 16, 64
_mlp_rng = np.random.default_rng(FEATURE_SEED)
_MLP_INPUT = _mlp_rng.standard_normal((_BATCH, _WIDTH))
_MLP_WEIGHTS = [_mlp_rng.standard_normal((_WIDTH, _WIDTH)) / np.sqrt(_WIDTH) for _ in range(_N_LAYERS)]
_MLP_GRAD_OUT = _mlp_rng.standard_normal((_BATCH, _WIDTH))

FEATURE_NAMES = ([f"f({p:.3f})" for p in PROBE_POINTS] + [f"df({p:.3f})" for p in PROBE_POINTS]
                 + [f"mlp_{s}{k}" for k in range(1, _N_LAYERS + 1) for s in ("mean", "std")]
                 + ["mlp_log_grad_ratio"])
FEATURE_DIM = len(FEATURE_NAMES)


def _robust(v: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)


def _value_and_slope(expr, x: np.ndarray, params, tensor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and the central difference (f(x + h) - f(x - h)) / 2h, in one evaluation (elementwise
    candidates) or three (`tensor`: a layer, whose moments couple the points)."""
    h = DERIVATIVE_STEP
    if tensor:
        f, lo, hi = (np.broadcast_to(evaluate(expr, x + dx, params), np.shape(x)) for dx in (0.0, -h, h))
        with np.errstate(all="ignore"):
            return f, (hi - lo) / (2 * h)
    flat = np.ravel(x)
    v = evaluate(expr, np.concatenate([flat, flat - h, flat + h]), params)
    n = flat.size
    f, lo, hi = v[:n], v[n:2 * n], v[2 * n:]
    with np.errstate(all="ignore"):
        slope = (hi - lo) / (2 * h)
    return f.reshape(np.shape(x)), slope.reshape(np.shape(x))


def _mlp_stats(expr, params, tensor: bool = False) -> np.ndarray:
    stats, slopes = [], []
    a = _MLP_INPUT
    for w in _MLP_WEIGHTS:
        f, d = _value_and_slope(expr, a @ w, params, tensor)
        a, d = _robust(f), _robust(d)
        stats += [a.mean(), a.std()]
        slopes.append(d)
    g = _MLP_GRAD_OUT
    for w, d in zip(reversed(_MLP_WEIGHTS), reversed(slopes)):
        g = (g * d) @ w.T
    with np.errstate(all="ignore"):
        ratio = np.log((np.linalg.norm(g) + 1e-30) / np.linalg.norm(_MLP_GRAD_OUT))
    stats.append(np.clip(np.nan_to_num(ratio, nan=0.0), -100.0, 100.0))
    return np.asarray(stats, dtype=np.float64)


def candidate_features(candidate: Any) -> Optional[np.ndarray]:
    """The FEATURE_DIM features of a Candidate (see the module docstring); None if it cannot be evaluated."""
    try:
        expr, params = candidate.safe_expr, dict(candidate.params)
        tensor = candidate.is_tensor_op
        probe = PROBE_POINTS.reshape(TENSOR_PROBE_SHAPE) if tensor else PROBE_POINTS
        f, d = _value_and_slope(expr, probe, params, tensor)
        out = np.concatenate([_robust(f).ravel(), _robust(d).ravel(), _mlp_stats(expr, params, tensor)])
    except Exception:  # noqa: BLE001 -- an unevaluable candidate is data (features None), whatever the reason
        return None
    if out.shape != (FEATURE_DIM,):  # e.g. a tensor op whose moments changed the shape
        return None
    out = quantize(out)
    out[~np.isfinite(out)] = 0.0
    return out


# --------------------------------------------------------------------------- caches, shared by every strategy

CACHE_LIMIT = 100_000                              # entries per cache (about 1.2 KB each); oldest evicted
_ID_BY_FORMULA: dict[tuple, Optional[str]] = {}    # (formula, params) -> candidate id (None: not buildable)
_FEATURES_BY_ID: dict[str, Optional[np.ndarray]] = {}


def _remember(cache: dict, key, value) -> None:
    if len(cache) >= CACHE_LIMIT:
        del cache[next(iter(cache))]
    cache[key] = value


def formula_key(space: Any, genome: Any) -> Optional[tuple]:
    """The key of the in-process caches (and of feature files): (formula text, sorted parameters); None
    when the genome is not one of the space's."""
    try:
        params = space.params(genome) if hasattr(space, "params") else {}
        return (space.formula(genome), tuple(sorted((params or {}).items())))
    except Exception:  # noqa: BLE001
        return None


def _build_candidate(space: Any, genome: Any):
    builder = getattr(space, "candidate", None)
    if builder is not None:
        return builder(genome)
    params = space.params(genome) if hasattr(space, "params") else None  # duck-typed spaces
    return parse_formula(space.formula(genome), params=params or None)


def genome_features(space: Any, genome: Any) -> tuple[Optional[str], Optional[np.ndarray]]:
    """(candidate id, features) of a genome of `space`; (None, None) when its candidate cannot be built,
    (id, None) when it cannot be evaluated.  Cached (see the module docstring): the cache assumes, as
    `SearchSpace.candidate` does, that a candidate is determined by the genome's formula text and
    parameters.  The returned array is shared: do not modify it."""
    key = formula_key(space, genome)
    if key is None:  # not a genome of this space: unknown
        return None, None
    if key in _ID_BY_FORMULA:
        cid = _ID_BY_FORMULA[key]
        return cid, (_FEATURES_BY_ID.get(cid) if cid is not None else None)
    candidate = None
    try:
        candidate = _build_candidate(space, genome)
        cid = candidate.id
    except Exception:  # noqa: BLE001
        cid = None
    _remember(_ID_BY_FORMULA, key, cid)
    if cid is None:
        return None, None
    if cid not in _FEATURES_BY_ID:
        _remember(_FEATURES_BY_ID, cid, candidate_features(candidate))
    return cid, _FEATURES_BY_ID.get(cid)


def clear_caches() -> None:
    _ID_BY_FORMULA.clear()
    _FEATURES_BY_ID.clear()


def standardise(matrix: np.ndarray) -> np.ndarray:
    """Each column scaled to mean 0 and standard deviation 1 over the rows (a constant column becomes 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.size == 0:
        return m.copy()
    mean = m.mean(axis=0)
    std = m.std(axis=0)
    return (m - mean) / np.where(std > 1e-12, std, 1.0)


__all__ = ["PROBE_POINTS", "FEATURE_NAMES", "FEATURE_DIM", "candidate_features", "genome_features", "standardise",
           "clear_caches"]


# --------------------------------------------------------------------------- on disk, per finite space

def _code_signature() -> str:
    """A hash of the sources a candidate's id and features depend on (formula core, identity, primitives,
    this module): a cache written by other code is never read."""
    import hashlib
    import inspect

    from actsearch import formula, identity, numeric
    from actsearch.primitives import functions, registry

    h = hashlib.blake2b(digest_size=8)
    for mod in (formula, identity, numeric, functions, registry, __import__(__name__, fromlist=["_"])):
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()


def space_cache_path(space: Any, keys: list) -> Optional[Any]:
    """<cache dir>/surrogate/<space>-<hash>.npz for a finite space whose genomes' (formula, params) keys
    are `keys` (the hash covers them and the code signature), None when no cache directory is usable."""
    import hashlib
    import json
    from pathlib import Path

    from actsearch.kernels.cache import default_cache_dir

    h = hashlib.blake2b(digest_size=10)
    h.update(_code_signature().encode())
    h.update(json.dumps(keys, default=str).encode())
    try:
        return Path(default_cache_dir()) / "surrogate" / f"{getattr(space, 'name', 'space') or 'space'}-{h.hexdigest()}.npz"
    except Exception:  # noqa: BLE001 -- no home directory and the like: no persistent cache
        return None


def space_feature_file(space: Any, genomes: list) -> tuple[Optional[Any], list]:
    """(the feature file of a finite space, or None when no cache directory is usable; the genomes'
    formula keys), computed once for `load_space_features` and `save_space_features`."""
    keys = [formula_key(space, g) for g in genomes]
    return space_cache_path(space, keys), keys


def load_space_features(path: Optional[Any]) -> int:
    """Fill the in-process caches from a space's feature file (`space_feature_file`), if it exists;
    returns how many genomes it covered (0 without a usable file)."""
    import json

    if path is None or not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_keys, cids, feats = json.loads(str(data["keys"])), data["cids"], data["features"]
    except Exception:  # noqa: BLE001 -- a damaged cache file is ignored (and rewritten)
        return 0
    for key, cid, f in zip(stored_keys, cids, feats):
        key = (key[0], tuple((k, v) for k, v in key[1]))
        cid = str(cid) or None
        _remember(_ID_BY_FORMULA, key, cid)
        if cid is not None and cid not in _FEATURES_BY_ID:
            _remember(_FEATURES_BY_ID, cid, None if np.isnan(f).all() else f)
    return len(stored_keys)


def save_space_features(path: Optional[Any], keys: list) -> Optional[str]:
    """Write the (formula, params) -> (candidate id, features) of every genome of a finite space (`keys`,
    whose features are in the in-process caches) to its feature file `path` (atomically); the next
    process that enumerates the same space with the same code reads it instead of parsing and
    featurising each genome again (about 12 s for PANGAEA's 5,103 genomes on 2 loaded cores)."""
    import json
    import os
    import tempfile

    if path is None or any(k is None or k not in _ID_BY_FORMULA for k in keys):
        return None
    cids = [_ID_BY_FORMULA[k] for k in keys]
    feats = np.stack([_FEATURES_BY_ID.get(c) if c is not None and _FEATURES_BY_ID.get(c) is not None
                      else np.full(FEATURE_DIM, np.nan) for c in cids])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, keys=np.array(json.dumps(keys)), cids=np.array([c or "" for c in cids]),
                                features=feats)
        os.replace(tmp, path)
    except OSError:  # a read-only cache directory: no persistent cache, nothing else changes
        return None
    return str(path)
