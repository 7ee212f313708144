"""Numba's on-disk cache: pyldl trains whether or not it can cache, and concurrent compiles agree.

Each case runs pyldl in fresh processes from a copy of the package (so the tests control
every folder Numba could write to) and trains a tiny network (Linear, Sigmoid, MSELoss) in
a user's own loop, module by module, and, except under PYLDL_NO_CACHE (the same switch for
every kernel, so the small kernels show it), with ``SGD`` at its default settings, whose
compiled epoch is the slow compile here.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numba
import numpy as np
import pytest
from conftest import assert_close

import pyldl
import pyldl.reference
from pyldl.kernels import _numba
from pyldl.kernels import optimizers as fused
from pyldl.reference.optimizers import SGD as reference_SGD
from pyldl.threads import usable_cores

needs_jit = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="tests Numba's cache of compiled code: needs the JIT"
)

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from numba.core.registry import CPUDispatcher
    import pyldl
    import pyldl.kernels._numba

    ready, go = os.environ.get("TEST_READY"), os.environ.get("TEST_GO")
    if ready:  # wait for the other process, so both compile at the same time
        open(ready, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            time.sleep(0.005)

    def network():
        return pyldl.Sequential(pyldl.Linear(3, 2), pyldl.Sigmoid())

    np.random.seed(0)
    X, y = np.random.uniform(-1, 1, (20, 3)), np.random.uniform(0, 1, (20, 2))
    np.random.seed(1)
    net, loss, by_module = network(), pyldl.MSELoss(), []
    for _ in range(3):  # a user's own loop, module by module
        for i in range(0, 20, 5):
            net.zero_grad()
            yhat = net(X[i : i + 5])
            by_module.append(loss(y[i : i + 5], yhat))
            net.backward(X[i : i + 5], loss.backward(y[i : i + 5], yhat))
            net.update_parameters(0.5)
    results = {"by_module": by_module, "params": [net._modules[0]._parameters.tolist()]}
    if os.environ.get("TEST_SGD") == "1":  # SGD at its default settings
        np.random.seed(1)
        net_sgd = network()
        results["sgd"] = pyldl.SGD(net_sgd, loss, X, y, batch_size=5, gradient_step=0.5,
                                   n_iter=3, progress=False)
        results["params"].append(net_sgd._modules[0]._parameters.tolist())
    if os.environ.get("TEST_THREADS") == "1":  # products in panels, on one thread and on two
        from pyldl.kernels import _blas
        # (64 x 200 outputs: the activation's and the loss's callbacks run in two blocks)
        Xw, yw = np.random.uniform(-1, 1, (64, 256)), np.random.uniform(0, 1, (64, 200))
        results["threads"] = []
        for threads in (1, 2):
            np.random.seed(2)
            net_t = pyldl.Sequential(pyldl.Linear(256, 200), pyldl.Sigmoid())
            results["threads"].append(pyldl.SGD(net_t, loss, Xw, yw, batch_size=64,
                                                gradient_step=0.1, n_iter=3, progress=False,
                                                threads=threads))
        from pyldl.kernels import optimizers as fused
        results["side_by_side_hits"] = [_blas._SIDE_BY_SIDE[np.dtype(np.float64)].cache_hits,
                                        fused._SIDE_BY_SIDE["callbacks"].cache_hits]  # panels, callbacks

    kernels = {}
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("pyldl.kernels"):
            for name, value in vars(module).items():
                if isinstance(value, CPUDispatcher):
                    kernels.setdefault(id(value), {
                        "name": f"{value.py_func.__module__}.{name}",
                        "cache": type(value._cache).__name__,
                        "compiled": len(value.signatures),
                        "hits": sum(value.stats.cache_hits.values()),
                        "misses": sum(value.stats.cache_misses.values()),
                    })
    print(json.dumps({
        "file": pyldl.__file__,
        "cache_on": pyldl.kernels._numba.CACHE,
        "kernels": sorted(kernels.values(), key=lambda k: k["name"]),
        **results,
    }))
    """
)


def reference_results():
    """The same trainings with the plain-NumPy reference."""
    ref = pyldl.reference

    def network():
        return ref.Sequential(ref.Linear(3, 2), ref.Sigmoid())

    np.random.seed(0)
    X, y = np.random.uniform(-1, 1, (20, 3)), np.random.uniform(0, 1, (20, 2))
    np.random.seed(1)
    net = network()
    optim = ref.Optim(net, ref.MSELoss(), 0.5)
    by_module = [optim.step(X[i : i + 5], y[i : i + 5]) for _ in range(3) for i in range(0, 20, 5)]
    np.random.seed(1)
    net_sgd = network()
    sgd = reference_SGD(net_sgd, ref.MSELoss(), X, y, 5, 0.5, 3, progress=False)
    params = [m._modules[0]._parameters for m in (net, net_sgd)]
    return {"by_module": by_module, "sgd": sgd, "params": params}


