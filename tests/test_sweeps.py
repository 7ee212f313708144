"""Sweeps (``pyldl.sweeps``): many trainings on threads, loky processes and real Dask clusters.

Every result must equal, bitwise, the PyLDL way run alone (``np.random.seed(seed); net =
network(); SGD(...)``), whatever the backend and the number of workers. Faults (divergence,
exceptions, bad input, Ctrl-C, a Dask worker killed mid-sweep) are real, not mocked. Dask
clusters cost seconds: one in-process LocalCluster runs in every CI run, the process-based ones
(and loky) only in the full run (``slow``).
"""

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import seeded

import pyldl
from pyldl import Linear, MSELoss, Sequential, Sigmoid, Tanh
from pyldl.sweeps import plot, to_frame

distributed = pytest.importorskip("dask.distributed")
threadpoolctl = pytest.importorskip("threadpoolctl")

_rs = np.random.RandomState(0)
X = _rs.uniform(-1, 1, (48, 4))
Y = (X[:, :2] > 0).astype(float)


def mlp(hidden, dtype=np.float64):
    return Sequential(Linear(4, hidden, dtype=dtype), Tanh(), Linear(hidden, 2, dtype=dtype), Sigmoid())


BASE = {"network": mlp, "loss": MSELoss(), "X": X, "y": Y, "batch_size": 16, "n_iter": 8}


def configs(n_seeds=2):
    return pyldl.grid(BASE, gradient_step=[0.05, 0.5], hidden=[3, 8], seed=list(range(n_seeds)))


SGD_ARGUMENTS = ("loss", "X", "y", "batch_size", "gradient_step", "n_iter")


def alone(config):
    """The PyLDL way: seed, build, SGD (which draws its own permutation); the RNG put back.
    Returns the trained network and its losses."""
    with seeded(config["seed"]):
        network = config["network"](config["hidden"])
        return network, pyldl.SGD(network, *(config[name] for name in SGD_ARGUMENTS), progress=False)


def assert_same_as_alone(results, configs):
    assert len(results) == len(configs)
    for result, config in zip(results, configs, strict=True):
        assert result["status"] == "ok", result["error"]
        assert result["losses"] == alone(config)[1]  # bitwise: lists of Python floats
        assert result["final_loss"] == result["losses"][-1]
        for name in ("seed", "gradient_step", "hidden", "batch_size", "n_iter"):
            assert result[name] == config[name]
        assert result["network"] == "mlp" and result["loss"] == "MSELoss"


def blas_threads():
    """Thread counts of SciPy's BLAS library (the kernels' gemm)."""
    blas = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    scipys = [info for info in blas if "scipy" in os.path.basename(os.path.dirname(info["filepath"]))]
    assert scipys, blas
    return {info["num_threads"] for info in scipys}


def test_grid_varies_the_first_keyword_slowest():
    got = pyldl.grid({"a": 0, "b": 1}, b=[2, 3], c=(4, 5))
    assert got == [
        {"a": 0, "b": 2, "c": 4},
        {"a": 0, "b": 2, "c": 5},
        {"a": 0, "b": 3, "c": 4},
        {"a": 0, "b": 3, "c": 5},
    ]
    assert pyldl.grid(c=range(2)) == [{"c": 0}, {"c": 1}]
    with pytest.raises(TypeError, match="b= must be a list"):
        pyldl.grid({}, b=0.1)
    with pytest.raises(TypeError, match="b= must be a list"):
        pyldl.grid({}, b="abc")


def test_sgd_takes_its_row_order():
    config = {**configs(1)[0], "seed": 5}
    _, expected = alone(config)
    with seeded(5):
        network = mlp(config["hidden"])
        order = np.random.permutation(len(X))
        state = np.random.get_state()
        losses = pyldl.SGD(network, *(config[name] for name in SGD_ARGUMENTS), progress=False, order=order)
        after = np.random.get_state()
        assert np.array_equal(after[1], state[1]) and after[2] == state[2]  # SGD drew nothing
    assert losses == expected


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threads_match_the_pyldl_way_bitwise(workers):
    cs = configs()
    state = np.random.get_state()
    results = pyldl.sweep(cs, workers=workers, progress=workers == 2)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state[1:], after[1:], strict=True))  # RNG untouched
    assert_same_as_alone(results, cs)


