"""On-disk compile cache: the project's registry of generated sources plus Inductor's own cache.

Layout of a cache directory (per user by default, per run when a search passes its run directory):
    kernels/<candidate id>.json   generated source (KernelSource) + torch version, so a known formula
                                  skips sympy differentiation/CSE in a new process
    inductor/                     TORCHINDUCTOR_CACHE_DIR: Inductor's FX-graph and C++/Triton
                                  artifacts, so the compile itself is a cache hit
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from actsearch.kernels.codegen import KernelSource


def default_cache_dir() -> Path:
    env = os.environ.get("ACTSEARCH_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actsearch"


def configure_inductor_cache(cache_dir: Path) -> Path:
    """Point Inductor at <cache_dir>/inductor unless the user already chose a directory."""
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir) / "inductor")))
    path.mkdir(parents=True, exist_ok=True)
    return path


class KernelCache:
    def __init__(self, cache_dir: Optional[os.PathLike] = None):
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.kernels = self.dir / "kernels"
        self.kernels.mkdir(parents=True, exist_ok=True)
        self.inductor_dir = configure_inductor_cache(self.dir)

    def _path(self, candidate_id: str) -> Path:
        return self.kernels / f"{candidate_id}.json"

    def load(self, candidate_id: str) -> Optional[KernelSource]:
        import torch

        path = self._path(candidate_id)
        try:
            d = json.loads(path.read_text())
            if d.get("torch") != torch.__version__ or d["source"]["candidate_id"] != candidate_id:
                return None
            return KernelSource.from_dict(d["source"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing, corrupt or older-format entries are regenerated, never trusted

    def store(self, source: KernelSource) -> None:
        import torch

        data = json.dumps({"torch": torch.__version__, "source": source.to_dict()}, indent=1)
        # atomic replace: concurrent workers never read a half-written entry
        fd, tmp = tempfile.mkstemp(dir=self.kernels, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self._path(source.candidate_id))

    def __len__(self) -> int:
        return sum(1 for _ in self.kernels.glob("*.json"))
