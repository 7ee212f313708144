"""Threads: two threads training two networks at once get exactly what each gets alone; the
products' own threads (panels fixed by the shapes) give the same bits on any count, and how
the count is chosen and capped.

The kernels release the GIL (nogil), so the threads really run kernels side by side. SGD
draws its row order from NumPy's global RNG, whose draws two threads would race for: the
tests give each thread its own permutation, so the only thing left to differ is the kernels.
"""

import math
import os
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest
from conftest import assert_close, seeded

import pyldl
from pyldl import Linear, MSELoss, Sequential, Sigmoid, Softmax, Tanh
from pyldl import threads as _threads
from pyldl.kernels import _blas, modules
from pyldl.kernels import optimizers as fused
from pyldl.reference.losses import bce_epsilon
from pyldl.workloads import WORKLOADS

# the tests of kernels (they release the GIL, run side by side, compile parallel functions);
# the thread choice's own logic is plain Python and runs without the JIT too
compiled_only = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="tests compiled kernels that release the GIL: needs the JIT"
)

EPOCHS, BATCH = 40, 32  # about 0.1 s a training: long enough for the threads to overlap surely
SEEDS = {"A": 1, "B": 2}
_local = threading.local()


@pytest.fixture(autouse=True)
def permutation_per_thread(monkeypatch):
    """``np.random.permutation`` draws from the calling job's own generator."""
    calls = []

    def permutation(n):
        calls.append(_local.seed)
        return np.random.default_rng(_local.seed).permutation(n)

    monkeypatch.setattr(np.random, "permutation", permutation)
    return calls


def job(name, mode, dtype):
    """Everything one thread needs: a network, data and how to train it."""
    seed = SEEDS[name]
    rng = np.random.default_rng(seed)
    X, y = rng.uniform(-1, 1, (384, 16)), rng.uniform(0, 1, (384, 4))
    with seeded(seed):
        network = Sequential(
            Linear(16, 48, dtype=dtype),
            Tanh(),
            Linear(48, 48, dtype=dtype),
            Sigmoid(),
            Linear(48, 4, dtype=dtype),
            Softmax(),
        )
    return {"seed": seed, "mode": mode, "network": network, "X": X, "y": y}


def train(job):
    """Train ``job``'s network; return its losses, parameters and when it ran."""
    _local.seed = job["seed"]
    network, X, y = job["network"], job["X"], job["y"]
    start = time.perf_counter()
    if job["mode"] == "optim":
        optimizer = pyldl.Optim(network, MSELoss(), gradient_step=0.2)
        batches = range(0, len(X), BATCH)
        losses = [optimizer.step(X[i : i + BATCH], y[i : i + BATCH]) for _ in range(EPOCHS) for i in batches]
    else:
        losses = pyldl.SGD(network, MSELoss(), X, y, BATCH, 0.2, EPOCHS, progress=False)
    end = time.perf_counter()
    parameters = [
        getattr(m, name).copy()
        for m in network._modules
        for name in ("_parameters", "_bias")
        if getattr(m, name, None) is not None
    ]
    return {"losses": losses, "parameters": parameters, "span": (start, end)}


def train_concurrently(jobs):
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def run(i):
        try:
            barrier.wait()
            results[i] = train(jobs[i])
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    return results


