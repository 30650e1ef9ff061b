"""On-disk compile cache: the project's registry of generated sources plus Inductor's own cache.

Layout of a cache directory (per user by default, per run when a search passes its run directory):
    kernels/<candidate id>.json   generated source (KernelSource) + torch version, so a known formula
                                  skips sympy differentiation/CSE in a new process
    compiled/<torch>-<cpu>/<id>/  traced graphs (kernels.inductor.TracedGraph: Inductor's module source
                                  and size guards), one file per function and shape pattern, and
                                  AOT-precompiled functions (torch.compile(...).aot_compile) for calls
                                  that cannot use them; loaded without tracing; keyed by torch version
                                  and CPU capability (the code is built -march=native)
    inductor/                     TORCHINDUCTOR_CACHE_DIR: Inductor's FX-graph and C++/Triton
                                  artifacts, so the compile itself is a cache hit
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from actsearch.kernels.codegen import CODEGEN_VERSION, KernelSource
from actsearch.kernels import torch_compat
from actsearch.kernels.inductor import TracedGraph, compile_fused


def default_cache_dir() -> Path:
    env = os.environ.get("ACTSEARCH_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actsearch"


def configure_inductor_cache(cache_dir: Path) -> Path:
    """Inductor's directory for actsearch's compiles: the user's TORCHINDUCTOR_CACHE_DIR when set, else
    <cache_dir>/inductor, given to Inductor only within actsearch's compiles (torch_compat.compile_scope:
    the process's environment, and with it the user's own torch.compile, is left alone)."""
    from actsearch.kernels import torch_compat

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    path = Path(chosen) if chosen else Path(cache_dir) / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    if not chosen:
        torch_compat.use_inductor_cache_dir(path)
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
            if (d.get("torch") != torch.__version__ or d.get("codegen") != CODEGEN_VERSION
                    or d["source"]["candidate_id"] != candidate_id):
                return None
            return KernelSource.from_dict(d["source"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing, corrupt or older-format entries are regenerated, never trusted

    def store(self, source: KernelSource) -> None:
        import torch

        data = json.dumps({"torch": torch.__version__, "codegen": CODEGEN_VERSION, "source": source.to_dict()},
                          indent=1)
        # atomic replace: concurrent workers never read a half-written entry
        fd, tmp = tempfile.mkstemp(dir=self.kernels, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self._path(source.candidate_id))

    def _compiled_dir(self, candidate_id: str) -> Path:
        import platform

        import torch

        cpu = f"{platform.machine()}-{torch.backends.cpu.get_cpu_capability()}"
        return self.dir / "compiled" / f"torch{torch.__version__}-{cpu}-g{CODEGEN_VERSION}" / candidate_id

    def precompiled(self, candidate_id: str, name: str, signature: tuple, fn, example_args,
                    elementwise: bool = False):
        """A compiled function for this signature: loaded from disk, or AOT-compiled now and saved.
        None when AOT compilation is unavailable or fails (callers then use plain torch.compile)."""
        import hashlib

        if not torch_compat.active("aot_precompile"):
            return None  # an experimental API, off with ACTSEARCH_TORCH_PRIVATE=0
        tag = hashlib.blake2b(repr(signature).encode(), digest_size=6).hexdigest()
        path = self._compiled_dir(candidate_id) / f"{name}-{tag}.aot"
        if path.exists():
            try:
                with open(path, "rb") as fh:
                    return torch_compat.load_compiled_function(fh)
            except Exception:  # noqa: BLE001 - corrupt or incompatible artifact: rebuild it
                pass
        try:
            compiled = torch_compat.aot_compile(compile_fused(fn, elementwise), example_args)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            compiled.save_compiled_function(str(tmp))
            os.replace(tmp, path)  # atomic: concurrent workers never load a half-written artifact
            return compiled
        except Exception:  # noqa: BLE001 - an experimental API; plain torch.compile is the fallback
            return None

    def _traced_path(self, candidate_id: str, name: str, pattern: tuple) -> Path:
        import hashlib

        tag = hashlib.blake2b(repr(pattern).encode(), digest_size=6).hexdigest()
        return self._compiled_dir(candidate_id) / f"{name}-{tag}.graphs.json"

    def traced_graphs(self, candidate_id: str, name: str, pattern: tuple) -> list:
        """The traced graphs (kernels.inductor.TracedGraph) saved for this function and shape pattern;
        [] when none are saved or the file is unreadable (they are then compiled again)."""
        try:
            d = json.loads(self._traced_path(candidate_id, name, pattern).read_text())
            if d.get("pattern") != json.loads(json.dumps(pattern)):
                return []
            return [TracedGraph.from_dict(g) for g in d["graphs"]]
        except Exception:  # noqa: BLE001 - missing, corrupt, other torch, failed load: compile again
            return []

    def store_traced_graphs(self, candidate_id: str, name: str, pattern: tuple, graphs: list) -> None:
        path = self._traced_path(candidate_id, name, pattern)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"pattern": pattern, "graphs": [g.to_dict() for g in graphs]}, fh)
            os.replace(tmp, path)  # atomic: concurrent workers never read a half-written file
        except OSError:
            pass  # a read-only cache still compiles; the graphs just are not kept

    def __len__(self) -> int:
        return sum(1 for _ in self.kernels.glob("*.json"))
