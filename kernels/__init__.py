"""actsearch.kernels — sympy -> fused kernels (torch.compile / Triton), compile cache, benchmarks."""
from .cache import KernelCache, default_cache_dir
from .codegen import KernelSource, generate_source
from .fused import (ActivationModule, CompiledKernel, CompilePolicy, FusedActivation, fused_activation,
                    get_kernel, swap_activations)

__all__ = ["KernelCache", "default_cache_dir", "KernelSource", "generate_source", "ActivationModule",
           "CompiledKernel", "CompilePolicy", "FusedActivation", "fused_activation", "get_kernel",
           "swap_activations"]