def test_float32_networks_and_loss_factories():
    cs = pyldl.grid(BASE, gradient_step=[0.1], hidden=[5], seed=[3, 4])
    cs = [{**c, "network": functools.partial(mlp, dtype=np.float32), "loss": MSELoss} for c in cs]
    results = pyldl.sweep(cs, workers=2, progress=False)
    for result, c in zip(results, cs, strict=True):
        assert result["status"] == "ok" and result["losses"] == alone({**c, "loss": MSELoss()})[1]
        assert result["network"] == "mlp(dtype=<class 'numpy.float32'>)" and result["loss"] == "MSELoss"


@dataclasses.dataclass
class Config:
    network: object
    loss: object
    X: object
    y: object
    batch_size: int
    gradient_step: float
    n_iter: int
    seed: int
    hidden: int


def test_dataclass_configurations():
    cs = configs(1)
    results = pyldl.sweep([Config(**c) for c in cs], progress=False)
    assert_same_as_alone(results, cs)


def test_blas_runs_on_one_thread_during_a_threads_sweep():
    seen, before = [], blas_threads()

    def network(hidden):
        seen.append(blas_threads())
        return mlp(hidden)

    results = pyldl.sweep([{**c, "network": network} for c in configs(1)], workers=2, progress=False)
    assert [r["status"] for r in results] == ["ok"] * 4
    assert seen == [{1}] * 4  # SciPy's OpenBLAS, the kernels' gemm
    assert blas_threads() == before


def linear_network():
    return Sequential(Linear(4, 2))


def failing_network(hidden):
    raise RuntimeError(f"no network of width {hidden}")


def test_faults_are_recorded_and_the_sweep_goes_on():
    good = configs(1)
    faulty = [
        {**BASE, "network": linear_network, "seed": 0, "gradient_step": 1e6},  # diverges
        {**good[0], "network": failing_network},  # raises
        {**good[0], "y": Y[:, :1]},  # y does not fit the network's output
        {**good[0], "seed": "zero"},
        {**good[0], "losses": []},  # a result name used as a parameter
        {"network": mlp},  # keys missing
        42,  # not a configuration at all
    ]
    with np.errstate(over="ignore", invalid="ignore"):  # NUMBA_DISABLE_JIT=1: NumPy sees the overflow
        results = pyldl.sweep(faulty[:3] + good + faulty[3:], workers=2, progress=False)
    diverged, raised, bad_y = results[:3]
    assert_same_as_alone(results[3:7], good)
    assert diverged["status"] == "diverged" and diverged["error"].startswith(
        "DivergenceError: training diverged"
    )
    assert not np.isfinite(diverged["final_loss"]) and len(diverged["losses"]) >= 1
    assert raised["status"] == "error" and raised["error"] == "RuntimeError: no network of width 3"
    assert raised["network"] == "failing_network" and raised["losses"] == []
    assert bad_y["status"] == "error" and bad_y["error"].startswith("DimensionMismatchError")
    bad_seed, reserved, missing, foreign = results[7:]
    assert bad_seed["error"] == "ValueError: seed must be an integer, got 'zero'"
    assert reserved["error"] == "ValueError: the configuration uses result names ['losses'] as parameters"
    assert missing["error"].startswith("ValueError: the configuration lacks ['loss', 'X', 'y'")
    assert missing["network"] == "mlp"
    assert foreign["error"] == "TypeError: a configuration is a dict or a dataclass, got int"
    assert {r["status"] for r in results[7:]} == {"error"}


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        pyldl.sweep([], backend="gpu")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        pyldl.sweep([], workers=0)
    with pytest.raises(ValueError, match="client= is for backend='dask'"):
        pyldl.sweep([], client="tcp://localhost:8786")
    with pytest.raises(ValueError, match="needs a results folder"):
        pyldl.sweep([], save_networks=True)
    assert pyldl.sweep([]) == []


