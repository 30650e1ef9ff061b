"""actsearch.search_spaces — how candidates are generated and mutated (issue #5; evonorm: issue #17; families, polynorm: issue #18)."""
from __future__ import annotations

import inspect

from .base import Genome, SearchSpace
from .evonorm import EvoNormSpace
from .families import FamiliesSpace, PolyNormSpace
from .pangaea import PangaeaSpace, dedup_report
from .swish import SwishSpace
from .tree import TreeSpace

SPACES: dict[str, type[SearchSpace]] = {"swish": SwishSpace, "pangaea": PangaeaSpace, "tree": TreeSpace,
                                        "evonorm": EvoNormSpace, "families": FamiliesSpace,
                                        "polynorm": PolyNormSpace}


def get_space(name: str, **options) -> SearchSpace:
    """Instantiate the search space registered as `name` with its options (ValueError for an unknown name,
    an unknown option or an invalid option value)."""
    try:
        cls = SPACES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown search space {name!r}; valid names: {', '.join(sorted(SPACES))}") from None
    accepted = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(k for k in options if k not in accepted)
        if unknown:
            valid = ", ".join(n for n, p in accepted.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for search space {name!r}; "
                             f"valid options: {valid or 'none'}")
    return cls(**options)


__all__ = ["Genome", "SearchSpace", "SPACES", "get_space", "SwishSpace", "PangaeaSpace", "TreeSpace",
           "EvoNormSpace", "FamiliesSpace", "PolyNormSpace", "dedup_report"]