def assert_identical(got, expected):
    assert got["losses"] == expected["losses"]
    assert len(got["parameters"]) == len(expected["parameters"])
    for a, b in zip(got["parameters"], expected["parameters"], strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@compiled_only
@pytest.mark.parametrize(
    "modes", [("optim", "optim"), ("sgd", "sgd"), ("optim", "sgd")], ids=["optim", "sgd", "mixed"]
)
@pytest.mark.parametrize(
    "dtypes",
    [(np.float64, np.float64), (np.float32, np.float32), (np.float64, np.float32)],
    ids=["float64", "float32", "both"],
)
def test_two_threads_match_one_after_the_other(modes, dtypes, permutation_per_thread):
    def jobs():
        return [job(name, mode, dtype) for name, mode, dtype in zip(SEEDS, modes, dtypes, strict=True)]

    alone = [train(j) for j in jobs()]  # also compiles every kernel before the threads start
    together = train_concurrently(jobs())
    for got, expected in zip(together, alone, strict=True):
        assert_identical(got, expected)
    (start_a, end_a), (start_b, end_b) = (r["span"] for r in together)
    assert start_a < end_b and start_b < end_a, "the two trainings did not overlap"
    if "sgd" in modes:
        assert permutation_per_thread, "SGD no longer draws its order with np.random.permutation"


# ---------------------------------------------------------------- the products' threads


@pytest.mark.parametrize(
    ("m", "n", "k", "count"),
    [
        (64, 128, 128, 2),  # 4 * PANEL_WORK: the least that is cut
        (64, 128, 127, 1),
        (64, 128, 64, 1),  # W3's: two panels on one thread cost more than two threads save
        (64, 100, 256, 2),
        (100, 256, 64, 2),
        (64, 256, 256, 4),  # 4 times that: twice as many panels for every 4 times the work
        (8, 8, 8, 1),
        (64, 4, 100, 1),
        (64, 512, 512, 4),  # at most MAX_PANELS
        (2048, 2048, 256, 4),
        (16, 2048, 2048, 4),
        (12, 9, 100000, 1),  # none narrower than 8
    ],
)
def test_panels_are_fixed_by_the_shape(m, n, k, count):
    assert _blas.panels(m, n, k) == _blas.panel_count(m, n, k) == count  # compiled, and as Python
    assert max(m, n) // count >= 8 and count & (count - 1) == 0  # at least 8 wide, a power of two


@compiled_only
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n", "n_in", "n_out"),
    # 2, 4 and 4 uneven panels; then products too small to be cut (one BLAS call each)
    [(64, 256, 100), (96, 512, 300), (33, 1000, 130), (33, 200, 130), (256, 100, 4), (7, 300, 90)],
)
def test_products_in_panels_give_the_same_bits_on_any_number_of_threads(n, n_in, n_out, dtype):
    rng = np.random.default_rng(0)
    X, W, delta = (rng.standard_normal(s).astype(dtype) for s in ((n, n_in), (n_in, n_out), (n, n_out)))
    b = rng.standard_normal((1, n_out)).astype(dtype)
    exact = [X.astype(float) @ W + b, delta.astype(float) @ W.T.astype(float), X.T.astype(float) @ delta + W]
    numpy = [X @ W + b, delta @ W.T, X.T @ delta + W]
    results = []
    _blas.side_by_side(dtype)
    slot, side_by_side = _blas._SLOTS[np.dtype(dtype)], _blas._SLOTS[np.dtype(dtype)].value
    assert side_by_side  # the parallel function's address
    for threads, address in [
        (1, side_by_side),
        (2, 0),
        (2, side_by_side),
        (3, side_by_side),
        (4, side_by_side),
    ]:
        slot.value = address  # 0: the panels one after another, as before the first two-thread run
        forward, below, gradient = np.empty((n, n_out), dtype), np.empty((n, n_in), dtype), W.copy()
        with _blas.one_thread():
            modules.linear_forward(X, W, b, forward, threads)
            modules.linear_backward_delta(delta, W, below, threads)
            modules.linear_backward_update_gradient(X, delta, gradient, np.empty((1, 0), dtype), threads)
        slot.value = side_by_side
        results.append([forward, below, gradient])
    for got in results[1:]:
        for a, e in zip(got, results[0], strict=True):
            assert a.tobytes() == e.tobytes()
    for got, by_numpy, truth in zip(results[0], numpy, exact, strict=True):
        if dtype == np.float64:
            assert_close(got, by_numpy, "op", dtype)
        else:  # float32's last bits depend on OpenBLAS's kernel, which it picks by the shape
            assert np.abs(got - truth).max() <= 2 * np.abs(by_numpy - truth).max()