def test_a_results_folder_resumes_and_keeps_the_networks(tmp_path):
    calls = []

    def network(hidden):
        calls.append(hidden)
        return mlp(hidden)

    cs = [{**c, "network": network} for c in configs(1)] + [{**configs(1)[0], "network": failing_network}]
    first = pyldl.sweep(cs, folder=tmp_path, save_networks=True, progress=False)
    assert len(calls) == 4 and [r["status"] for r in first] == ["ok"] * 4 + ["error"]
    for result, c in zip(first[:4], cs[:4], strict=True):  # the saved network is the trained one
        network = alone({**c, "network": mlp})[0]
        assert np.array_equal(pyldl.load(tmp_path / result["checkpoint"])(X), network(X))
    assert first[4]["checkpoint"] is None
    records = sorted(p.name for p in tmp_path.iterdir())
    assert len(records) == 8 and sum(name.endswith(".json") for name in records) == 4  # errors: no record

    calls.clear()
    again = pyldl.sweep(cs, folder=tmp_path, save_networks=True, progress=False)
    assert calls == [] and again == first[:4] + [again[4]] and again[4]["status"] == "error"

    (tmp_path / records[0]).write_text("{not json")  # a damaged record, or a lost checkpoint: train again
    os.remove(tmp_path / json.loads((tmp_path / records[2]).read_text())["checkpoint"])
    third = pyldl.sweep(cs, folder=tmp_path, save_networks=True, progress=False)
    assert len(calls) == 2
    assert [r["losses"] for r in third] == [r["losses"] for r in first]

    other_data = [{**c, "X": X + 1} for c in cs[:1]]  # the data is part of a configuration's key
    assert pyldl.sweep(other_data, folder=tmp_path, progress=False)[0]["losses"] != first[0]["losses"]
    assert len(calls) == 3


class UserLinear(Linear):
    """A user's module (a subclass counts as one): trains module by module, cannot be saved."""


def user_network():
    return Sequential(UserLinear(4, 2), Sigmoid())


def test_a_results_folder_takes_any_parameter_and_reports_unsaved_networks(tmp_path):
    base = {**BASE, "seed": 1, "layers": (3, [8]), "notes": {"who": None}, "tag": object}
    cs = pyldl.grid(base, gradient_step=np.array([0.05, 0.5]), hidden=[np.int64(3)])
    cs.append({**cs[0], "network": user_network})
    results = pyldl.sweep(cs, folder=tmp_path, save_networks=True, progress=False)
    assert_same_as_alone(results[:2], [{**c, "hidden": 3} for c in cs[:2]])
    assert results[2]["status"] == "error" and "cannot save" in results[2]["error"]
    again = pyldl.sweep(cs, folder=tmp_path, save_networks=True, progress=False)
    assert again[0]["layers"] == [3, [8]] and again[0]["tag"] == repr(object)  # as JSON keeps them
    assert [r["losses"] for r in again] == [r["losses"] for r in results]


def test_ctrl_c_stops_the_sweep_and_returns_what_finished():
    def interrupting(hidden):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, while this training goes on
        return mlp(hidden)

    cs = configs(1)[:2] + [{**configs(1)[2], "network": interrupting}] + configs(8)
    results = pyldl.sweep(cs, workers=1, progress=False)
    statuses = [r["status"] for r in results]
    assert statuses[:3] == ["ok"] * 3  # the running training finishes
    assert statuses[-5:] == ["interrupted"] * 5
    finished = statuses.index("interrupted")
    assert set(statuses[finished:]) == {"interrupted"}
    assert_same_as_alone(results[:2] + results[3:finished], cs[:2] + cs[3:finished])
    assert results[-1]["losses"] == [] and results[-1]["error"] == "KeyboardInterrupt"
    assert results[-1]["seed"] == cs[-1]["seed"]


