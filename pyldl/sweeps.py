"""Many trainings at once: :func:`sweep` trains a list of configurations on threads, on
processes or on a Dask cluster; :func:`grid` builds that list from lists of parameter values.

A configuration is a dict (or a dataclass) with the keys ``network`` (a callable returning a new
network), ``loss`` (a Loss, or a callable returning one), ``X``, ``y``, ``batch_size``,
``gradient_step``, ``n_iter`` and ``seed``; every other key is a parameter, copied into the
configuration's result and passed to ``network`` (and to a ``loss`` callable) when it names it
as an argument: ``def network(hidden): ...`` gets the configuration's ``hidden``.

Determinism: a configuration's losses are, bitwise, those of the PyLDL way run alone,
``np.random.seed(seed); net = network(); SGD(net, loss, X, y, batch_size, gradient_step,
n_iter)``, whatever the backend, the number of workers or the order the trainings end in.
Each network is built, and its row order drawn, under one process-wide lock, right after
``np.random.seed(seed)``; SGD then gets that order explicitly and draws nothing, so trainings
running side by side never share a random draw. When :func:`sweep` returns, NumPy's global
RNG is in the state it had before (other code drawing from it while a sweep runs in the same
process would see seeded draws, and could break the determinism).

Backends (``pip install 'pyldl[sweep]'``: joblib, dask.distributed, pandas):

- ``"threads"`` (default): one process, ``workers`` threads (default: one per core). The
  compiled epochs release the GIL, so the threads train side by side; the kernels' BLAS
  (SciPy's OpenBLAS, :func:`pyldl.kernels._blas.one_thread`) runs on one thread per training
  (process-wide, for the time of the sweep) so that they do not fight for cores.
  The threads run in copies of the caller's context (``np.errstate`` included).
- ``"processes"``: joblib's loky workers.
- ``"dask"``: a ``dask.distributed`` cluster: ``client`` is an existing ``Client``, a
  scheduler address, or None for a ``LocalCluster`` of ``workers`` processes of one thread
  each. Each distinct X and y is scattered to every worker once. A worker lost mid-sweep loses
  nothing: the scheduler runs its configurations again elsewhere.

A result is a dict: the configuration's parameters (``seed``, ``batch_size``,
``gradient_step``, ``n_iter`` and the extra keys), ``network`` and ``loss`` (their names),
``losses`` (SGD's list), ``final_loss``, ``seconds`` (building plus training), ``status``
(``"ok"``, ``"diverged"``, ``"error"``, or ``"interrupted"`` for a configuration that Ctrl-C
stopped before it ran), ``error`` (``"Type: message"``, or None) and ``checkpoint`` (the saved
network's file name, or None).
"""

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import math
import numbers
import os
import threading
import time
from collections.abc import Mapping

import numpy as np
from tqdm.auto import tqdm

from .base import Loss
from .checkpoints import _write_atomically, save
from .exceptions import DivergenceError
from .kernels._blas import one_thread
from .optimizers import SGD

__all__ = ["BACKENDS", "grid", "plot", "sweep", "to_frame"]

BACKENDS = ("threads", "processes", "dask")
REQUIRED = ("network", "loss", "X", "y", "batch_size", "gradient_step", "n_iter", "seed")
_OBJECTS = ("network", "loss", "X", "y")  # kept out of the parameters (names only in results)
_RESULT_KEYS = ("losses", "final_loss", "seconds", "status", "error", "checkpoint")
_SHORT = 1e-3  # seconds: a training this short is mostly Python (see _on_threads)
_DONE = ("ok", "diverged")  # statuses a results folder keeps; errors run again on a rerun

_RNG_LOCK = threading.Lock()  # held while a network is built and its row order drawn


