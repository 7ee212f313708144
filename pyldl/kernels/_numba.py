"""The one place that sets Numba's options for every pyldl kernel.

- ``error_model="numpy"``: no zero-division check in float divisions, so loops vectorise.
- no fastmath: NaN and inf must survive (the divergence guard and the error checks need them).
- ``cache=True`` writes compiled code next to the sources (or in ``NUMBA_CACHE_DIR``);
  where no folder is writable Numba refuses to cache, and the kernel quietly compiles
  in memory instead. ``PYLDL_NO_CACHE=1`` turns the cache off.
"""

import os

import numba

OPTIONS = {"error_model": "numpy", "nogil": True}
CACHE = os.environ.get("PYLDL_NO_CACHE", "") in ("", "0")


def jit(func):
    """Compile ``func`` with pyldl's Numba options, cached on disk where possible."""
    if CACHE:
        try:
            return numba.njit(cache=True, **OPTIONS)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return numba.njit(**OPTIONS)(func)