@pytest.fixture(scope="module")
def expected():
    state = np.random.get_state()
    try:
        return reference_results()
    finally:
        np.random.set_state(state)


def assert_trained_correctly(result, expected):
    assert_close(result["by_module"], expected["by_module"], "run", np.float64)
    if "sgd" in result:
        assert_close(result["sgd"], expected["sgd"], "run", np.float64)
    for got, want in zip(result["params"], expected["params"], strict=False):
        assert_close(np.array(got), want, "run", np.float64)
    assert len(result["params"]) == 1 + ("sgd" in result)


def caches(result):
    """The kinds of cache of every kernel (compiled or not) the worker imported."""
    assert len(result["kernels"]) >= 6
    return {k["cache"] for k in result["kernels"]}


def install_copy(root):
    """A copy of the installed pyldl package under ``root/site`` (no compiled caches)."""
    site = root / "site"
    source = Path(pyldl.__file__).parent
    shutil.copytree(source, site / "pyldl", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def environment(site, **extra):
    """The environment of a worker: this one, minus anything that steers pyldl's or Numba's
    caching or coverage, with the copy first on the path and no user-wide cache folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYLDL_NO_CACHE", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")
        and not k.startswith("COVERAGE_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def start(site, cwd, **extra):
    return subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env=environment(site, **extra),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process, site):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(site), "the worker did not import the copy"
    return result


def run(site, cwd, **extra):
    return finish(start(site, cwd, **extra), site)


def cache_files(root):
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def can_write(folder):
    try:
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / "probe").write_bytes(b"")
    except OSError:
        return False
    shutil.rmtree(folder / "__pycache__")
    return True


@needs_jit
def test_read_only_install_and_no_writable_cache_folder(tmp_path, expected):
    """Where Numba finds no folder to cache in, the kernels compile in memory and train."""
    site = install_copy(tmp_path)
    folders = [p for p in site.rglob("*") if p.is_dir()]
    cache_dir, xdg = tmp_path / "cache", tmp_path / "xdg"
    cache_dir.mkdir()
    xdg.mkdir()
    read_only = [site, *folders, cache_dir, xdg]
    for folder in read_only:
        folder.chmod(0o555)
    try:
        if can_write(site / "pyldl" / "kernels"):  # root ignores permissions: block the paths
            blocker = tmp_path / "blocker"
            blocker.write_bytes(b"")
            for folder in read_only:
                folder.chmod(0o755)
            for folder in folders:  # Python and Numba's in-tree cache: __pycache__ is a file
                (folder / "__pycache__").write_bytes(b"")
            cache_dir, xdg = blocker / "cache", blocker / "xdg"  # mkdir fails: ENOTDIR
            assert not can_write(site / "pyldl" / "kernels")
        blocked = {"NUMBA_CACHE_DIR": str(cache_dir), "XDG_CACHE_HOME": str(xdg), "HOME": str(xdg)}
        result = run(site, tmp_path, TEST_SGD="1", **blocked)
    finally:
        for folder in read_only:
            if folder.is_dir():
                folder.chmod(0o755)
    assert result["cache_on"], "PYLDL_NO_CACHE leaked into the worker"
    # njit(cache=True) raised "no locator available", and pyldl fell back to njit().
    assert caches(result) == {"NullCache"}
    assert cache_files(tmp_path) == []
    assert_trained_correctly(result, expected)


@needs_jit
def test_no_cache_switch(tmp_path, expected):
    """PYLDL_NO_CACHE=1: nothing is written, even where Numba could write."""
    site = install_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    result = run(site, tmp_path, PYLDL_NO_CACHE="1", NUMBA_CACHE_DIR=str(cache_dir))
    assert not result["cache_on"]
    assert caches(result) == {"NullCache"}
    assert cache_files(tmp_path) == []
    assert_trained_correctly(result, expected)


@needs_jit
def test_concurrent_compiles_into_one_fresh_cache_then_cache_hits(tmp_path, expected):
    site = install_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    common = {
        "NUMBA_CACHE_DIR": str(cache_dir),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "TEST_SGD": "1",
    }
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    processes = [start(site, tmp_path, TEST_READY=str(r), TEST_GO=str(go), **common) for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in processes), "a worker died before compiling"
        assert time.monotonic() < deadline, "the workers never got ready"
        time.sleep(0.005)
    go.touch()
    first, second = (finish(p, site) for p in processes)
    for result in (first, second):
        assert caches(result) == {"FunctionCache"}
        assert_trained_correctly(result, expected)
    for key in ("by_module", "sgd", "params"):
        assert first[key] == second[key]
    files = cache_files(cache_dir)
    assert files and all(stat.S_ISREG(p.stat().st_mode) for p in files)
    assert cache_files(site) == []  # NUMBA_CACHE_DIR wins over the package folder

    warm = run(site, tmp_path, **common)
    compiled = [k for k in warm["kernels"] if k["compiled"]]
    names = {k["name"] for k in compiled}
    assert {
        "pyldl.kernels.modules.linear_forward",
        "pyldl.kernels.activations.sigmoid_forward",
    } <= names
    for kernel in compiled:  # every kernel called from Python came from the cache
        assert kernel["hits"] == kernel["compiled"] and kernel["misses"] == 0, kernel
    for key in ("by_module", "sgd", "params"):
        assert warm[key] == first[key]


@needs_jit
@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores")
def test_panels_side_by_side_compiled_then_loaded_from_the_cache(tmp_path):
    """The parallel functions (the products' panels, the callbacks' blocks) are compiled at the
    first run on two threads, loaded from the cache in the next process, and two threads give
    one thread's bits both times."""
    site = install_copy(tmp_path)
    common = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "TEST_THREADS": "1"}
    cold, warm = run(site, tmp_path, **common), run(site, tmp_path, **common)
    for result in (cold, warm):
        one, two = result["threads"]
        assert one == two
    assert (cold["side_by_side_hits"], warm["side_by_side_hits"]) == ([0, 0], [1, 1])
    assert warm["threads"] == cold["threads"]


