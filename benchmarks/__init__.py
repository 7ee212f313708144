"""pyldl's benchmarks: an asv suite (``bench_*.py``), their pytest-benchmark twins (the
``test_*`` functions in the same files) and the side-by-side comparison (``compare.py``)."""
