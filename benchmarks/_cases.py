"""What the asv suites and their pytest-benchmark twins share: the cases and small helpers.

Imports nothing heavy and works without pytest (asv's environments have none).
"""

import contextlib

import numpy as np

try:
    import pytest
except ImportError:  # asv's virtualenvs: the twins are never collected there
    pytest = None

DTYPES = ["float64", "float32"]
WORKLOAD_KEYS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]

# Training paths: the compiled whole-epoch loop, pyldl module by module, plain NumPy.
PATHS = ["fused", "modules", "reference"]

# Rows per workload in asv (None: the full data set of WORKLOADS.md). W6 runs at its
# quick size, 1024 of 8192 rows (4 batches of 256), so one epoch stays under a second;
# the comparison command times it at full size.
ASV_SAMPLES = {"W6": 1024}

# Rows per workload in the pytest twins, which run once in CI: small, for speed.
TWIN_SAMPLES = {"W1": 200, "W2": 400, "W3": 256, "W4": 256, "W5": 32, "W6": 64, "W7": 256}


def parametrize(*args, **kwargs):
    """``pytest.mark.parametrize``, or a no-op where pytest is not installed."""
    return pytest.mark.parametrize(*args, **kwargs) if pytest else (lambda func: func)


@contextlib.contextmanager
def seeded(seed):
    """Seed NumPy's global RNG (PyLDL's Linear draws from it) and restore it afterwards.

    Kept here rather than imported from ``pyldl.workloads``: asv runs these benchmarks
    against older commits too, whose pyldl may not have it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def parse_size(size, sep="x"):
    """``"64x128"`` -> ``(64, 128)``; ``"64x256->100"`` -> ``(64, 256, 100)``."""
    return tuple(int(part) for part in size.replace("->", sep).split(sep))


def random_array(shape, dtype, seed=0, low=None):
    """A seeded standard-normal array (uniform in [low, 1 - low) when ``low`` is given)."""
    rs = np.random.RandomState(seed)
    x = rs.standard_normal(shape) if low is None else rs.uniform(low, 1 - low, shape)
    return x.astype(dtype)


def make_trainer(key, path, dtype, n_samples=None):
    """A :class:`pyldl.optimizers.Trainer` for workload ``key`` on one training path, from the
    workload's initial weights and batches. ``path="fused"`` raises NotImplementedError while
    the fused loop is not built, or the commit's pyldl lacks the workload, which asv reports
    as a skipped benchmark."""
    import pyldl
    import pyldl.reference
    from pyldl.optimizers import Trainer
    from pyldl.workloads import WORKLOADS

    if key not in WORKLOADS:
        raise NotImplementedError(f"workload {key} is not in this version of pyldl.workloads")
    workload = WORKLOADS[key]
    X, y = workload.data(n_samples)
    namespace = pyldl.reference if path == "reference" else pyldl
    return Trainer(
        workload.network(namespace, np.dtype(dtype)),
        workload.loss_module(namespace),
        X,
        y,
        workload.batch_size,
        workload.gradient_step,
        order=workload.permutation(len(X)),
        fused=path == "fused",
    )


def skip_if_not_implemented(func, *args):
    """``func(*args)``, turning NotImplementedError into a pytest skip (with its message)."""
    try:
        return func(*args)
    except NotImplementedError as error:
        pytest.skip(f"not implemented yet: {error}")