@compiled_only
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_callbacks_in_blocks_of_rows_give_the_same_bits_on_any_number_of_threads(dtype):
    rows, cols = 100, 160  # 3 uneven blocks of rows from 3 threads on (16000 // BLOCK_VALUES)
    assert rows * cols // fused.BLOCK_VALUES == 3
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, (rows, cols)).astype(dtype)
    y = rng.integers(0, 2, (rows, cols)).astype(dtype)
    p = rng.uniform(0, 1, (rows, cols)).astype(dtype)
    p.reshape(-1)[::9] = 0  # clipped by BCE
    activations = [fused.TANH, fused.SIGMOID, fused.RELU, fused.SOFTMAX]
    cases = [(fused.FORWARD, a, (x, None)) for a in activations]
    cases += [(fused.BACKWARD, a, (p, x)) for a in activations]
    cases += [(fused.LOSS, loss, (y, p)) for loss in (fused.MSE, fused.BCE)]
    cases += [(fused.LOSS, fused.CROSS_ENTROPY, (y, x))]  # on logits
    eps = float(bce_epsilon(np.dtype(dtype)))
    fused.side_by_side(dtype)
    side_by_side = fused._SIDE_BY_SIDE["callbacks"].ctypes  # what the epoch calls with threads > 1
    module = {fused.MSE: MSELoss(), fused.BCE: pyldl.BCELoss(), fused.CROSS_ENTROPY: pyldl.CrossEntropyLoss()}
    for row, code, (a, b) in cases:
        table = fused.calls(dtype, activations, code if row == fused.LOSS else fused.MSE)
        results = []
        for threads in (1, 2, 3, 4):  # 1: the rows in one call
            out = [a.copy(), np.full_like(a, np.nan) if b is None else b.copy()]
            if row == fused.LOSS:
                terms = rows if code == fused.CROSS_ENTROPY else rows * cols  # one a row, or a value
                out += [np.full_like(a, np.nan), np.full(terms, np.nan, dtype)]  # delta, terms
            addresses = [o.ctypes.data for o in out] + [0] * (4 - len(out))
            value = side_by_side(table[row, code], threads, *addresses, rows, cols, eps)
            results.append([value, *(o.tobytes() for o in out)])
            assert all(np.isfinite(o).all() for o in out), (row, code)  # every block was computed
        assert all(got == results[0] for got in results[1:]), (row, code)
        if row == fused.LOSS:  # bitwise the Loss module's value
            assert dtype(value) == module[code].forward(a, b), code


def usps_like_training(threads, epochs=3, dtype=np.float64):
    workload = WORKLOADS["W9"]
    X, y = workload.data(700)
    network = workload.network(dtype=dtype)
    losses = pyldl.SGD(
        network, workload.loss_module(), X, y, workload.batch_size, workload.gradient_step, epochs,
        order=workload.permutation(len(X)), progress=False, threads=threads,
    )  # fmt: skip
    return losses, [array.tobytes() for array in pyldl.optimizers.Trainer.parameters(_Net(network))]


class _Net:  # Trainer.parameters on a bare network
    def __init__(self, network):
        self.network = network


@compiled_only
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_losses_are_bitwise_the_same_for_any_thread_count(dtype):
    pytest.importorskip("sklearn")
    expected = usps_like_training(1, dtype=dtype)
    for threads in (2, 3, 4, None):
        assert usps_like_training(threads, dtype=dtype) == expected


@compiled_only
def test_losses_are_bitwise_the_same_under_load():
    pytest.importorskip("sklearn")
    expected = usps_like_training(1)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        assert usps_like_training(None, epochs=3) == expected
        assert usps_like_training(2, epochs=3) == expected
    finally:
        for process in busy:
            process.kill()
            process.wait()


def _window(choice, per_row, rows=1):
    """Runs of ``rows`` rows at the kept count, ``per_row`` seconds a row, until its drift is
    checked (from a new window)."""
    runs, seconds = _threads.DRIFT_RUNS * choice.patience, _threads.DRIFT_SECONDS * choice.patience
    for _ in range(max(runs, math.ceil(seconds / (per_row * rows)))):
        choice.record(choice.kept, per_row * rows, rows)


