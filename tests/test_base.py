"""The drop-in surface: import paths, the Module protocol, errors, and users' own modules
mixed with built-in ones."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, seeded

import pyldl
import pyldl.reference as ref
from pyldl.base import Activation, Loss, Module
from pyldl.exceptions import DimensionMismatchError, DTypeError

# ---------------------------------------------------------------- import paths (SPEC.md)

IMPORT_PATHS = {
    "pyldl.modules": ["Linear"],
    "pyldl.activations": ["Tanh", "Sigmoid", "Softmax", "ReLU"],
    "pyldl.losses": ["MSELoss", "BCELoss"],
    "pyldl.layers": ["Sequential", "AutoEncoder"],
    "pyldl.encapsulations": ["Sequential", "AutoEncoder"],
    "pyldl.optimizers": ["Optim", "SGD"],
    "pyldl.base": ["Module", "Activation", "Loss"],
    "pyldl.exceptions": ["DimensionMismatchError"],
    "pyldl.utils": ["create_minibatches", "encode_one_hot", "gen_arti", "load_usps"],
}


@pytest.mark.parametrize(("path", "names"), IMPORT_PATHS.items(), ids=list(IMPORT_PATHS))
def test_import_paths(path, names):
    module = importlib.import_module(path)
    for name in names:
        obj = getattr(module, name)
        assert getattr(pyldl, name) is obj, f"pyldl.{name} is not {path}.{name}"
        assert name in pyldl.__all__
    namespace = {}
    exec(f"from {path} import {', '.join(names)}", namespace)
    assert all(namespace[name] is getattr(module, name) for name in names)


def test_star_imports():
    namespace = {}
    exec("from pyldl import *", namespace)
    assert all(name in namespace for names in IMPORT_PATHS.values() for name in names)
    namespace = {}
    exec("from pyldl.encapsulations import *", namespace)
    assert namespace["Sequential"] is pyldl.layers.Sequential
    assert namespace["AutoEncoder"] is pyldl.layers.AutoEncoder


def test_everything_in_all_is_importable():
    for name in pyldl.__all__:
        assert getattr(pyldl, name) is not None


@pytest.mark.parametrize("name", ["Linear", "Tanh", "Sigmoid", "Softmax", "ReLU", "MSELoss", "BCELoss"])
def test_compiled_classes_subclass_the_reference(name):
    assert issubclass(getattr(pyldl, name), getattr(ref, name))


@pytest.mark.parametrize("name", ["Linear", "Tanh", "Sigmoid", "Softmax", "ReLU", "Sequential"])
def test_modules_are_modules(namespace, name):
    module = getattr(namespace, name)(2, 3) if name == "Linear" else getattr(namespace, name)()
    assert isinstance(module, Module)


# ---------------------------------------------------------------- __call__


def test_call_is_forward(namespace, rng):
    X = rng.standard_normal((3, 2))
    with seeded(0):
        net = namespace.Sequential(namespace.Linear(2, 2), namespace.Sigmoid())
    modules = [*net._modules, namespace.Tanh(), namespace.ReLU(), namespace.Softmax(), net]
    for module in modules:
        assert_close(module(X), module.forward(X), "op", np.float64)
    y = rng.uniform(size=(3, 2))
    yhat = rng.uniform(0.1, 0.9, (3, 2))
    for loss in (namespace.MSELoss(), namespace.BCELoss()):
        assert loss(y, yhat) == loss.forward(y, yhat)


def test_call_is_step_on_optim(namespace, rng):
    X, y = rng.standard_normal((8, 3)), rng.uniform(size=(8, 1))
    nets = []
    for _ in range(2):
        with seeded(0):
            nets.append(namespace.Sequential(namespace.Linear(3, 1), namespace.Sigmoid()))
    by_call = namespace.Optim(nets[0], namespace.MSELoss(), 0.1)
    by_step = namespace.Optim(nets[1], namespace.MSELoss(), 0.1)
    for _ in range(3):
        assert_close(by_call(X, y), by_step.step(X, y), "op", np.float64)
    assert_close(nets[0]._modules[0]._parameters, nets[1]._modules[0]._parameters, "op", np.float64)


# ---------------------------------------------------------------- protocol and errors


def test_module_protocol_is_abstract():
    with pytest.raises(TypeError):
        Module()
    with pytest.raises(TypeError):
        Activation()
    with pytest.raises(TypeError):
        Loss()


def test_module_defaults_without_parameters():
    class Identity(Module):
        def forward(self, X):
            return X

        def backward_update_gradient(self, input, delta):
            pass

        def backward_delta(self, input, delta):
            return delta

    module = Identity()
    assert module._parameters is None and module._bias is None
    module.zero_grad()
    module.update_parameters()
    assert module._gradient is None and module(3) == 3


def test_dimension_mismatch_error():
    error = DimensionMismatchError((2, 3), (2, 4))
    assert isinstance(error, ValueError)
    assert (error.expected, error.got) == ((2, 3), (2, 4))
    assert str(error) == "Expected dimensions (2, 3), got (2, 4)."
    named = DimensionMismatchError("(_, 3)", (2, 4), "X has 4 features")
    assert str(named).startswith("X has 4 features") and "(_, 3)" in str(named)


def test_errors_are_value_errors():
    for name in ("DimensionMismatchError", "DivergenceError"):
        assert issubclass(getattr(pyldl, name), ValueError)


# ---------------------------------------------------------------- users' own modules


class UserLinear(Module):
    """A layer as a PyLDL user writes it: plain NumPy, PyLDL's attributes and init."""

    def __init__(self, n_in, n_out):
        super().__init__()
        bound = 1 / np.sqrt(n_in)
        self._parameters = np.random.uniform(-bound, bound, (n_in, n_out))  # noqa: NPY002
        self._bias = np.random.uniform(-bound, bound, (1, n_out))  # noqa: NPY002
        self.zero_grad()

    def forward(self, X):
        return X @ self._parameters + self._bias

    def backward_update_gradient(self, input, delta):
        self._gradient += input.T @ delta
        self._gradient_bias += delta.sum(axis=0)

    def backward_delta(self, input, delta):
        return delta @ self._parameters.T


