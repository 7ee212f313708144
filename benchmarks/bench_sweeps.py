"""Sweeps (``pyldl.sweeps``): many trainings at once on threads, loky processes and a Dask
LocalCluster, beside the same trainings run one after the other the PyLDL way.

- ``Sweep``: 16 configurations of W3 (4 learning rates x 4 widths of the first hidden layer),
  30 epochs each; ``sequential`` is a loop of ``np.random.seed; network(); SGD`` (what users
  write today, BLAS as configured), the others ``pyldl.sweep`` on 2 workers (Dask: 2 processes
  of 1 thread); ``main`` also times ``threads x1``, the sweep on one thread.
- ``Overhead``: 200 W1 configurations of 5 epochs on threads, beside the sum of their SGD calls.

``python -m benchmarks.bench_sweeps`` prints the speed-ups (rounds interleaved, medians) and
checks that every backend and worker count gives bitwise the same losses.
"""

import argparse
import os
import statistics
import time

import pyldl
from pyldl import Linear, MSELoss, Sequential, Sigmoid

from ._cases import parametrize, seeded

LEARNING_RATES = [1e-3, 3e-3, 1e-2, 3e-2]
HIDDEN = [64, 96, 128, 160]  # W3's first hidden layer is 128 wide
EPOCHS = 30
BACKENDS = ["sequential", "threads", "processes", "dask"]
WORKERS = 2


def w3_network(hidden):
    """W3's network (WORKLOADS.md) with a first hidden layer ``hidden`` wide."""
    return Sequential(Linear(64, hidden), Sigmoid(), Linear(hidden, 64), Sigmoid(), Linear(64, 10), Sigmoid())


def w1_network():
    return Sequential(Linear(1, 1))


def w3_configs(n_samples=None, epochs=EPOCHS, hidden=HIDDEN, rates=LEARNING_RATES):
    from pyldl.workloads import WEIGHTS_SEED, WORKLOADS

    X, y = WORKLOADS["W3"].data(n_samples)
    base = {"network": w3_network, "loss": MSELoss(), "X": X, "y": y, "batch_size": 64, "n_iter": epochs}
    return pyldl.grid(base, gradient_step=rates, hidden=hidden, seed=[WEIGHTS_SEED])


def w1_configs(count=200, epochs=5):
    from pyldl.workloads import WORKLOADS

    workload = WORKLOADS["W1"]
    X, y = workload.data()
    base = {"network": w1_network, "loss": MSELoss(), "X": X, "y": y, "batch_size": workload.batch_size}
    return pyldl.grid(base, n_iter=[epochs], gradient_step=[workload.gradient_step], seed=range(count))


def one_after_the_other(configs):
    """The PyLDL way: seed, build, SGD, for each configuration in turn; (losses, SGD seconds)."""
    losses, seconds = [], 0.0
    for c in configs:
        with seeded(c["seed"]):
            network = c["network"](c["hidden"]) if "hidden" in c else c["network"]()
            start = time.perf_counter()
            losses.append(
                pyldl.SGD(
                    network,
                    c["loss"],
                    c["X"],
                    c["y"],
                    c["batch_size"],
                    c["gradient_step"],
                    c["n_iter"],
                    progress=False,
                )
            )
            seconds += time.perf_counter() - start
    return losses, seconds


def _require_sweep():
    if not hasattr(pyldl, "sweep"):
        raise NotImplementedError("this pyldl has no pyldl.sweep")


class Sweep:
    """Seconds for the 16 W3 configurations on each backend (workers started in ``setup``)."""

    params = BACKENDS
    param_names = ["backend"]
    timeout = 300
    rounds = 2
    repeat = (1, 3, 60.0)
    n_samples = None
    epochs = EPOCHS

    def setup(self, backend):
        _require_sweep()
        self.configs = w3_configs(self.n_samples, self.epochs)
        self.client = None
        if backend == "dask":
            from dask.distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            self.client = Client(cluster)
        self.run(backend)  # starts the workers, loads the kernels: never timed

    def run(self, backend):
        if backend == "sequential":
            return one_after_the_other(self.configs)[0]
        results = pyldl.sweep(self.configs, backend, workers=WORKERS, client=self.client, progress=False)
        return [r["losses"] for r in results]

    def teardown(self, backend):
        if self.client is not None:
            cluster = self.client.cluster
            self.client.close()
            cluster.close()

    def time_sweep(self, backend):
        self.run(backend)


