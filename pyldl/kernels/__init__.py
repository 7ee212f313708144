"""Numba kernels: pure functions on C-contiguous float32/float64 arrays.

Outputs go to buffers the caller owns; gradients accumulate with ``+=`` as PyLDL requires.
Element-wise kernels take 1-D arrays (callers flatten), row-wise ones 2-D.
"""
