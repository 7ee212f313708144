"""Code shaped like the original PyLDL's experiment notebooks (its ``experiments/`` folder:
linear, activation, sequential, multiclass, convolutional, clustering, compression, denoiser,
losses), at
tiny sizes: their imports, their hand-written loops calling ``.mean()`` on a loss's
``forward``, their SGD calls and their matplotlib calls, on the Agg backend."""

# The notebooks draw from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import numpy as np
import pytest
from conftest import seeded

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from pyldl.activations import ReLU, Sigmoid, Softmax, Tanh  # noqa: E402
from pyldl.encapsulations import AutoEncoder, Sequential  # noqa: E402
from pyldl.losses import BCELoss, CrossEntropyLoss, MSELoss  # noqa: E402
from pyldl.modules import Conv1D, Flatten, Linear, MaxPool1D  # noqa: E402
from pyldl.optimizers import SGD  # noqa: E402
from pyldl.utils import (  # noqa: E402
    contingency_matrix,
    encode_one_hot,
    gen_arti,
    get_usps,
    kullback_leibler_divergence,
    load_usps,
    plot_data,
    plot_frontiere,
    show_usps,
)


@pytest.fixture(autouse=True)
def figures():
    with seeded(0):
        yield
    plt.close("all")


@pytest.fixture
def usps_file(tmp_path):
    """A small file in USPS's text format: a header line, then label and 256 values per row."""
    rs = np.random.RandomState(0)
    labels = np.repeat(np.arange(4), 10)
    values = rs.uniform(-1, 1, (len(labels), 256))
    path = tmp_path / "USPS_data.txt"
    lines = ["40 256"] + [
        f"{label} " + " ".join(f"{v:.4f}" for v in row) for label, row in zip(labels, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_linear_network():
    X, y = sklearn_datasets.make_regression(n_samples=60, n_features=1, noise=1)
    y = y.reshape(-1, 1)
    network = Linear(X.shape[1], 1)
    loss = MSELoss()

    def gradient_descent(X, y, n_iter=50, gradient_step=1e-3):
        losses = []
        for _ in range(n_iter):
            yhat = network.forward(X)
            losses.append(loss.forward(y, yhat).mean())
            delta = loss.backward(y, yhat)
            network.backward_update_gradient(X, delta)
            network.update_parameters(gradient_step)
            network.zero_grad()
        return losses

    losses = gradient_descent(X, y)
    plt.plot(losses)
    yhat = network.forward(X)
    plt.scatter(X, y)
    plt.plot(X, yhat, color="red")
    assert losses[-1] < losses[0]


@pytest.mark.slow  # seconds without JIT (NUMBA_DISABLE_JIT=1): hundreds of module calls
def test_activation_network():
    X, y = gen_arti(sigma=0.1, nbex=200, data_type=1, epsilon=0.02)
    y = np.where(y == -1, 0, 1)
    network = [Linear(X.shape[1], 8), Tanh(), Linear(8, 1), Sigmoid()]
    loss = MSELoss()

    def gradient_descent(X, y, n_iter_max=200, gradient_step=1e-2):
        losses = []
        for _ in range(n_iter_max):
            z1 = network[0](X)
            a1 = network[1](z1)
            z2 = network[2](a1)
            a2 = network[3](z2)
            loss_value = loss.forward(y, a2)
            losses.append(loss_value.mean())
            delta_loss = loss.backward(y, a2)
            delta_sig = network[3].backward_delta(z2, delta_loss)
            delta_lin2 = network[2].backward_delta(a1, delta_sig)
            delta_tan = network[1].backward_delta(z1, delta_lin2)
            network[2].backward_update_gradient(a1, delta_sig)
            network[0].backward_update_gradient(X, delta_tan)
            network[2].update_parameters(gradient_step)
            network[0].update_parameters(gradient_step)
            network[2].zero_grad()
            network[0].zero_grad()
        return losses

    def predict(X):
        out = X
        for module in network:
            out = module(out)
        return np.where(out >= 0.5, 1, -1)

    losses = gradient_descent(X, y)
    plt.plot(losses)
    plot_frontiere(X, predict, step=20)
    plot_data(X, y)
    assert losses[-1] < losses[0]
    assert np.mean((predict(X) == 1) == (y == 1)) > 0.6


def test_sequential_network():
    X, y = sklearn_datasets.make_regression(n_samples=80, n_features=1, noise=1)
    y = y.reshape(-1, 1)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
    network = Sequential(Linear(X_train.shape[1], 1))
    losses = SGD(
        network, MSELoss(), X_train, y_train, batch_size=X_train.shape[0], gradient_step=1e-4, n_iter=20
    )
    plt.plot(losses)
    plt.scatter(X_test, y_test)
    plt.plot(X_test, network(X_test), color="red")
    assert losses[-1] < losses[0]

    X, y = gen_arti(data_type=1, nbex=200, epsilon=0.1)
    y = np.where(y == -1, 0, 1)
    network = Sequential(Linear(2, 8), Tanh(), Linear(8, 1), Sigmoid())
    losses = SGD(network, MSELoss(), X, y, batch_size=32, gradient_step=1e-2, n_iter=20)
    plot_frontiere(X, lambda x: np.where(network(x) >= 0.5, 1, -1))
    plot_data(X, y)
    assert losses[-1] < losses[0]


@pytest.mark.slow  # seconds without JIT (NUMBA_DISABLE_JIT=1): hundreds of module calls
def test_multiclass_network():
    digits = sklearn_datasets.load_digits()
    X, y = digits.data[:300], digits.target[:300]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
    y_train_one_hot = encode_one_hot(y_train)
    network = Sequential(
        Linear(X_train.shape[1], 32),
        Sigmoid(),
        Linear(32, 16),
        Sigmoid(),
        Linear(16, y_train_one_hot.shape[1]),
    )
    loss = CrossEntropyLoss()
    losses = SGD(network, loss, X_train, y_train_one_hot, batch_size=64, gradient_step=1e-2, n_iter=30)
    plt.plot(losses)
    y_pred = np.argmax(Softmax()(network(X_test)), axis=1)
    matrix = contingency_matrix(y_test, y_pred)
    plt.imshow(matrix)
    assert matrix.sum() == len(y_test)
    assert losses[-1] < losses[0]
    assert np.mean(y_pred == y_test) > 0.3


def test_convolutional_modules():
    X = np.arange(1, 21).reshape(4, 5, 1) * np.ones(3, int)  # integers, as the notebook's
    conv_module = Conv1D(3, 3, 2, 2)
    output = conv_module.forward(X)
    assert output.shape == (4, 2, 2)
    delta = 5 * np.ones_like(output)
    assert conv_module.backward_delta(X, delta).shape == (4, 5, 3)

    X4 = np.tile(np.arange(1, 13).reshape(1, 3, 2, 2), (3, 1, 1, 1))
    flatten_module = Flatten()
    output = flatten_module.forward(X4)
    np.testing.assert_array_equal(output, np.tile(np.arange(1, 13), (3, 1)))
    assert flatten_module.backward_delta(X4, np.ones_like(X4)).shape == (3, 3, 2, 2)

    pool_module = MaxPool1D(3, 2)
    output = pool_module.forward(X)
    np.testing.assert_array_equal(output[:, :, 0], [[3, 5], [8, 10], [13, 15], [18, 20]])
    delta = np.arange(1, 61).reshape(4, 5, 3)  # the input's shape, as the notebook passes it
    backward_delta_output = pool_module.backward_delta(X, delta)
    assert backward_delta_output.shape == (4, 5, 3)
    np.testing.assert_array_equal(backward_delta_output[:, [2, 4]], delta[:, :2])  # the window maxima


@pytest.mark.slow  # seconds without JIT (NUMBA_DISABLE_JIT=1): im2col and pooling as Python loops
def test_convolutional_network(usps_file):
    X_train, y_train = load_usps(usps_file)
    X_test, y_test = X_train[::4], y_train[::4]
    y_train = encode_one_hot(y_train)
    X_train = (X_train - X_train.min()) / (X_train.max() - X_train.min())
    X_train = X_train[:, :, np.newaxis]
    X_test = ((X_test - X_test.min()) / (X_test.max() - X_test.min()))[:, :, np.newaxis]
    assert X_train.shape == (40, 256, 1)

    network = Sequential(
        Conv1D(3, 1, 8, 1), MaxPool1D(2, 2), Flatten(), Linear(127 * 8, 16), ReLU(), Linear(16, 4)
    )
    loss = CrossEntropyLoss()
    losses = SGD(network, loss, X_train, y_train, batch_size=16, gradient_step=1e-2, n_iter=10)
    plt.plot(losses)
    plt.xlabel("Iteration")
    plt.ylabel("Loss")

    def predict(X):
        return network(X).argmax(axis=1)

    def accuracy(y, yhat):
        return (y == yhat).mean()

    yhat = predict(X_test)
    assert 0 <= accuracy(y_test, yhat) <= 1
    m = contingency_matrix(y_test, yhat)
    plt.figure()
    mat_plot = plt.imshow(m)
    plt.title("Contingency Matrix")
    plt.colorbar(mat_plot)
    assert m.sum() == len(y_test)
    assert losses[-1] < losses[0]


@pytest.mark.slow  # seconds without JIT (NUMBA_DISABLE_JIT=1): hundreds of module calls
def test_clustering():
    from sklearn.cluster import KMeans

    digits = sklearn_datasets.load_digits()
    X, y = digits.data[:200], digits.target[:200]
    X = (X - X.min()) / (X.max() - X.min())
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
    encoder = Sequential(Linear(X_train.shape[1], 16), Tanh(), Linear(16, 2), Tanh())
    decoder = Sequential(Linear(2, 16), Tanh(), Linear(16, X_train.shape[1]), Tanh())
    autoencoder = AutoEncoder(encoder, decoder)
    losses = SGD(autoencoder, MSELoss(), X_train, X_train, batch_size=32, gradient_step=1e-3, n_iter=10)
    plt.plot(losses)
    latent = encoder(X_test)
    plt.scatter(latent[:, 0], latent[:, 1], c=y_test)
    clusters = KMeans(n_clusters=10, n_init=1, random_state=0).fit_predict(latent)
    matrix = contingency_matrix(y_test, clusters)
    assert matrix.sum() == len(y_test) and losses[-1] < losses[0]
    reconstructed = autoencoder(X_test)
    assert np.isfinite(kullback_leibler_divergence(X_test, np.abs(reconstructed)))


def test_compression(usps_file):
    from itertools import product

    X, y = load_usps(usps_file)
    X = (X - X.min()) / (X.max() - X.min())
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
    params = {
        "activation_functions": [Sigmoid, Tanh],
        "batch_size": [16],
        "gradient_step": [0.01],
        "loss": [BCELoss, MSELoss],
        "n_epochs": [3],
        "n_neurons_per_layer": [[X_train.shape[1], 16, 4]],
    }
    best_score, best_model = np.inf, None
    for activation, batch_size, gradient_step, loss, n_epochs, n_neurons_per_layer in product(
        *params.values()
    ):
        encoder_layers, decoder_layers = [], []
        for i in range(len(n_neurons_per_layer) - 1):
            encoder_layers += [Linear(n_neurons_per_layer[i], n_neurons_per_layer[i + 1]), activation()]
            decoder_layers = [
                Linear(n_neurons_per_layer[i + 1], n_neurons_per_layer[i]),
                activation(),
            ] + decoder_layers
        autoencoder = AutoEncoder(Sequential(*encoder_layers), Sequential(*decoder_layers))
        losses = SGD(
            autoencoder,
            loss(),
            X_train,
            X_train,
            batch_size=batch_size,
            gradient_step=gradient_step,
            n_iter=n_epochs,
        )
        if losses[-1] < best_score:
            best_model, best_score = autoencoder, losses[-1]
    reconstructed = best_model(X_test)
    fig, axes = plt.subplots(2, 3)
    for i in range(3):
        plt.sca(axes[0, i])
        show_usps(X_test[i])
        plt.sca(axes[1, i])
        show_usps(reconstructed[i])
    assert np.isfinite(best_score)


def test_denoiser(usps_file):
    X, y = load_usps(usps_file)
    X = (X - X.min()) / (X.max() - X.min())
    X, y = get_usps([0, 2], X, y)
    assert list(np.unique(y)) == [0, 2]
    noisy = np.clip(X + np.random.normal(0, 0.2, X.shape), 0, 1)
    autoencoder = AutoEncoder(
        Sequential(Linear(256, 16), Sigmoid(), Linear(16, 4), Sigmoid()),
        Sequential(Linear(4, 16), Sigmoid(), Linear(16, 256), Sigmoid()),
    )
    losses = SGD(autoencoder, BCELoss(), noisy, X, batch_size=8, gradient_step=0.01, n_iter=5)
    denoised = autoencoder(noisy)
    for i, image in enumerate([X[0], noisy[0], denoised[0]]):
        plt.subplot(1, 3, i + 1)
        show_usps(image)
    assert losses[-1] < losses[0]


def test_losses():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    yhat = np.array([[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0, 0.1, 0.9]])
    ce = CrossEntropyLoss()
    ce_output, ce_delta = ce.forward(y, yhat), ce.backward(y, yhat)
    # the original printed -0.16510414229480497: without the row maximum it subtracts
    np.testing.assert_allclose(ce_output, -0.16510414229480497 + np.mean(np.max(yhat, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(ce_delta[0], [-0.46117747, 0.24210857, 0.21906889], atol=1e-8)
    y = np.array([1, 0, 1])
    yhat = np.array([0.9, 0.1, 0.8])
    bce = BCELoss()
    np.testing.assert_allclose(bce.forward(y, yhat), 0.14462152754328741, rtol=1e-12)
    # the notebook's output, [-1.111 1.111 -1.25], predates the division by N (SPEC.md's scaling)
    np.testing.assert_allclose(
        bce.backward(y, yhat), np.array([-1.11111111, 1.11111111, -1.25]) / 3, atol=1e-8
    )
    assert ce_output.mean() == ce_output and bce.forward(y, yhat).mean() == bce.forward(y, yhat)
