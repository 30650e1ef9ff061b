"""timm's EvoNorm layers as a numeric reference, without importing torchvision.

`import timm.layers` pulls in torchvision (timm.layers.create_norm imports FrozenBatchNorm2d), and the
torchvision wheels on the package index are CUDA builds that do not load beside the pinned CPU torch.
timm is therefore installed with --no-deps (Makefile) and, when `timm.layers` cannot be imported, the
few modules evo_norm.py needs (create_act, activations*, config, typing, trace_utils) are loaded from
timm's own files under a private package name, without running timm/layers/__init__.py.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_PRIVATE = "_actsearch_timm_layers"


def evo_norm_module():
    """timm's layers/evo_norm.py as a module (EvoNorm2dB0, EvoNorm2dS0, ...)."""
    try:
        return importlib.import_module("timm.layers.evo_norm")
    except ImportError:
        pass
    if _PRIVATE + ".evo_norm" in sys.modules:
        return sys.modules[_PRIVATE + ".evo_norm"]
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed (make setup installs it as a test reference)")
    layers_dir = f"{list(spec.submodule_search_locations)[0]}/layers"
    package = types.ModuleType(_PRIVATE)
    package.__path__ = [layers_dir]  # a namespace for timm/layers/*.py that skips its __init__
    sys.modules[_PRIVATE] = package
    return importlib.import_module(_PRIVATE + ".evo_norm")