class Overhead:
    """200 W1 configurations of 5 epochs: a threads sweep beside the sum of the SGD calls alone."""

    timeout = 120
    count = 200

    def setup(self):
        _require_sweep()
        self.configs = w1_configs(self.count)
        one_after_the_other(self.configs[:2])  # compiles

    def time_sweep_threads(self):
        pyldl.sweep(self.configs, workers=WORKERS, progress=False)

    def track_sgd_seconds(self):
        return one_after_the_other(self.configs)[1]

    track_sgd_seconds.unit = "seconds"


# pytest-benchmark twins (small: 4 configurations, 256 rows, 2 epochs; 20 W1 configurations).


@parametrize("backend", ["sequential", "threads"])
def test_sweep(benchmark, backend):
    suite = Sweep()
    suite.n_samples, suite.epochs = 256, 2
    suite.setup(backend)
    suite.configs = suite.configs[::4]
    try:
        benchmark(suite.time_sweep, backend)
    finally:
        suite.teardown(backend)


def test_overhead(benchmark):
    suite = Overhead()
    suite.count = 20
    suite.setup()
    assert suite.track_sgd_seconds() > 0
    benchmark(suite.time_sweep_threads)


# python -m benchmarks.bench_sweeps: the targets of the sweep issue, measured in one run.


def _median_times(runs, rounds):
    """{name: median seconds} over ``rounds`` rounds, the runs interleaved in a rotating order."""
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    suites = {}
    for backend in BACKENDS:
        suites[backend] = Sweep()
        suites[backend].setup(backend)
    try:
        expected = suites["sequential"].run("sequential")
        identical = {b: s.run(b) == expected for b, s in suites.items()}
        for workers in (1, 3):
            results = pyldl.sweep(suites["threads"].configs, workers=workers, progress=False)
            identical[f"threads x{workers}"] = [r["losses"] for r in results] == expected
        runs = {b: (lambda b=b: suites[b].run(b)) for b in BACKENDS}
        runs["threads x1"] = lambda: pyldl.sweep(suites["threads"].configs, workers=1, progress=False)
        times = _median_times(runs, args.rounds)
    finally:
        for backend, suite in suites.items():
            suite.teardown(backend)
    overhead = Overhead()
    overhead.setup()
    sgd_sums = []
    runs = {
        "sweep": overhead.time_sweep_threads,
        "sgd": lambda: sgd_sums.append(overhead.track_sgd_seconds()),
    }
    overhead_times = _median_times(runs, args.rounds)
    sgd_sum = statistics.median(sgd_sums)

    print(f"{os.cpu_count()} cores, load average {load:.2f} before / {os.getloadavg()[0]:.2f} after")
    print(f"16 W3 configurations x {EPOCHS} epochs, {WORKERS} workers, median of {args.rounds} rounds:")
    for name, seconds in times.items():
        speedup, one = times["sequential"] / seconds, times["threads x1"] / seconds
        print(f"  {name:<10} {seconds:7.3f} s   {speedup:5.2f}x sequential   {one:5.2f}x threads x1")
    print("  bitwise identical to sequential:", ", ".join(f"{k} {v}" for k, v in identical.items()))
    ratio = overhead_times["sweep"] / sgd_sum
    print(
        f"200 W1 configurations x 5 epochs: threads sweep {overhead_times['sweep']:.3f} s, "
        f"sum of SGD calls {sgd_sum:.3f} s: {ratio:.2f}x (target <= 1.5x)"
    )


if __name__ == "__main__":
    main()
