"""Alias of :mod:`pyldl.layers` (the name later versions of PyLDL use)."""

from .layers import *  # noqa: F403
from .layers import __all__  # noqa: F401