def _require(module, extra):
    """Import ``module``, or ImportError naming the pyldl extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed here: pip install 'pyldl[{extra}]'") from error


def grid(base=None, **lists):
    """Every combination of the values in ``lists``, each merged into a copy of ``base``.

    The first keyword varies slowest, as in nested loops written in the same order::

        grid({"network": mlp, "loss": MSELoss(), ...}, gradient_step=[1e-3, 1e-2], hidden=[32, 64])
        # -> 4 configurations: (1e-3, 32), (1e-3, 64), (1e-2, 32), (1e-2, 64)

    Raises:
        TypeError: a keyword's value is not a list (or tuple, range, array) of values.
    """
    for name, values in lists.items():
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
            raise TypeError(f"grid's {name}= must be a list of values, got {values!r}")
    names, values = list(lists), [list(v) for v in lists.values()]
    return [
        {**(base or {}), **dict(zip(names, combination, strict=True))}
        for combination in itertools.product(*values)
    ]


def sweep(
    configs,
    backend="threads",
    *,
    workers=None,
    client=None,
    folder=None,
    save_networks=False,
    progress=True,
):
    """Train every configuration of ``configs``; their results, in the same order.

    Args:
        configs: dicts or dataclasses (module docstring). A configuration that is bad input,
            raises or diverges gets a result with status ``"error"`` or ``"diverged"`` and its
            error; the others go on.
        backend: ``"threads"``, ``"processes"`` or ``"dask"`` (module docstring).
        workers: trainings at once (default: ``os.cpu_count()``); for ``"dask"``, the size of
            the LocalCluster started when ``client`` is None.
        client: ``"dask"`` only: a ``dask.distributed.Client`` or a scheduler address.
        folder: a results folder: one ``<key>.json`` record per finished configuration (the
            key hashes its parameters, the names of its network and loss, and its data), so
            that a rerun with the same folder returns those and trains only the others.
        save_networks: with ``folder``, also save each trained network there
            (``<key>.npz``, :func:`pyldl.save`).
        progress: show a progress bar over configurations.

    Ctrl-C cancels the configurations not started, lets the running ones finish (a second
    Ctrl-C stops waiting) and returns the results, ``"interrupted"`` for those that did not run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if client is not None and backend != "dask":
        raise ValueError("client= is for backend='dask'")
    if save_networks and folder is None:
        raise ValueError("save_networks=True needs a results folder (folder=...)")
    workers = workers or os.cpu_count() or 1
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
    configs = list(configs)
    results = [None] * len(configs)
    tasks, digests = {}, {}
    for index, config in enumerate(configs):
        task = _prepare(config, folder, digests)
        if isinstance(task, dict):
            results[index] = task  # bad input, or done in an earlier run
        else:
            tasks[index] = task
    bar = tqdm(
        total=len(configs),
        initial=len(configs) - len(tasks),
        disable=not progress,
        unit="config",
        desc="sweep",
    )

    def collect(index, outcome):  # from the caller's thread, or from the worker threads at once
        results[index] = _finish(*tasks[index], outcome, folder, save_networks)
        bar.update()

    run = {"threads": _on_threads, "processes": _on_processes, "dask": _on_dask}[backend]
    state = np.random.get_state()  # trainings in this process seed the global RNG
    try:
        if tasks:
            run(tasks, workers, client, save_networks, collect, lambda index: results[index] is None)
    finally:
        np.random.set_state(state)
        bar.close()
    for index, (config, params, _) in tasks.items():
        if results[index] is None:
            results[index] = _result(params, config, status="interrupted", error="KeyboardInterrupt")
    return results


# -- configurations and results ---------------------------------------------------------


def _as_dict(config):
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"a configuration is a dict or a dataclass, got {type(config).__name__}")


def _parameters(config):
    return {name: value for name, value in config.items() if name not in _OBJECTS}


def _name(obj):
    """A stable name for a network or loss: class or function name, partial's arguments."""
    if isinstance(obj, functools.partial):
        arguments = [repr(a) for a in obj.args] + [f"{k}={v!r}" for k, v in sorted(obj.keywords.items())]
        return f"{_name(obj.func)}({', '.join(arguments)})"
    if isinstance(obj, Loss):
        return type(obj).__qualname__
    return getattr(obj, "__qualname__", type(obj).__qualname__)


