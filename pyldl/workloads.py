"""The benchmark workloads W1-W10: seeded data, networks, training settings and FLOP counts.

One definition shared by the tests, the benchmarks, the comparison command and the demo.
Seeds: data from ``RandomState(0)``; initial weights drawn like PyLDL's Linear (weights then
bias, layer by layer; Conv1D likewise) from ``RandomState(2)``; the minibatch permutation from
``RandomState(1)``. W1, W3, W5, W7, W8, W9 and W10 need scikit-learn (``pip install pyldl[demo]``).
"""

import contextlib
from dataclasses import dataclass

import numpy as np

import pyldl

DATA_SEED, WEIGHTS_SEED, PERMUTATION_SEED = 0, 2, 1


@contextlib.contextmanager
def seeded(seed):
    """Seed NumPy's global RNG (PyLDL's Linear draws from it) for the block, then put back
    the state it had."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _regression(n_samples):
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=n_samples or 800, n_features=1, noise=1, random_state=DATA_SEED)
    return X, y.reshape(-1, 1)


def _four_gaussians(n_samples):
    rs = np.random.RandomState(DATA_SEED)
    per_blob = (n_samples or 4000) // 4
    centers = [(1, 1), (-1, -1), (-1, 1), (1, -1)]
    X = np.vstack([rs.multivariate_normal(c, np.diag([0.1, 0.1]), per_blob) for c in centers])
    y = np.repeat([1.0, 1.0, 0.0, 0.0], per_blob).reshape(-1, 1)
    X += rs.normal(0, 0.02, X.shape)
    order = rs.permutation(len(X))
    return X[order], y[order]


def _digits(n_samples):
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = n_samples or 1437
    return digits.data[:n] / 16, pyldl.encode_one_hot(digits.target)[:n]


def _digit_sequences(n_samples):
    """The digits as sequences of 64 values with one channel: X (N, 64, 1)."""
    X, y = _digits(n_samples)
    return X.reshape(len(X), 64, 1), y


def _uniform_autoencoder(n_samples):
    X = np.random.RandomState(DATA_SEED).uniform(size=(n_samples or 7291, 256))
    return X, X


def _usps_like(n_samples):
    """USPS's shape as PyLDL's notebooks train on it (80% of 9298 rows: 7438 x 256 in [0, 1]):
    the 8x8 digits, each pixel doubled to 16x16, cycled, with a little seeded noise, clipped."""
    from sklearn.datasets import load_digits

    n = n_samples or 7438
    images = load_digits().images / 16
    X = np.kron(images[np.arange(n) % len(images)], np.ones((2, 2))).reshape(n, 256)
    X = np.clip(X + np.random.RandomState(DATA_SEED).normal(0, 0.05, X.shape), 0, 1)
    return X, X


def _wide(n_samples):
    rs = np.random.RandomState(DATA_SEED)
    n = n_samples or 8192
    return rs.standard_normal((n, 1024)), rs.standard_normal((n, 10))


@dataclass(frozen=True)
class Workload:
    """A training task: data, a network (a flat list of layers), a loss and SGD settings.

    ``layers`` holds ``("linear", in, out)``, ``("conv1d", k_size, chan_in, chan_out, stride)``,
    ``("maxpool1d", k_size, stride)`` or a parameter-free module's name (an activation,
    ``"Flatten"``); ``encoder_depth`` splits them into an AutoEncoder's encoder and decoder
    (None: one Sequential). ``length``: the input sequences' length, for networks that start
    with Conv1D (their X is (N, length, channels)).
    """

    key: str
    name: str
    layers: tuple
    loss: str
    batch_size: int
    gradient_step: float
    make_data: object
    encoder_depth: int = None
    quick_samples: int = None
    length: int = None

    def data(self, n_samples=None):
        """(X, y) in float64; ``n_samples`` shrinks the data set (None: full size)."""
        return self.make_data(n_samples)

    def network(self, namespace=pyldl, dtype=np.float64):
        """The network built from ``namespace`` (``pyldl`` or ``pyldl.reference``) with the
        seeded initial weights; the global NumPy RNG is left as it was."""
        with seeded(WEIGHTS_SEED):
            modules = [self._module(namespace, layer, dtype) for layer in self.layers]
        if self.encoder_depth is None:
            return namespace.Sequential(*modules)
        encoder = namespace.Sequential(*modules[: self.encoder_depth])
        return namespace.AutoEncoder(encoder, namespace.Sequential(*modules[self.encoder_depth :]))

    @staticmethod
    def _module(namespace, layer, dtype):
        if isinstance(layer, str):
            return getattr(namespace, layer)()
        kind, *sizes = layer
        if kind == "linear":
            return namespace.Linear(*sizes, dtype=dtype)
        if kind == "conv1d":
            return namespace.Conv1D(*sizes, dtype=dtype)
        return namespace.MaxPool1D(*sizes)

    def loss_module(self, namespace=pyldl):
        losses = {
            "mse": namespace.MSELoss,
            "bce": namespace.BCELoss,
            "cross_entropy": namespace.CrossEntropyLoss,
        }
        return losses[self.loss]()

    def weights(self):
        """[(W, b), ...] of the Linear and Conv1D layers in order, in float64: the initial weights
        of :meth:`network`."""
        from pyldl.base import leaves  # here: benchmarks.threads loads this file on older pyldl

        net = self.network(pyldl.reference)
        return [(m._parameters, m._bias) for _, m in leaves(net) if m._parameters is not None]

    def permutation(self, n_samples):
        """The order of the rows for SGD's minibatches."""
        return np.random.RandomState(PERMUTATION_SEED).permutation(n_samples)

    def flops_per_epoch(self, n_samples):
        """Nominal FLOPs per epoch: 6 x (sum of in x out over Linear layers, plus k_size x chan_in
        x chan_out x d_out over Conv1D layers, d_out its output length) x samples."""
        per_sample, length = 0, self.length
        for layer in self.layers:
            if layer[0] == "linear":
                per_sample += layer[1] * layer[2]
            elif layer[0] == "conv1d":
                k_size, chan_in, chan_out, stride = layer[1:]
                length = (length - k_size) // stride + 1
                per_sample += k_size * chan_in * chan_out * length
            elif layer[0] == "maxpool1d":
                length = (length - layer[1]) // layer[2] + 1
        return 6 * per_sample * n_samples