def test_the_choice_takes_turns_keeps_the_fastest_and_measures_again_on_drift():
    choice = _threads._Choice([1, 2, 4])
    seconds = {1: 3.0, 2: 1.0, 4: 2.0}  # per run of 1 row
    turns = []
    for _ in range(3 * (1 + _threads.SAMPLES)):
        count = choice.next()
        turns.append(count)
        # a first run at each count (compiling, starting threads) is slow and not counted
        choice.record(count, 100.0 if turns.count(count) == 1 else seconds[count], 1)
    assert turns[:3] == [1, 2, 4] and sorted(turns) == sorted([1, 2, 4] * (1 + _threads.SAMPLES))
    assert choice.next() == 2 and choice.chosen_at == 1.0
    _window(choice, 1.4, rows=2)  # within DRIFT: kept
    assert choice.kept == 2
    for _ in range(_threads.DRIFT_RUNS - 1):
        choice.record(2, 1.0, 1)
    assert choice.kept == 2  # the window is not complete yet
    choice.record(2, 1.0 + _threads.DRIFT * _threads.DRIFT_RUNS, 1)  # one run stalled: the mean drifts
    assert choice.kept is None
    turns = []
    for _ in range(3 * _threads.SAMPLES):  # no first runs this time: they are warm
        turns.append(choice.next())
        choice.record(turns[-1], {1: 1.0, 2: 5.0, 4: 5.0}[turns[-1]], 1)  # busy now: one thread is best
    assert sorted(turns) == sorted([1, 2, 4] * _threads.SAMPLES)
    assert choice.next() == 1
    _window(choice, 10.0)  # busier still: fewer threads than one cannot help
    assert choice.next() == 1 and choice.kept == 1
    _window(choice, 0.5)  # idle again: more threads may help
    assert choice.kept is None


def test_the_choice_counts_the_runs_that_stall():
    # the median of 2's runs is 0.5, but their mean 3.67: one thread's 1.0 is kept
    runs = {1: [1.0] * _threads.SAMPLES, 2: [0.5, 10.0] + [0.5] * (_threads.SAMPLES - 2)}
    choice = _threads._Choice([1, 2], warm=[1, 2])
    while choice.kept is None:
        count = choice.next()
        choice.record(count, runs[count].pop(0), 1)
    assert choice.kept == 1


def _measure(choice, seconds):
    """Let ``choice`` measure until it keeps a count, each count's runs of 1 row taking
    ``seconds[count]``; the choice."""
    while choice.kept is None:
        count = choice.next()
        choice.record(count, seconds[count], 1)
    return choice


def _chosen(seconds):
    """The count a new choice keeps when each count's runs of 1 row take ``seconds[count]``."""
    return _measure(_threads._Choice(sorted(seconds)), seconds)


def test_measuring_again_for_nothing_makes_the_next_window_longer():
    choice = _chosen({1: 1.0, 2: 2.0})
    assert choice.kept == 1 and choice.patience == 1
    for patience in (1, 2, 4):
        for _ in range(_threads.DRIFT_RUNS * patience - 1):
            choice.record(1, 0.5, 1)  # faster: but the window is not complete yet
        assert choice.kept == 1
        choice.record(1, 0.5, 1)
        assert choice.kept is None  # measure again ...
        _measure(choice, {1: 0.5, 2: 2.0})
        assert choice.kept == 1 and choice.patience == 2 * patience  # ... for nothing
        choice.chosen_at = 1.0
    for _ in range(_threads.DRIFT_RUNS * 8):
        choice.record(1, 0.5, 1)
    _measure(choice, {1: 0.5, 2: 0.2})  # now two threads win: the shortest window again
    assert choice.kept == 2 and choice.patience == 1
    choice = _chosen({1: 1.0, 2: 2.0})
    choice.patience = _threads.MAX_PATIENCE
    _window(choice, 0.5)
    _measure(choice, {1: 0.5, 2: 2.0})
    assert choice.patience == _threads.MAX_PATIENCE


