"""pyldl's benchmarks: an asv suite (``bench_*.py``), their pytest-benchmark twins (the
``test_*`` functions in the same files) and the side-by-side comparison (``compare.py``)."""

import os

# Benchmarks time pyldl's defaults: PYLDL_DTYPE=float32 would make every layer built without
# dtype= float32 (here and in the worker processes, which inherit this environment).
os.environ.pop("PYLDL_DTYPE", None)