_MLP3 = (("linear", 64, 128), "Sigmoid", ("linear", 128, 64), "Sigmoid", ("linear", 64, 10), "Sigmoid")


def _autoencoder(widths, activation="Sigmoid"):
    """The layers of an AutoEncoder of ``widths`` and back (an activation after each Linear)."""
    down = list(zip(widths, widths[1:], strict=False))
    pairs = down + [(b, a) for a, b in reversed(down)]
    return tuple(item for a, b in pairs for item in (("linear", a, b), activation))


_W4_LAYERS = _autoencoder((256, 100, 4))

WORKLOADS = {
    w.key: w
    for w in [
        Workload("W1", "regression", (("linear", 1, 1),), "mse", 800, 1e-4, _regression),
        Workload(
            "W2",
            "four-gaussians",
            (("linear", 2, 8), "Tanh", ("linear", 8, 1), "Sigmoid"),
            "mse",
            4000,
            1e-3,
            _four_gaussians,
        ),
        Workload("W3", "digits-mlp", _MLP3, "mse", 64, 1e-3, _digits),
        Workload(
            "W4", "usps-autoencoder", _W4_LAYERS, "bce", 64, 0.01, _uniform_autoencoder, encoder_depth=4
        ),
        Workload("W5", "online-sgd", _MLP3, "mse", 1, 1e-3, _digits),
        Workload(
            "W6",
            "wide-mlp",
            (("linear", 1024, 2048), "ReLU", ("linear", 2048, 2048), "ReLU", ("linear", 2048, 10)),
            "mse",
            256,
            1e-5,
            _wide,
            quick_samples=1024,
        ),
        Workload(
            "W7",
            "digits-multiclass",
            (("linear", 64, 100), "ReLU", ("linear", 100, 10)),
            "cross_entropy",
            32,
            1e-2,
            _digits,
        ),
        Workload(
            "W8",
            "digits-conv1d",
            (
                ("conv1d", 3, 1, 32, 1),
                "ReLU",
                ("maxpool1d", 2, 2),
                "Flatten",
                ("linear", 31 * 32, 100),
                "ReLU",
                ("linear", 100, 10),
            ),
            "cross_entropy",
            32,
            1e-3,
            _digit_sequences,
            length=64,
        ),
        # The widest autoencoder of the compression notebook's grid.
        Workload("W9", "usps-compression", _W4_LAYERS, "bce", 64, 0.01, _usps_like, encoder_depth=4),
        # The clustering notebook's USPS grid at its costliest: the widest widths (256, 128, 64,
        # 32), Sigmoid, BCE, its smallest batch (the most steps an epoch), its largest step.
        Workload(
            "W10",
            "usps-clustering",
            _autoencoder((256, 128, 64, 32)),
            "bce",
            32,
            0.01,
            _usps_like,
            encoder_depth=6,
        ),
    ]
}