def test_the_choice_keeps_the_fewest_threads_within_the_margin_of_the_fastest():
    close = 1 + _threads.MARGIN * 0.6
    assert _chosen({1: close, 2: 1.0, 4: 0.99}).kept == 1  # 1 within MARGIN of 4's 0.99
    assert _chosen({1: 1.2, 2: close, 4: 1.0}).kept == 2
    assert _chosen({1: 1.2, 2: 1.1, 4: 1.0}).kept == 4


def test_the_choice_waits_for_enough_seconds_of_short_runs():
    choice = _threads._Choice([1, 2])
    for count in (1, 2):
        choice.record(count, 1.0, 1)  # first runs
    runs = 0
    while choice.kept is None:
        count = choice.next()
        choice.record(count, 0.001 if count == 2 else 0.002, 1)
        runs += 1
    assert choice.kept == 2
    assert runs >= 2 * _threads.SAMPLE_SECONDS / 0.002  # both counts timed for SAMPLE_SECONDS


def test_the_setting_the_argument_and_the_environment():
    assert pyldl.get_num_threads() is None
    try:
        pyldl.set_num_threads(2)
        assert pyldl.get_num_threads() == 2
        expected = min(2, _threads.usable_cores(), _blas.blas_threads() or 1)
        with _threads.running(("key",)) as run:
            assert run.threads == expected
        with _threads.running(("key",), threads=1) as run:
            assert run.threads == 1
    finally:
        pyldl.set_num_threads(None)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            pyldl.set_num_threads(bad)
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            pyldl.SGD(
                Sequential(Linear(2, 1)), MSELoss(), np.ones((4, 2)), np.ones((4, 1)), 2, 0.1, 1, threads=bad
            )
    script = "import pyldl; print(pyldl.get_num_threads())"
    env = {**os.environ, "PYLDL_NUM_THREADS": "3"}
    assert (
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True).stdout
        == "3\n"
    )
    env["PYLDL_NUM_THREADS"] = "many"
    failed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert failed.returncode and "PYLDL_NUM_THREADS must be a positive integer or 'auto'" in failed.stderr


@pytest.mark.parametrize(
    ("widths", "threads"),
    [
        ((256, 100), 2),  # 64 x 256 x 100: cut in panels (side by side where two cores are free)
        ((64, 128), 1),  # 64 x 64 x 128: one call, large enough for OpenBLAS's own threads
    ],
)
def test_products_large_enough_for_threads_train_as_the_reference(widths, threads):
    """The paths of Plan.run for such products (the thread choice's, one_thread's) give the
    reference's numbers."""
    X = np.random.default_rng(0).uniform(-1, 1, (128, widths[0]))
    y = np.random.default_rng(1).uniform(0, 1, (128, widths[1]))
    _local.seed, losses = 3, []  # both draw the same order (``permutation_per_thread``)
    for namespace in (pyldl, pyldl.reference):
        with seeded(3):
            net = namespace.Sequential(namespace.Linear(*widths), namespace.Sigmoid())
            if namespace is pyldl:
                losses.append(pyldl.SGD(net, MSELoss(), X, y, 64, 0.1, 3, progress=False, threads=threads))
            else:
                losses.append(namespace.SGD(net, namespace.MSELoss(), X, y, 64, 0.1, 3, progress=False))
    assert_close(losses[0], losses[1], "run", np.float64)