class LeakyReLU(Activation):
    def forward(self, X):
        return np.where(X > 0, X, 0.1 * X)

    def backward_delta(self, input, delta):
        return delta * np.where(input > 0, 1.0, 0.1)


class MAELoss(Loss):
    def forward(self, y, yhat):
        return float(np.mean(np.abs(y - yhat)))

    def backward(self, y, yhat):
        return np.sign(yhat - y) / y.size


def mixed_network(ns):
    """Built-in modules of ``ns`` around a user's layer and a user's activation."""
    with seeded(21):
        return ns.Sequential(
            ns.Linear(3, 6),
            LeakyReLU(),
            UserLinear(6, 4),
            ns.Tanh(),
            ns.Linear(4, 2),
            ns.Sigmoid(),
        )


def parameters(net):
    return [m._parameters for m in net._modules if m._parameters is not None] + [
        m._bias for m in net._modules if m._bias is not None
    ]


def toy_data(rng):
    X = rng.standard_normal((40, 3))
    y = np.column_stack([X[:, 0] > 0, X[:, 1] * X[:, 2] > 0]).astype(float)
    return X, y


@pytest.mark.parametrize("loss_name", ["MSELoss", "BCELoss"])
def test_user_module_trains_with_optim_like_the_reference(loss_name, rng):
    X, y = toy_data(rng)
    fast, slow = mixed_network(pyldl), mixed_network(ref)
    fast_optim = pyldl.Optim(fast, getattr(pyldl, loss_name)(), 0.05)
    slow_optim = ref.Optim(slow, getattr(ref, loss_name)(), 0.05)
    fast_losses, slow_losses = [], []
    for _ in range(10):
        for start in range(0, 40, 16):
            fast_losses.append(fast_optim.step(X[start : start + 16], y[start : start + 16]))
            slow_losses.append(slow_optim.step(X[start : start + 16], y[start : start + 16]))
    assert_close(fast_losses, slow_losses, "run", np.float64)
    assert fast_losses[-1] < fast_losses[0]
    for a, b in zip(parameters(fast), parameters(slow), strict=True):
        assert_close(a, b, "run", np.float64)


