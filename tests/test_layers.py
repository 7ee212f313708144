"""Sequential and AutoEncoder: routing, gradients of whole networks, dtypes of a network."""

import numpy as np
import pytest
from conftest import assert_close, assert_gradcheck, seeded
from conftest import mlp as every_activation_mlp

import pyldl
import pyldl.reference as ref


def mlp(ns, dtype=np.float64, seed=0):
    with seeded(seed):
        return every_activation_mlp(ns, dtype)


def autoencoder(ns, dtype=np.float64, seed=0):
    with seeded(seed):
        encoder = ns.Sequential(
            ns.Linear(6, 4, dtype=dtype), ns.Tanh(), ns.Linear(4, 2, dtype=dtype), ns.Sigmoid()
        )
        decoder = ns.Sequential(
            ns.Linear(2, 4, dtype=dtype), ns.ReLU(), ns.Linear(4, 6, dtype=dtype), ns.Sigmoid()
        )
    return ns.AutoEncoder(encoder, decoder)


def activation_first(ns, dtype=np.float64, seed=0):
    """A network whose first module is an activation, inside a nested container."""
    with seeded(seed):
        inner = ns.Sequential(ns.Sigmoid(), ns.Linear(4, 5, dtype=dtype))
        return ns.Sequential(inner, ns.Tanh(), ns.Linear(5, 3, dtype=dtype))


NETWORKS = {
    "mlp": (mlp, 4, 3),
    "autoencoder": (autoencoder, 6, 6),
    "activation_first": (activation_first, 4, 3),
}


def linears(module):
    """Every Linear in a network, in forward order."""
    if hasattr(module, "_modules"):
        return [layer for inner in module._modules for layer in linears(inner)]
    return [module] if isinstance(module, ref.Linear) else []


# ---------------------------------------------------------------- routing


def test_sequential_forward_is_the_composition(namespace, dtype, rng):
    net = mlp(namespace, dtype)
    X = rng.standard_normal((5, 4)).astype(dtype)
    expected = X
    for module in net._modules:
        expected = module(expected)
    assert_close(net.forward(X), expected, "op", dtype)
    assert_close(net(X), expected, "op", dtype)


def test_sequential_keeps_each_modules_input(namespace, rng):
    net = mlp(namespace)
    X = rng.standard_normal((5, 4))
    net(X)
    assert len(net._inputs) == len(net._modules)
    assert net._inputs[0] is X
    expected = X
    for module, stored in zip(net._modules, net._inputs, strict=True):
        assert_close(stored, expected, "op", np.float64)
        expected = module(expected)


def test_sequential_backward_walks_the_modules_backwards(namespace, rng):
    net = mlp(namespace)
    X, delta = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    net.zero_grad()
    net(X)
    returned = net.backward(X, delta)

    copy = mlp(namespace)
    inputs = []
    out = X
    for module in copy._modules:
        inputs.append(out)
        out = module(out)
    expected = delta
    for module, x in zip(reversed(copy._modules), reversed(inputs), strict=True):
        module.backward_update_gradient(x, expected)
        expected = module.backward_delta(x, expected)
    assert_close(returned, expected, "op", np.float64)
    for got, want in zip(linears(net), linears(copy), strict=True):
        assert_close(got._gradient, want._gradient, "op", np.float64)
    assert_close(net.backward_delta(X, delta), expected, "op", np.float64)


def test_a_containers_backward_update_gradient_is_its_backward(namespace, rng):
    X, delta = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    net, copy = mlp(namespace), mlp(namespace)
    for network in (net, copy):
        network.zero_grad()
        network(X)
    net.backward_update_gradient(X, delta)
    copy.backward(X, delta)
    assert all(layer._gradient.any() for layer in linears(net))
    for got, want in zip(linears(net), linears(copy), strict=True):
        assert_close(got._gradient, want._gradient, "op", np.float64)


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_network_matches_reference_network(kind, dtype, rng):
    build, n_in, n_out = NETWORKS[kind]
    fast, slow = build(pyldl, dtype), build(ref, dtype)
    X = rng.standard_normal((7, n_in)).astype(dtype)
    delta = rng.standard_normal((7, n_out)).astype(dtype)
    for net in (fast, slow):
        net.zero_grad()
    assert_close(fast(X), slow(X), "run", dtype)
    assert_close(fast.backward(X, delta), slow.backward(X, delta), "run", dtype)
    for a, b in zip(linears(fast), linears(slow), strict=True):
        assert_close(a._gradient, b._gradient, "run", dtype)
    fast.update_parameters(0.1)
    slow.update_parameters(0.1)
    for a, b in zip(linears(fast), linears(slow), strict=True):
        assert_close(a._parameters, b._parameters, "run", dtype)


def test_update_parameters_and_zero_grad_reach_every_layer(namespace, rng):
    net = autoencoder(namespace)
    X = rng.standard_normal((3, 6))
    net(X)
    net.backward(X, rng.standard_normal((3, 6)))
    before = [(m._parameters.copy(), m._bias.copy()) for m in linears(net)]
    grads = [(m._gradient.copy(), m._gradient_bias.copy()) for m in linears(net)]
    net.update_parameters()  # default step 1e-3
    for m, (W, b), (gW, gb) in zip(linears(net), before, grads, strict=True):
        assert_close(m._parameters, W - 1e-3 * gW, "op", np.float64)
        assert_close(m._bias, b - 1e-3 * gb, "op", np.float64)
    net.zero_grad()
    for m in linears(net):
        assert not m._gradient.any() and not m._gradient_bias.any()