def test_results_as_a_dataframe_and_a_plot():
    pytest.importorskip("pandas")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = pyldl.sweep(configs(1), progress=False)
    frame = to_frame(results)
    assert list(frame["final_loss"]) == [r["final_loss"] for r in results]
    assert list(frame["hidden"]) == [3, 8, 3, 8]
    ax = plot(results)
    assert [line.get_label() for line in ax.get_lines()][:2] == [
        "gradient_step=0.05, hidden=3",
        "gradient_step=0.05, hidden=8",
    ]
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 4
    _, ax2 = plt.subplots()
    assert plot(results, ax=ax2, label="hidden", log=False) is ax2
    assert ax2.get_lines()[0].get_label() == "hidden=3"
    plt.close("all")


def test_the_progress_bar_is_named_from_its_first_line(capsys):
    pyldl.sweep(configs(1)[:2], workers=1)
    lines = [line.strip() for line in capsys.readouterr().err.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line]
    assert lines and all(line.startswith("sweep:") for line in lines), lines


def test_missing_extras_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'pyldl\[sweep\]'"):
        to_frame([])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'pyldl\[plot\]'"):
        plot([])


@pytest.fixture(scope="module")
def cluster():
    """A real Dask LocalCluster in this process (threads: no process to start, no kernel to load)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as local:
        yield local


def test_dask_matches_the_pyldl_way(cluster):
    cs = configs()
    by_address = pyldl.sweep(cs, backend="dask", client=cluster.scheduler_address, progress=False)
    assert_same_as_alone(by_address, cs)
    with distributed.Client(cluster) as client:
        faulty = [{**cs[0], "network": failing_network}, {**cs[0], "y": Y[:, :1]}]
        results = pyldl.sweep(cs[:2] + faulty, backend="dask", client=client, progress=False)
        assert client.status == "running"  # a client given is left open
    assert [r["losses"] for r in results[:2]] == [r["losses"] for r in by_address[:2]]
    assert [r["status"] for r in results[2:]] == ["error", "error"]


@pytest.mark.slow
def test_processes_match_the_pyldl_way():
    cs = configs()
    assert_same_as_alone(pyldl.sweep(cs, backend="processes", workers=2, progress=False), cs)


def killing_once(marker, hidden):
    """The first call kills the process it runs in (a Dask worker); later calls build the network."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return mlp(hidden)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_sweep_loses_nothing(tmp_path):
    marker = tmp_path / "killed"
    cs = configs(3)
    cs[5] = {**cs[5], "network": functools.partial(killing_once, str(marker))}
    results = pyldl.sweep(cs, backend="dask", workers=2, progress=False)  # its own LocalCluster
    assert marker.exists()
    for result in results:
        result["network"] = "mlp"
    assert_same_as_alone(results, [{**c, "network": mlp} for c in cs])


@pytest.mark.slow
def test_a_dask_script_without_a_main_guard_is_told_so(tmp_path):
    """Dask's worker processes import the script again; without the guard each one starts a
    sweep of its own and LocalCluster fails with "Nanny failed to start"."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import pyldl

            X = np.random.RandomState(0).uniform(-1, 1, (32, 3))
            base = {"network": lambda: pyldl.Sequential(pyldl.Linear(3, 1)), "loss": pyldl.MSELoss(),
                    "X": X, "y": X[:, :1], "batch_size": 8, "gradient_step": 0.1, "n_iter": 2}
            pyldl.sweep(pyldl.grid(base, seed=[0, 1]), backend="dask", workers=1, progress=False)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: Dask's LocalCluster did not start: Nanny failed to start."), last
    assert "'if __name__ == \"__main__\":' guard" in last
    assert "The above exception was the direct cause" in done.stderr  # the original is chained