@pytest.mark.parametrize("user_loss", [False, True], ids=["builtin_loss", "user_loss"])
def test_user_module_trains_with_sgd_like_the_reference(user_loss, rng):
    X, y = toy_data(rng)
    results = []
    for ns in (pyldl, ref):
        net = mixed_network(ns)
        loss = MAELoss() if user_loss else ns.MSELoss()
        with seeded(8):
            losses = ns.SGD(net, loss, X, y, batch_size=16, gradient_step=0.05, n_iter=15, progress=False)
        results.append((losses, parameters(net)))
    (fast_losses, fast_params), (slow_losses, slow_params) = results
    assert len(fast_losses) == 15 and all(type(v) is float for v in fast_losses)
    assert_close(fast_losses, slow_losses, "run", np.float64)
    for a, b in zip(fast_params, slow_params, strict=True):
        assert_close(a, b, "run", np.float64)


def test_user_built_in_subclass_is_used(rng):
    """A subclass of a built-in module overriding forward must run its own code."""

    class ScaledTanh(pyldl.Tanh):
        def forward(self, X):
            return 2 * super().forward(X)

        def backward_delta(self, input, delta):
            return 2 * super().backward_delta(input, delta)

    X, y = toy_data(rng)
    results = []
    for ns, tanh in ((pyldl, ScaledTanh), (ref, None)):
        with seeded(2):
            layers = [ns.Linear(3, 4), tanh() if tanh else ns.Tanh(), ns.Linear(4, 2)]
        net = ns.Sequential(*layers)
        if tanh is None:
            net._modules.insert(2, _Double())
        with seeded(8):
            losses = ns.SGD(
                net, ns.MSELoss(), X, y, batch_size=16, gradient_step=0.01, n_iter=5, progress=False
            )
        results.append(losses)
    assert_close(results[0], results[1], "run", np.float64)


class _Double(Activation):
    def forward(self, X):
        return 2 * X

    def backward_delta(self, input, delta):
        return 2 * delta


# ------------------------------------------------------ the default dtype (set_default_dtype)


def test_the_default_dtype_is_float64_and_can_be_switched():
    assert pyldl.get_default_dtype() == np.float64
    for name in (np.float32, "float32", np.dtype(np.float32)):
        pyldl.set_default_dtype(np.float64)
        pyldl.set_default_dtype(name)
        assert pyldl.get_default_dtype() == np.dtype(np.float32)
    pyldl.set_default_dtype(np.float64)
    assert pyldl.get_default_dtype() == np.dtype(np.float64)


@pytest.mark.parametrize("bad", [np.float16, np.int64, np.complex128, "float16", "fp32", object], ids=str)
def test_a_default_dtype_other_than_float32_or_float64_is_refused(bad):
    pyldl.set_default_dtype(np.float32)
    with pytest.raises(DTypeError, match="dtype must be float32 or float64, got"):
        pyldl.set_default_dtype(bad)
    assert pyldl.get_default_dtype() == np.float32  # unchanged


def run_python(code, **env):
    """Run ``code`` in a new Python process with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_pyldl_dtype_of_the_environment_is_read_at_import():
    code = "import pyldl; print(pyldl.get_default_dtype(), pyldl.Linear(2, 3).dtype)"
    assert run_python(code, PYLDL_DTYPE="float32").stdout.split() == ["float32", "float32"]
    assert run_python(code, PYLDL_DTYPE="").stdout.split() == ["float64", "float64"]
    refused = run_python(code, PYLDL_DTYPE="float16")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "pyldl.exceptions.DTypeError: PYLDL_DTYPE='float16' in the environment: "
        "dtype must be float32 or float64, got float16"
    )


# A script written for float64 (PyLDL's way: no dtype anywhere), run unchanged.
FLOAT64_SCRIPT = """
import numpy as np
from pyldl.activations import ReLU, Sigmoid, Tanh
from pyldl.layers import AutoEncoder, Sequential
from pyldl.losses import BCELoss, CrossEntropyLoss, MSELoss
from pyldl.modules import Conv1D, Flatten, Linear, MaxPool1D
from pyldl.optimizers import SGD, Optim
from pyldl.utils import encode_one_hot, gen_arti