def test_backward_accumulates_over_batches(namespace, rng):
    net = mlp(namespace)
    X1, X2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    d1, d2 = rng.standard_normal((3, 3)), rng.standard_normal((2, 3))
    net.zero_grad()
    net(X1)
    net.backward(X1, d1)
    net(X2)
    net.backward(X2, d2)
    accumulated = [m._gradient.copy() for m in linears(net)]

    expected = [np.zeros_like(g) for g in accumulated]
    for X, d in ((X1, d1), (X2, d2)):
        net.zero_grad()
        net(X)
        net.backward(X, d)
        expected = [e + m._gradient for e, m in zip(expected, linears(net), strict=True)]
    for got, want in zip(accumulated, expected, strict=True):
        assert_close(got, want, "op", np.float64)


def test_nested_sequential(namespace, rng):
    with seeded(4):
        inner = namespace.Sequential(namespace.Linear(3, 4), namespace.Tanh())
        net = namespace.Sequential(inner, namespace.Linear(4, 2), namespace.Sigmoid())
    with seeded(4):
        flat = namespace.Sequential(
            namespace.Linear(3, 4), namespace.Tanh(), namespace.Linear(4, 2), namespace.Sigmoid()
        )
    X, delta = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    assert_close(net(X), flat(X), "op", np.float64)
    assert_close(net.backward(X, delta), flat.backward(X, delta), "op", np.float64)
    for a, b in zip(linears(net), linears(flat), strict=True):
        assert_close(a._gradient, b._gradient, "op", np.float64)


def test_autoencoder_structure(namespace, rng):
    net = autoencoder(namespace)
    assert isinstance(net, namespace.Sequential)
    assert net._modules == [net._encoder, net._decoder]
    X = rng.uniform(size=(4, 6))
    code = net._encoder(X)
    assert code.shape == (4, 2)
    assert_close(net.encode(X), code, "op", np.float64)
    assert_close(net(X), net._decoder(code), "op", np.float64)


def test_backward_before_forward_is_an_error(namespace):
    with pytest.raises(RuntimeError, match="forward"):
        mlp(namespace).backward(np.ones((1, 4)), np.ones((1, 3)))


def test_repr_lists_the_modules(namespace):
    text = repr(mlp(namespace))
    assert text.startswith("Sequential(") and "Linear(4 -> 6)" in text and "Softmax()" in text


def test_encapsulations_is_an_alias_of_layers():
    import pyldl.encapsulations
    import pyldl.layers

    assert pyldl.encapsulations.Sequential is pyldl.layers.Sequential
    assert pyldl.encapsulations.AutoEncoder is pyldl.layers.AutoEncoder


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_network_gradcheck(namespace, kind, rng):
    build, n_in, n_out = NETWORKS[kind]
    net = build(namespace)
    X, G = rng.standard_normal((5, n_in)), rng.standard_normal((5, n_out))

    def f():
        return float(np.sum(net.forward(X) * G))

    net(X)
    net.backward(X, rng.standard_normal((5, n_out)))  # stale gradients
    net.zero_grad()
    net(X)
    delta = net.backward(X, G)
    assert_gradcheck(delta, f, X)
    for layer in linears(net):
        assert_gradcheck(layer._gradient, f, layer._parameters)
        if layer._bias is not None:
            assert_gradcheck(layer._gradient_bias, f, layer._bias)


# ---------------------------------------------------------------- dtypes of a network


@pytest.mark.parametrize(
    "X",
    [
        np.linspace(-1, 1, 24).reshape(6, 4),
        np.linspace(-1, 1, 24).reshape(6, 4).astype(np.float32),
        np.arange(24).reshape(6, 4) % 3,
        np.arange(24).reshape(6, 4) % 2 == 0,
    ],
    ids=["float64", "float32", "int", "bool"],
)
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_network_keeps_its_dtype(namespace, kind, dtype, X):
    build, n_in, n_out = NETWORKS[kind]
    net = build(namespace, dtype)
    if n_in != X.shape[1]:
        X = np.hstack([X, X[:, :2]])
    y = np.eye(6, n_out)

    out = net(X)
    assert out.dtype == dtype and out.shape == (6, n_out)
    stack = [net]
    while stack:  # every intermediate output too
        container = stack.pop()
        for module, stored in zip(container._modules, container._inputs, strict=True):
            if stored is not X or kind == "activation_first":  # converted at the boundary
                assert np.asarray(stored).dtype == dtype
            if hasattr(module, "_modules"):
                stack.append(module)
    for loss in (namespace.MSELoss(), namespace.BCELoss()):
        delta = loss.backward(y, out)
        assert delta.dtype == dtype
        net.zero_grad()
        assert net.backward(X, delta).dtype == dtype
        net.update_parameters(0.1)
    for layer in linears(net):
        arrays = [layer._parameters, layer._gradient, layer._bias, layer._gradient_bias]
        assert all(a.dtype == dtype for a in arrays if a is not None)
    assert net(X).dtype == dtype


def test_float32_network_tracks_the_float64_one(rng):
    single, double = mlp(pyldl, np.float32), mlp(pyldl, np.float64)
    X = rng.standard_normal((5, 4))
    assert_close(single(X), double(X).astype(np.float32), "op", np.float32)