def _message(error):
    return f"{type(error).__name__}: {error}"


def _result(params, config, losses=(), seconds=0.0, status="ok", error=None, checkpoint=None):
    losses = [float(value) for value in losses]
    names = {name: _name(config[name]) if name in config else None for name in ("network", "loss")}
    return {
        **params,
        **names,
        "losses": losses,
        "final_loss": losses[-1] if losses else math.nan,
        "seconds": seconds,
        "status": status,
        "error": error,
        "checkpoint": checkpoint,
    }


def _check(config):
    """ValueError naming what is wrong with the configuration's keys or seed."""
    missing = [name for name in REQUIRED if name not in config]
    if missing:
        raise ValueError(f"the configuration lacks {missing} (needs {list(REQUIRED)})")
    reserved = [name for name in _RESULT_KEYS if name in config]
    if reserved:
        raise ValueError(f"the configuration uses result names {reserved} as parameters")
    seed = config["seed"]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def _prepare(config, folder, digests):
    """``(config, parameters, key)`` to train, or the result already known (an error record
    for bad input; the record of a results folder's earlier run)."""
    try:
        config = _as_dict(config)
        _check(config)
    except (TypeError, ValueError) as error:
        config = config if isinstance(config, dict) else {}
        return _result(_parameters(config), config, status="error", error=_message(error))
    params = _parameters(config)
    key = None if folder is None else _key(config, params, digests)
    if key is not None:
        record = _read_record(os.path.join(folder, f"{key}.json"))
        if record is not None:
            return record
    return config, params, key


def _jsonable(value):
    """A JSON-friendly copy of a parameter value (NumPy scalars and arrays as lists)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _digest(array, digests):
    """SHA-256 of an array's dtype, shape and bytes (once per object and sweep)."""
    if id(array) not in digests:
        a = np.asarray(array)
        data = repr(a).encode() if a.dtype.hasobject else np.ascontiguousarray(a).tobytes()
        text = f"{a.dtype.str}{a.shape}".encode()
        digests[id(array)] = (array, hashlib.sha256(text + data).hexdigest())
    return digests[id(array)][1]