np.random.seed(0)
X, y = gen_arti(data_type=1, nbex=200, epsilon=0.1)
y = (y + 1) / 2
mlp = Sequential(Linear(2, 8), Tanh(), Linear(8, 1), Sigmoid())
autoencoder = AutoEncoder(Sequential(Linear(2, 3), Tanh()), Sequential(Linear(3, 2), Sigmoid()))
sequences = np.random.uniform(0, 1, (60, 12, 2))
labels = encode_one_hot(np.random.randint(0, 3, 60))
conv = Sequential(Conv1D(3, 2, 4, stride=1), ReLU(), MaxPool1D(2, 2), Flatten(), Linear(20, 3))
trainings = [
    SGD(mlp, MSELoss(), X, y, batch_size=50, gradient_step=1e-2, n_iter=5, progress=False),
    SGD(autoencoder, BCELoss(), (X + 2) / 4, (X + 2) / 4, batch_size=50, n_iter=5, progress=False),
    SGD(conv, CrossEntropyLoss(), sequences, labels, batch_size=16, gradient_step=0.01, n_iter=5,
        progress=False),
]
optim = Optim(mlp, MSELoss(), gradient_step=1e-2)
steps = [optim.step(X[:50], y[:50]) for _ in range(3)]
values = [
    MSELoss().forward(y, mlp(X)),
    BCELoss().forward(y, mlp(X)),
    CrossEntropyLoss().forward(labels, conv(sequences)),
    MSELoss()(X, autoencoder(X)),
]
"""


def test_an_unchanged_float64_script_runs_in_float32_under_pyldl_dtype():
    report = """
import json

namespace = {"__name__": "__main__"}
exec(compile(SCRIPT, "float64_script.py", "exec"), namespace)

def layers(module):
    for name in ("_modules", "_encoder", "_decoder"):
        inner = getattr(module, name, None)
        for part in inner if isinstance(inner, list) else [inner] if inner is not None else []:
            yield from layers(part)
    if module._parameters is not None:
        yield module

networks = [namespace[name] for name in ("mlp", "autoencoder", "conv")]
print(json.dumps({
    "parameters": [str(a.dtype) for net in networks for m in layers(net) for a in (m._parameters, m._bias)],
    "layers": sum(1 for net in networks for _ in layers(net)),
    "outputs": [str(namespace[net](namespace[x]).dtype) for net, x in (("mlp", "X"), ("conv", "sequences"))],
    "values": [type(v).__name__ for v in namespace["values"] + namespace["steps"]],
    "trainings": [sorted({type(v).__name__ for v in losses}) for losses in namespace["trainings"]],
    "lengths": [len(losses) for losses in namespace["trainings"]],
}))
"""
    code = f"SCRIPT = {FLOAT64_SCRIPT!r}\n" + report
    runs = {}
    for name in ("float32", ""):
        done = run_python(code, PYLDL_DTYPE=name)
        assert done.returncode == 0, done.stderr
        runs[name or "float64"] = json.loads(done.stdout)
    got = runs["float32"]
    assert got["layers"] == 8  # 2 + 2 + 2 Linear, 1 Conv1D + 1 Linear
    assert got["parameters"] == ["float32"] * 16
    assert got["outputs"] == ["float32", "float32"]
    assert got["values"] == ["float32"] * 7  # each Loss.forward and Optim.step value
    assert got["trainings"] == [["float"]] * 3 and got["lengths"] == [5, 5, 5]  # SGD: Python floats
    assert runs["float64"]["parameters"] == ["float64"] * 16
    assert runs["float64"]["values"] == ["float64"] * 7
