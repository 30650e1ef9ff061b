"""actsearch.kernels — sympy -> fused kernels, compile cache, benchmarks (issue #3)."""