def test_the_environment_setting_is_read_as_a_count_or_auto(monkeypatch):
    for value, expected in (("4", 4), (" 2 ", 2), ("auto", None), ("AUTO", None), ("", None)):
        monkeypatch.setenv("PYLDL_NUM_THREADS", value)
        assert _threads._from_env() == expected
    for bad in ("0", "-2", "1.5", "many"):
        monkeypatch.setenv("PYLDL_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="PYLDL_NUM_THREADS must be a positive integer or 'auto'"):
            _threads._from_env()


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: the threads it may keep busy
        ({"cpu.max": "20000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
        ({}, None),  # no cgroup files (macOS, Windows)
    ],
)
def test_a_containers_cpu_quota_caps_the_cores(tmp_path, files, cpus):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _threads._quota(tmp_path) == cpus


def test_usable_cores_without_cpu_affinity(monkeypatch):  # macOS, Windows
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(_threads, "_quota", lambda: None)
    assert _threads.usable_cores.__wrapped__() == min(os.cpu_count(), numba.config.NUMBA_NUM_THREADS)


def test_candidate_counts_double_up_to_the_cap():
    assert [_threads._candidates(cap) for cap in (1, 2, 3, 4, 6, 8)] == [
        [1],
        [1, 2],
        [1, 2, 3],
        [1, 2, 4],
        [1, 2, 4, 6],
        [1, 2, 4, 8],
    ]


@compiled_only
@pytest.mark.skipif(_blas._THREADS is None, reason="SciPy's BLAS is not OpenBLAS")
def test_blas_limits_a_sweep_and_a_second_run_cap_the_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    try:
        pyldl.set_num_threads(2)
        with threadpoolctl.threadpool_limits(1), _threads.running(("key",)) as run:
            assert run.threads == 1
        with _blas.one_thread(), _threads.running(("key",)) as run:  # as in a sweep
            assert run.threads == 1
        with _threads.running(("key",)) as first, _threads.running(("key",)) as second:
            assert second.threads == 1 and first.threads >= 1
        script = "from pyldl import threads; print(threads.usable_cores())"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        code = (
            "import pyldl; from pyldl import threads\nwith threads.running(('k',), 2) as r: print(r.threads)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout == "1\n"
        if hasattr(os, "sched_setaffinity"):
            one_core = f"import os; os.sched_setaffinity(0, {{0}})\n{script.replace('; ', chr(10))}"
            out = subprocess.run([sys.executable, "-c", one_core], capture_output=True, text=True, check=True)
            assert out.stdout == "1\n"
    finally:
        pyldl.set_num_threads(None)


def test_gnu_openmp_spins_less_unless_the_user_set_its_waiting():
    code = (
        "import ctypes, os, numba\n"
        "from pyldl.kernels import _blas\n"
        "_blas.launch_threads()\n"
        "print(os.environ.get('GOMP_SPINCOUNT'))\n"
        "try:\n"
        "    assert numba.threading_layer() == 'omp'\n"
        "    ctypes.CDLL('libgomp.so.1').omp_display_env(1)\n"
        "except (AssertionError, OSError):\n"
        "    print('not GNU OpenMP')\n"
    )
    for setting, expected in ((None, _blas.SPINCOUNT), ("5000", 5000)):
        env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        if setting:
            env["GOMP_SPINCOUNT"] = setting
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        if "not GNU OpenMP" in out.stdout:
            pytest.skip("Numba's threading layer is not GNU OpenMP here")
        assert out.stdout == f"{setting}\n"  # the environment as it was
        assert f"GOMP_SPINCOUNT = '{expected}'" in out.stderr


@compiled_only
def test_no_threads_in_a_forked_child():
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    code = (
        "import os, pyldl\nfrom pyldl import threads\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    with threads.running(('k',), 2) as r: os._exit(r.threads)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "1\n"


def test_threads_running_elsewhere_leave_out_this_processs_own(tmp_path):
    (tmp_path / "loadavg").write_text("0.52 0.60 0.71 5/321 4242\n")
    for task, state in ((1, "R"), (2, "S"), (3, "R")):
        (tmp_path / "self" / "task" / str(task)).mkdir(parents=True)
        (tmp_path / "self" / "task" / str(task) / "stat").write_text(f"{task} (py thon) {state} 1 2 3\n")
    assert _threads._running_elsewhere(tmp_path) == 3  # 5 running, 2 of them this process's
    (tmp_path / "loadavg").unlink()
    assert _threads._running_elsewhere(tmp_path) == 0  # not told (macOS, Windows): none
