"""Training (``pyldl.optimizers``): one epoch of W1-W10 (../shared/WORKLOADS.md, built by
``pyldl.workloads``) on each training path, the cold start of a new process, and the loss
reached after a fixed number of epochs (so that a speed-up that changes results shows up).

Paths: ``fused`` (the compiled whole-epoch loop), ``modules`` (pyldl module by module), ``hand``
(a loop written by hand on pyldl's modules, ``_cases.hand_epoch``),
``reference`` (the plain-NumPy classes). All start from the workload's initial weights and
train on its fixed batches, through :class:`pyldl.optimizers.Trainer` (``hand``: its own
loop, ``_cases.HandTrainer``). W6 runs on 1024 of
its 8192 rows here (``ASV_SAMPLES``); ``python -m benchmarks.compare`` times it in full.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from ._cases import (
    ASV_SAMPLES,
    DTYPES,
    PATHS,
    TWIN_SAMPLES,
    WORKLOAD_KEYS,
    make_trainer,
    parametrize,
    skip_if_not_implemented,
)


class Epoch:
    """Seconds per epoch; the last parameter (path) makes asv print the paths side by side."""

    params = (WORKLOAD_KEYS, DTYPES, PATHS)
    param_names = ["workload", "dtype", "path"]
    timeout = 180
    n_samples = ASV_SAMPLES  # rows per workload (absent: all)

    def setup(self, key, dtype, path):
        self.trainer = make_trainer(key, path, dtype, self.n_samples.get(key))
        self.trainer.epoch()  # compiles (or loads from Numba's cache): never timed

    def time_epoch(self, key, dtype, path):
        self.trainer.epoch()


class FinalLoss:
    """Quality figures after 10 epochs from the initial weights: the 10th epoch's mean batch
    loss, and how much it dropped from the 1st (W4 trains on noise, so its loss barely moves
    from ln 2: the drop is what shows a change there)."""

    params = (["W3", "W4"], DTYPES, PATHS)
    param_names = ["workload", "dtype", "path"]
    unit = "loss"
    timeout = 180
    epochs = 10
    n_samples = {}

    def setup(self, key, dtype, path):
        trainer = make_trainer(key, path, dtype, self.n_samples.get(key))  # fused: may skip
        self.losses = [trainer.epoch() for _ in range(self.epochs)]

    def track_loss_after_10_epochs(self, key, dtype, path):
        return self.losses[-1]

    def track_loss_drop_over_10_epochs(self, key, dtype, path):
        return self.losses[0] - self.losses[-1]


COLD_START = """
import numpy as np
import pytest
import pyldl
from pyldl.optimizers import Trainer
from pyldl.workloads import WORKLOADS
w = WORKLOADS["W3"]
X, y = np.load({X!r}), np.load({y!r})
Trainer(w.network(pyldl), w.loss_module(pyldl), X, y, w.batch_size, w.gradient_step,
        order=w.permutation(len(X))).epoch()
"""


class ColdStart:
    """A new process: ``import pyldl`` plus the first epoch of W3 (the path SGD picks), with
    Numba's cache warm (filled by ``setup``) or empty (a new NUMBA_CACHE_DIR: compiles all)."""

    params = ["warm", "empty"]
    param_names = ["cache"]
    rounds = 1
    repeat = (2, 5, 60.0)
    timeout = 300

    def setup(self, cache):
        self.dir = tempfile.mkdtemp(prefix="pyldl-bench-")
        from pyldl.workloads import WORKLOADS

        X, y = WORKLOADS["W3"].data()
        self.stmt = COLD_START.format(X=self._save("X.npy", X), y=self._save("y.npy", y))
        self.cache = os.path.join(self.dir, "warm-cache")
        if cache == "warm":
            env = {**os.environ, "NUMBA_CACHE_DIR": self.cache}
            env.pop("PYLDL_NO_CACHE", None)
            subprocess.run([sys.executable, "-c", self.stmt], env=env, check=True)

    def _save(self, name, array):
        path = os.path.join(self.dir, name)
        np.save(path, array)
        return path

    def teardown(self, cache):
        shutil.rmtree(self.dir, ignore_errors=True)

    def timeraw_import_and_first_epoch(self, cache):
        """(timed code, untimed set-up) run in a new process."""
        cache_dir = repr(self.cache) if cache == "warm" else f"tempfile.mkdtemp(dir={self.dir!r})"
        setup = textwrap.dedent(f"""
            import os, tempfile
            os.environ.pop("PYLDL_NO_CACHE", None)
            os.environ["NUMBA_CACHE_DIR"] = {cache_dir}
        """)
        return self.stmt, setup


# pytest-benchmark twins: the same suites and cases at small sizes (TWIN_SAMPLES rows);
# run once under --benchmark-disable, for real with --benchmark-enable.


@parametrize("path", PATHS)
@parametrize("dtype", DTYPES)
@parametrize("key", WORKLOAD_KEYS)
def test_epoch(benchmark, key, dtype, path):
    suite = Epoch()
    suite.n_samples = TWIN_SAMPLES
    skip_if_not_implemented(suite.setup, key, dtype, path)
    benchmark(suite.time_epoch, key, dtype, path)


@parametrize("path", PATHS)
@parametrize("dtype", DTYPES)
@parametrize("key", ["W3", "W4"])
def test_final_loss(key, dtype, path):
    suite = FinalLoss()
    suite.n_samples = TWIN_SAMPLES
    skip_if_not_implemented(suite.setup, key, dtype, path)
    assert np.isfinite(suite.track_loss_after_10_epochs(key, dtype, path))
    assert suite.track_loss_drop_over_10_epochs(key, dtype, path) > 0


def test_cold_start(benchmark):
    suite = ColdStart()
    suite.setup("warm")
    try:
        stmt, setup = suite.timeraw_import_and_first_epoch("warm")
        code = setup + stmt
        benchmark.pedantic(subprocess.run, ([sys.executable, "-c", code],), {"check": True}, rounds=1)
    finally:
        suite.teardown("warm")


@parametrize("key", ["W2", "W3", "W7"])
def test_bare_epoch_trains_like_the_reference(key):
    """The yardstick computes what the reference does (losses of two epochs), and refuses what
    it does not know instead of guessing."""
    import pytest

    from pyldl.workloads import WORKLOADS

    from ._cases import bare_epoch, bare_network
    from ._runners import _batches

    workload = WORKLOADS[key]
    X, y = workload.data(TWIN_SAMPLES[key])
    trainer = make_trainer(key, "reference", "float64", TWIN_SAMPLES[key])
    layers = bare_network(workload, np.float64)
    batches = _batches(X, y, workload.permutation(len(X)), workload.batch_size, np.float64)
    for _ in range(2):
        expected = trainer.epoch()
        assert (
            abs(bare_epoch(layers, workload.loss, batches, workload.gradient_step) - expected)
            <= 1e-9 * expected
        )
    for bad_layers, loss in [([*layers, "Softmax"], workload.loss), (layers, "hinge")]:
        with pytest.raises(ValueError, match="bare_epoch knows"):
            bare_epoch(bad_layers, loss, batches, workload.gradient_step)


@parametrize("main", ["benchmarks.against", "benchmarks.threads"])
def test_a_spawned_base_worker_imports_the_base_tree(main):
    """Their workers are spawned: each first imports the parent's main module. Were that module
    to import pyldl, a base commit's worker would run this tree's pyldl instead of the base's
    (``benchmarks.against`` compared this tree with itself so)."""
    code = f"import sys, {main}; print('pyldl' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
