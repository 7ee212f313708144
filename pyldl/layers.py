"""Containers: Sequential and AutoEncoder.

They only route arrays between modules, so they are shared with the plain-NumPy reference;
the compiled fast path for a whole network lives in :mod:`pyldl.optimizers`.
"""

from .reference.layers import AutoEncoder, Sequential

__all__ = ["AutoEncoder", "Sequential"]