@needs_jit
def test_an_epoch_from_the_cache_whose_kernels_must_compile_again(tmp_path, expected):
    """The epoch calls its layers' kernels ``separately`` (through symbols, not copies of their
    code): loaded from the cache while those kernels' own entries are gone, it makes them compile
    again and calls them, with the same numbers."""
    site = install_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    common = {"NUMBA_CACHE_DIR": str(cache_dir), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TEST_SGD": "1"}
    cold = run(site, tmp_path, **common)
    callees = [
        f"{name}-"
        for name in ("linear_forward", "linear_backward_delta", "sgd_update", "_gemm_arrays", "_gemm_at")
    ]
    gone = [p for p in cache_files(cache_dir) if any(c in p.name for c in callees)]
    assert {c for c in callees for p in gone if c in p.name} == set(callees)
    for path in gone:
        path.unlink()
    warm = run(site, tmp_path, **common)
    kernels = {k["name"]: k for k in warm["kernels"]}
    epoch = kernels["pyldl.kernels.optimizers.sgd_epoch"]
    assert epoch["hits"] == epoch["compiled"] == 1 and epoch["misses"] == 0  # from the cache
    assert kernels["pyldl.kernels.modules.sgd_update"]["misses"] == 1  # compiled again
    assert_trained_correctly(warm, expected)
    for key in ("by_module", "sgd", "params"):
        assert warm[key] == cold[key]


# A kernel that links a kernel (linear_forward) whose gemm calls ``_gemm_arrays`` separately.
LINKED_KERNEL = textwrap.dedent(
    """
    from ._numba import jit
    from .modules import linear_forward


    @jit
    def forward(X, W, b, out):
        linear_forward(X, W, b, out, 0)
    """
)
LINKED = textwrap.dedent(
    """
    import functools, json
    import numpy as np
    from pyldl.kernels import linked

    X, W, b, out = np.arange(6.0).reshape(2, 3), np.ones((3, 2)), np.ones((1, 2)), np.empty((2, 2))
    linked.forward(X, W, b, out)
    hooks = sorted(
        hook.args[1]
        for result in linked.forward.overloads.values()
        for hook in result.reload_init
        if isinstance(hook, functools.partial)
    )
    print(json.dumps({"out": out.tolist(), "hooks": hooks}))
    """
)


@needs_jit
def test_a_kernel_compiled_against_cached_kernels_keeps_their_reload_hooks(tmp_path):
    """A kernel that links ``linear_forward``, whose gemm calls ``_gemm_arrays`` separately,
    compiled again while ``linear_forward`` comes from the cache: its own cache entry must still
    hold the hook that points ``_gemm_arrays``' symbol at its code (Numba leaves a cached library
    without its hooks: the next process could load it before anything set the symbol)."""
    site = install_copy(tmp_path)
    (site / "pyldl" / "kernels" / "linked.py").write_text(LINKED_KERNEL)
    env = environment(site, NUMBA_CACHE_DIR=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"))

    def run():
        done = subprocess.run(
            [sys.executable, "-c", LINKED], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run()
    gone = [p for p in cache_files(tmp_path / "cache") if "linked.forward-" in p.name]
    assert gone
    for path in gone:
        path.unlink()
    again = run()  # forward compiles again, linear_forward and _gemm_arrays from the cache
    loaded = run()  # every kernel from the cache, forward with the hooks saved above
    assert "_gemm_arrays" in again["hooks"] and "_gemm_arrays" in loaded["hooks"]
    assert first["out"] == again["out"] == loaded["out"] == [[4.0, 4.0], [13.0, 13.0]]


@needs_jit
def test_a_cfunc_that_would_call_kernels_separately_is_refused():
    """Numba saves no reload hooks with a cfunc: one whose code calls a kernel ``separately``
    (here through ``linear_forward``'s gemm) would abort the next process that loads it."""
    from numba import carray, types

    from pyldl.kernels.modules import linear_forward

    def forward(x, w, out, n):
        X, W, Y = carray(x, (n, n)), carray(w, (n, n)), carray(out, (n, n))
        linear_forward(X, W, X[:0], Y, 1)
        return 0.0

    pointer = types.CPointer(types.float64)
    with pytest.raises(TypeError, match="forward: a cfunc cannot call kernels separately"):
        _numba.cfunc(types.float64(pointer, pointer, pointer, types.intp))(forward)


@pytest.mark.parametrize("cache_on", [True, False], ids=["cache", "PYLDL_NO_CACHE"])
def test_jit_falls_back_to_memory_when_numba_cannot_cache(cache_on, monkeypatch):
    """The decorator's logic alone (the subprocess tests above show it with real folders)."""
    calls = []

    def njit(**options):
        calls.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return lambda func: ("compiled in memory", func)

    def f():
        pass

    monkeypatch.setattr(_numba.numba, "njit", njit)
    monkeypatch.setattr(_numba, "CACHE", cache_on)
    assert _numba.jit(f) == ("compiled in memory", f)
    assert [options.get("cache", False) for options in calls] == ([True, False] if cache_on else [False])
    assert all(options["nogil"] and options["error_model"] == "numpy" for options in calls)
    assert not any(options.get("fastmath") for options in calls)


@needs_jit
def test_editing_a_helper_kernel_file_invalidates_the_kernels_that_inline_it(tmp_path):
    """Numba stamps a cache with the kernel's own file only; pyldl stamps it with the whole
    kernels folder, so a change in ``_math.py`` is never served from a stale cache."""
    site = install_copy(tmp_path)
    common = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def sigmoid_forward(result):
        return next(k for k in result["kernels"] if k["name"].endswith("activations.sigmoid_forward"))

    run(site, tmp_path, **common)
    assert sigmoid_forward(run(site, tmp_path, **common))["hits"] == 1
    with open(site / "pyldl" / "kernels" / "_math.py", "a") as f:
        f.write("\n# edited\n")
    edited = sigmoid_forward(run(site, tmp_path, **common))
    assert edited["hits"] == 0 and edited["misses"] == 1


ASIDE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import pyldl, pyldl.threads
    from pyldl.kernels import optimizers as fused

    pyldl.threads.core_to_spare = lambda: sys.argv[1] == "aside"  # a core to spare, or none
    np.random.seed(0)
    X, y = np.random.uniform(-1, 1, (20, 3)), np.random.uniform(0, 1, (20, 2))
    net = pyldl.Sequential(pyldl.Linear(3, 4), pyldl.Tanh(), pyldl.Linear(4, 2), pyldl.Sigmoid())
    losses = pyldl.SGD(net, pyldl.BCELoss(), X, y, 5, 0.5, 3, progress=False)
    hits = {f"{row}-{code}": compiled.cache_hits for (row, code, _), compiled in fused._COMPILED.items()}
    print(json.dumps({"losses": losses, "hits": hits, "epochs": len(fused.sgd_epoch.signatures)}))
    """
)


@needs_jit
def test_a_first_epoch_compiles_its_callbacks_in_a_second_process(tmp_path):
    """With a core to spare, a first epoch on an empty cache has its activations' and loss's
    callbacks compiled in a second process while this one compiles the epoch, then loads them
    from the cache: the same losses as one process compiling it all."""
    site = install_copy(tmp_path)

    def run(mode):
        cache = {"NUMBA_CACHE_DIR": str(tmp_path / mode), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
        done = subprocess.run(
            [sys.executable, "-c", ASIDE, mode],
            env=environment(site, **cache),
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    aside, alone = run("aside"), run("alone")
    assert len(aside["hits"]) == 5  # Tanh's and Sigmoid's two, BCE's
    assert set(aside["hits"].values()) == {1}  # each loaded from the cache
    assert set(alone["hits"].values()) == {0}  # each compiled here
    assert aside["epochs"] == alone["epochs"] == 1  # compiled once, before the first run
    assert aside["losses"] == alone["losses"]


def test_aside_runs_its_statement_in_a_second_process(tmp_path):
    mark = tmp_path / "ran"
    with _numba.aside(f"import os; open({str(mark)!r}, 'w').write(str(os.getpid()))") as worker:
        pass  # the block waits for it
    assert worker.returncode == 0
    assert int(mark.read_text()) != os.getpid()


def test_calls_aside_runs_calls_in_a_second_process():
    with fused.calls_aside(np.float32, [fused.TANH, fused.SIGMOID], fused.BCE) as worker:
        pass
    assert worker.returncode == 0


def test_aside_stops_its_process_when_the_block_raises(tmp_path):
    mark, start = tmp_path / "ran", time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with _numba.aside(f"import time; time.sleep(60); open({str(mark)!r}, 'w')") as worker:
            raise KeyboardInterrupt
    assert worker.returncode is not None  # stopped, not left running
    assert time.monotonic() - start < 30
    assert not mark.exists()


def test_aside_runs_this_pyldl_whatever_the_working_directory_holds(tmp_path, monkeypatch):
    (tmp_path / "pyldl").mkdir()
    (tmp_path / "pyldl" / "__init__.py").write_text("raise SystemExit('another pyldl')")
    monkeypatch.chdir(tmp_path)
    mark = tmp_path / "ran"
    with _numba.aside(f"import pyldl; open({str(mark)!r}, 'w').write(pyldl.__file__)") as worker:
        pass
    assert worker.returncode == 0
    assert Path(mark.read_text()) == Path(pyldl.__file__).resolve()


def test_aside_runs_one_second_process_at_a_time():
    with _numba.aside("pass") as first, _numba.aside("pass") as second:
        pass
    assert first.returncode == 0 and second is None


def test_aside_stops_a_process_that_takes_too_long(tmp_path, monkeypatch):
    monkeypatch.setattr(_numba, "ASIDE_SECONDS", 1)
    mark, start = tmp_path / "ran", time.monotonic()
    with _numba.aside(f"import time; time.sleep(60); open({str(mark)!r}, 'w')") as worker:
        pass
    assert time.monotonic() - start < 30
    assert worker.returncode is not None and not mark.exists()


@pytest.mark.parametrize("executable", [None, "", "blender", "python3-that-is-not-there"])
def test_aside_without_a_python_to_start_runs_the_block_alone(executable, tmp_path, monkeypatch):
    """No interpreter (an embedded Python), another program (run with -c, it would not run
    Python), or one that fails to start: the block runs alone."""
    monkeypatch.setattr(sys, "executable", executable and str(tmp_path / executable))
    ran = []
    with _numba.aside("pass") as worker:
        ran.append(worker)
    assert ran == [None]


def test_only_pyldls_kernels_are_stamped_with_their_folder():
    """pyldl's cache locators take its kernels only, each stamped with the whole kernels
    folder; every other Numba function in the process keeps Numba's own locators."""
    from pyldl.kernels import modules

    locator = _numba.caching.CacheImpl._locator_classes[1]  # the in-tree one, pyldl's
    assert locator.__name__ == "PyldlKernelsInTreeCacheLocator"
    assert locator.from_function(test_only_pyldls_kernels_are_stamped_with_their_folder, __file__) is None
    kernel = modules.linear_forward
    found = locator.from_function(getattr(kernel, "py_func", kernel), modules.__file__)
    stamp = found.get_source_stamp()
    assert stamp == _numba._kernels_stamp() and len(stamp) == 64
    assert stamp != hashlib.sha256(Path(modules.__file__).read_bytes()).hexdigest()  # not its file's