def _key(config, params, digests):
    """The stable name of a configuration's files in a results folder."""
    identity = {
        "parameters": _jsonable(params),
        "network": _name(config["network"]),
        "loss": _name(config["loss"]),
        "X": _digest(config["X"], digests),
        "y": _digest(config["y"], digests),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _read_record(path):
    """The result saved at ``path`` by an earlier run, or None (absent, unreadable, not done,
    or its checkpoint file is missing)."""
    try:
        with open(path) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") not in _DONE:
        return None
    checkpoint = record.get("checkpoint")
    if checkpoint is not None and not os.path.exists(os.path.join(os.path.dirname(path), checkpoint)):
        return None
    return record


def _finish(config, params, key, outcome, folder, save_networks):
    """The result of a training (``outcome`` from :func:`_train`); saved in the folder if any."""
    network, losses, seconds, status, error = outcome
    checkpoint = None
    if folder is not None and save_networks and network is not None:
        checkpoint = f"{key}.npz"
        try:
            save(network, os.path.join(folder, checkpoint))
        except (TypeError, ValueError, OSError) as problem:  # a user module: no checkpoint
            checkpoint, status, error = None, "error", _message(problem)
    result = _result(params, config, losses, seconds, status, error, checkpoint)
    if folder is not None and status in _DONE:
        text = json.dumps(_jsonable(result), indent=1)
        _write_atomically(os.path.join(folder, f"{key}.json"), lambda file: file.write(text.encode()))
    return result


# -- one training ------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _argument_names(factory):
    """The names ``factory`` takes as keyword arguments (cached: inspect costs ~15 us a call)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: call without arguments
        return ()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in signature.parameters.values() if p.kind in kinds)


def _call(factory, params):
    """``factory(**the parameters it names as arguments)``."""
    try:
        names = _argument_names(factory)
    except TypeError:  # an unhashable callable
        names = _argument_names.__wrapped__(factory)
    return factory(**{name: params[name] for name in names if name in params})


def _train(config, params, keep_network=True):
    """Build (under the RNG lock) and train one configuration; never raises an Exception.

    Returns ``(network or None, losses, seconds, status, error)``.
    """
    start = time.perf_counter()
    network, losses, status, error = None, [], "ok", None
    try:
        with _RNG_LOCK:  # sweep() puts the caller's global RNG state back at the end
            np.random.seed(config["seed"])
            network = _call(config["network"], params)
            loss = config["loss"] if isinstance(config["loss"], Loss) else _call(config["loss"], params)
            order = np.random.permutation(len(config["X"]))
        losses = SGD(
            network,
            loss,
            config["X"],
            config["y"],
            config["batch_size"],
            config["gradient_step"],
            config["n_iter"],
            progress=False,
            order=order,
        )
    except DivergenceError as diverged:
        losses, status, error = diverged.losses, "diverged", _message(diverged)
    except Exception as problem:  # recorded in the result; the sweep goes on
        status, error = "error", _message(problem)
    seconds = time.perf_counter() - start
    return (network if keep_network else None), losses, seconds, status, error


def _train_remote(index, config, params, keep_network, X=None, y=None):
    """:func:`_train` in a worker process (X and y given apart when scattered by Dask)."""
    if X is not None:
        config = {**config, "X": X, "y": y}
    with one_thread():
        return index, _train(config, params, keep_network)


# -- backends: each calls collect(index, outcome) as trainings end, stops on Ctrl-C ------


def _on_threads(tasks, workers, client, keep_network, collect, pending):
    """``workers`` threads take the tasks in turn, each collecting its own results (waking the
    caller's thread for each one would cost a GIL hand-over per configuration).

    Threads of rank 1 and up pause while the last training took under ``_SHORT`` seconds: such
    trainings are mostly Python set-up, which holds the GIL, and a second thread only adds GIL
    hand-overs (measured with benchmarks/bench_sweeps.py: 200 W1 trainings of 5 epochs took
    2-2.5x the time of their SGD calls alone on 2 threads, 1.2-1.5x on one).
    """
    todo, workers = iter(list(tasks.items())), min(workers, len(tasks))
    # stop: no task left, Ctrl-C, or an error; busy: threads inside work(); ended: threads done
    state = {"limit": workers, "stop": False, "busy": 0, "ended": 0}
    changed = threading.Condition()
    errors = []

    def work(rank):
        with changed:
            state["busy"] += 1
        try:
            while True:
                with changed:
                    changed.wait_for(lambda: rank < state["limit"] or state["stop"])
                    index, (config, params, _) = next(todo, (None, (None, None, None)))
                    if state["stop"] or index is None:
                        state["stop"] = True
                        return
                outcome = _train(config, params, keep_network)
                collect(index, outcome)
                limit = workers if outcome[2] >= _SHORT else 1
                if limit != state["limit"]:  # waking the others costs GIL hand-overs
                    with changed:
                        state["limit"] = limit
                        changed.notify_all()
        except BaseException as error:  # collect failed: re-raised in the caller's thread
            errors.append(error)
            state["stop"] = True
        finally:
            with changed:
                state["busy"] -= 1
                state["ended"] += 1
                changed.notify_all()

    with one_thread():
        try:  # Ctrl-C can come while the threads start (the first ones may already train)
            for rank in range(workers):  # each in a copy of the caller's context (np.errstate)
                context = contextvars.copy_context()
                threading.Thread(target=context.run, args=(work, rank), name=f"pyldl-sweep-{rank}").start()
            # A timeout, so that Ctrl-C is seen meanwhile; not Thread.join, which Ctrl-C can leave
            # marking a running thread as ended.
            with changed:
                while not changed.wait_for(lambda: state["ended"] == workers, 0.1):
                    pass
        except KeyboardInterrupt:  # start nothing more; the running trainings end and collect
            with changed:
                state["stop"] = True
                changed.notify_all()
                changed.wait_for(lambda: state["busy"] == 0)
    if errors:
        raise errors[0]


def _on_processes(tasks, workers, client, keep_network, collect, pending):
    joblib = _require("joblib", "sweep")
    parallel = joblib.Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
    outcomes = parallel(
        joblib.delayed(_train_remote)(index, config, params, keep_network)
        for index, (config, params, _) in tasks.items()
    )
    try:
        for index, outcome in outcomes:
            collect(index, outcome)
    except KeyboardInterrupt:
        outcomes.close()  # joblib stops its workers


def _on_dask(tasks, workers, client, keep_network, collect, pending):
    distributed = _require("dask.distributed", "sweep")
    with contextlib.ExitStack() as owned:
        if client is None:
            try:
                cluster = owned.enter_context(
                    distributed.LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                    )
                )
            except RuntimeError as problem:  # "Nanny failed to start."
                raise RuntimeError(
                    f"Dask's LocalCluster did not start: {problem} The likely cause: "
                    "the script that calls pyldl.sweep(backend='dask') has no "
                    "'if __name__ == \"__main__\":' guard, so every worker process, which imports "
                    "the script again, runs it too: put the sweep under that guard"
                ) from problem
            client = owned.enter_context(distributed.Client(cluster))
        elif isinstance(client, str):
            client = owned.enter_context(distributed.Client(client))
        arrays = {}  # id -> the array, once per distinct X or y
        for config, _, _ in tasks.values():
            arrays.update((id(config[name]), config[name]) for name in ("X", "y"))
        scattered = dict(zip(arrays, client.scatter(list(arrays.values()), broadcast=True), strict=True))
        futures = {}
        for index, (config, params, _) in tasks.items():
            light = {name: value for name, value in config.items() if name not in ("X", "y")}
            X, y = scattered[id(config["X"])], scattered[id(config["y"])]
            future = client.submit(_train_remote, index, light, params, keep_network, X, y, pure=False)
            futures[future] = index
        try:
            for future in distributed.as_completed(futures):
                try:
                    index, outcome = future.result()
                except Exception as problem:  # the task itself never raises: the cluster failed it
                    index, outcome = futures[future], (None, [], 0.0, "error", _message(problem))
                collect(index, outcome)
        except KeyboardInterrupt:
            client.cancel([future for future, index in futures.items() if pending(index)])


# -- looking at results ------------------------------------------------------------------


def to_frame(results):
    """The results as a pandas DataFrame, one row per configuration (``losses`` as lists)."""
    pandas = _require("pandas", "sweep")
    return pandas.DataFrame.from_records(list(results))


def plot(results, ax=None, label=None, log=True):
    """Draw each result's loss per epoch on ``ax`` (a new figure's axes when None); return ax.

    ``label``: a parameter name, or a function of a result, naming each curve (default: the
    parameters that differ between the results). ``log``: a logarithmic loss axis.
    """
    _require("matplotlib", "plot")
    import matplotlib.pyplot as plt

    results = list(results)
    if ax is None:
        _, ax = plt.subplots()
    if label is None or isinstance(label, str):
        names = [k for k in results[0] if k not in _RESULT_KEYS] if results else []
        shown = [label] if label else [k for k in names if len({repr(r.get(k)) for r in results}) > 1]
        label = functools.partial(_label, shown)
    for result in results:
        if result["losses"]:
            ax.plot(range(1, len(result["losses"]) + 1), result["losses"], label=label(result))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    if results:
        ax.legend(fontsize="small")
    return ax


def _label(names, result):
    return ", ".join(f"{name}={result.get(name)}" for name in names) or result["status"]
