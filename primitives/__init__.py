"""actsearch.primitives — the grammar's vocabulary (see registry.py)."""
from .functions import CUSTOM_FUNCTIONS, MOMENT_FUNCTIONS, Moment, sigmoid, sinc, softplus
from .registry import (EPS, GUARD_EPS, PRIMITIVES, Cost, Primitive, get_primitive, primitive_names, protect,
                       vocabulary)

__all__ = ["CUSTOM_FUNCTIONS", "MOMENT_FUNCTIONS", "Moment", "sigmoid", "sinc", "softplus", "EPS", "GUARD_EPS",
           "PRIMITIVES", "Cost", "Primitive", "get_primitive", "primitive_names", "protect", "vocabulary"]
