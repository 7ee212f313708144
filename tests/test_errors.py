"""Every bad input gets a clear error naming the problem, raised before any state changes.

One table: what is called, the exception type, a fragment of its message. After each call
the network's parameters are exactly what they were.
"""

import numpy as np
import pytest
from conftest import seeded

import pyldl
from pyldl import optimizers
from pyldl.exceptions import DimensionMismatchError

X = np.linspace(-1, 1, 30).reshape(10, 3)
Y = np.linspace(0, 1, 20).reshape(10, 2)
ONE_HOT = np.eye(2)[np.arange(10) % 2]


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


def sgd(net, loss=None, X=X, y=Y, **kwargs):
    kwargs = {"batch_size": 4, "gradient_step": 0.1, "n_iter": 2, "progress": False, **kwargs}
    return pyldl.SGD(net, loss or pyldl.MSELoss(), X, y, **kwargs)


def step(net, X=X, y=Y, loss=None):
    return pyldl.Optim(net, loss or pyldl.MSELoss(), 0.1).step(X, y)


def first(net):
    return net._modules[0]


SEQUENCES = np.linspace(-1, 1, 40).reshape(4, 5, 2)  # (batch, length, channels)


class Networks:
    """What a case calls, built seeded before it runs: ``net`` = Sequential(Linear(3, 2),
    Sigmoid()), a Conv1D layer ``conv`` and a network ``conv_net`` that starts with one; a copy
    of every parameter array of each, for ``assert_unchanged``."""

    def __init__(self):
        with seeded(0):
            self.net = pyldl.Sequential(pyldl.Linear(3, 2), pyldl.Sigmoid())
            self.conv = pyldl.Conv1D(3, 2, 4, 2)
            self.conv_net = pyldl.Sequential(pyldl.Conv1D(3, 2, 4, 2), pyldl.Flatten(), pyldl.Linear(8, 2))
        self._built = [
            (array, array.copy())
            for network in (self.net, self.conv, self.conv_net)
            for array in optimizers._arrays(network)
        ]

    def conv_sgd(self, X=SEQUENCES):
        return sgd(self.conv_net, X=X, y=Y[:4])

    def assert_unchanged(self):
        for array, saved in self._built:
            np.testing.assert_array_equal(array, saved)


# id -> (call on a fresh Networks, exception, message fragment)
CASES = {
    "forward 1-D X": (lambda n: n.net(X[0]), DimensionMismatchError, "X must be 2-D"),
    "forward 3-D X": (lambda n: n.net(X[None]), DimensionMismatchError, "X must be 2-D"),
    "forward feature count": (lambda n: n.net(X[:, :2]), DimensionMismatchError, "X has 2 features"),
    "forward complex X": (lambda n: n.net(X + 1j), TypeError, "real numeric"),
    "forward object X": (lambda n: n.net(X.astype(object)), TypeError, "dtype object"),
    "forward strings": (lambda n: n.net(np.full((2, 3), "a")), TypeError, "real numeric"),
    "gradient rows": (
        lambda n: first(n.net).backward_update_gradient(X, Y[:5]),
        DimensionMismatchError,
        "input has 10 rows but delta has 5",
    ),
    "gradient delta width": (
        lambda n: first(n.net).backward_update_gradient(X, X),
        DimensionMismatchError,
        "delta has 3 columns",
    ),
    "delta width": (
        lambda n: first(n.net).backward_delta(X, X),
        DimensionMismatchError,
        "delta has 3 columns",
    ),
    "activation delta shape": (
        lambda n: n.net._modules[1].backward_delta(Y, Y[:3]),
        DimensionMismatchError,
        "delta must have the shape of input",
    ),
    "loss shapes": (lambda n: pyldl.MSELoss()(Y, Y[:, :1]), DimensionMismatchError, "same shape"),
    "loss empty": (lambda n: pyldl.BCELoss()(Y[:0], Y[:0]), ValueError, "empty"),
    "SGD X and y rows": (lambda n: sgd(n.net, y=Y[:9]), DimensionMismatchError, "X has 10 rows but y has 9"),
    "SGD y width": (lambda n: sgd(n.net, y=X), DimensionMismatchError, "network's output"),
    "SGD X features": (lambda n: sgd(n.net, X=Y), DimensionMismatchError, "X has 2 features"),
    "SGD 1-D X": (lambda n: sgd(n.net, X=X[:, 0]), DimensionMismatchError, "X must be 2-D"),
    "SGD empty X": (lambda n: sgd(n.net, X=X[:0], y=Y[:0]), ValueError, "X is empty"),
    "SGD complex y": (lambda n: sgd(n.net, y=Y + 0j), TypeError, "y must be a real numeric array"),
    "SGD batch_size 0": (
        lambda n: sgd(n.net, batch_size=0),
        ValueError,
        "batch_size must be a positive integer",
    ),
    "SGD batch_size float": (lambda n: sgd(n.net, batch_size=2.5), ValueError, "batch_size"),
    "SGD batch_size bool": (lambda n: sgd(n.net, batch_size=True), ValueError, "batch_size"),
    "SGD n_iter negative": (lambda n: sgd(n.net, n_iter=-1), ValueError, "n_iter must be a non-negative"),
    "SGD gradient_step NaN": (lambda n: sgd(n.net, gradient_step=np.nan), ValueError, "gradient_step"),
    "SGD gradient_step text": (lambda n: sgd(n.net, gradient_step="0.1"), ValueError, "gradient_step"),
    "SGD NaN in X": (
        lambda n: sgd(n.net, X=with_value(X, (7, 1), np.nan)),
        ValueError,
        "X contains NaN or inf (first at index (7, 1))",
    ),
    "SGD inf in y": (
        lambda n: sgd(n.net, y=with_value(Y, (2, 0), np.inf)),
        ValueError,
        "y contains NaN or inf",
    ),
    "SGD BCE targets": (
        lambda n: sgd(n.net, pyldl.BCELoss(), y=with_value(Y, (3, 1), 1.5)),
        ValueError,
        "BCELoss targets must lie in [0, 1]",
    ),
    "SGD CE targets outside [0, 1]": (
        lambda n: sgd(n.net, pyldl.CrossEntropyLoss(), y=with_value(ONE_HOT, (4, 1), 2)),
        ValueError,
        "CrossEntropyLoss targets must be one-hot or probability rows (in [0, 1], summing to 1): y[4]",
    ),
    "SGD CE rows not summing to 1": (
        lambda n: sgd(n.net, pyldl.CrossEntropyLoss(), y=Y),
        ValueError,
        "summing to 1): y[0] is",
    ),
    "SGD CE class labels": (
        lambda n: sgd(n.net, pyldl.CrossEntropyLoss(), y=np.arange(10) % 2),
        ValueError,
        "pyldl.encode_one_hot",
    ),
    "SGD CE class labels, module by module": (
        lambda n: sgd(n.net, pyldl.CrossEntropyLoss(), y=np.arange(10) % 2, fused=False),
        ValueError,
        "pyldl.encode_one_hot",
    ),
    "Optim.step CE class labels": (
        lambda n: step(n.net, y=np.arange(10) % 2, loss=pyldl.CrossEntropyLoss()),
        ValueError,
        "pyldl.encode_one_hot",
    ),
    "Optim.step CE probabilities": (
        lambda n: step(n.net, y=with_value(ONE_HOT, (9, 0), 0.5), loss=pyldl.CrossEntropyLoss()),
        ValueError,
        "batch_y[9] is [0.5 1. ]",
    ),
    "CE loss class labels": (
        lambda n: pyldl.CrossEntropyLoss()(np.arange(10) % 2, n.net(X)),
        DimensionMismatchError,
        "encode class labels with pyldl.encode_one_hot",
    ),
    "CE loss 1-D logits": (
        lambda n: pyldl.CrossEntropyLoss()(Y[:, 0], Y[:, 0]),
        DimensionMismatchError,
        "2-D logits",
    ),
    "Optim.step NaN in X": (
        lambda n: step(n.net, X=with_value(X, (0, 0), np.nan)),
        ValueError,
        "batch_x contains NaN or inf (first at index (0, 0))",
    ),
    "Optim.step BCE targets": (
        lambda n: step(n.net, y=with_value(Y, (0, 0), -1), loss=pyldl.BCELoss()),
        ValueError,
        "BCELoss targets",
    ),
    "Optim.step y width": (lambda n: step(n.net, y=X), DimensionMismatchError, "network's output"),
    "Conv1D 2-D X": (lambda n: n.conv(X), DimensionMismatchError, "X must be 3-D (batch, length, channels)"),
    "Conv1D channels": (lambda n: n.conv(SEQUENCES[:, :, :1]), DimensionMismatchError, "X has 1 channels"),
    "Conv1D short sequence": (
        lambda n: n.conv(SEQUENCES[:, :2]),
        DimensionMismatchError,
        "X has length 2, shorter than the kernel (3)",
    ),
    "Conv1D delta shape": (
        lambda n: n.conv.backward_delta(SEQUENCES, np.ones((4, 3, 4))),
        DimensionMismatchError,
        "delta must have the shape of the output",
    ),
    "Conv1D gradient delta shape": (
        lambda n: n.conv.backward_update_gradient(SEQUENCES, np.ones((4, 2, 3))),
        DimensionMismatchError,
        "Expected dimensions (4, 2, 4)",
    ),
    "Conv1D k_size 0": (lambda n: pyldl.Conv1D(0, 1, 2), ValueError, "k_size must be a positive integer"),
    "Conv1D k_size float": (
        lambda n: pyldl.Conv1D(2.0, 1, 2),
        ValueError,
        "k_size must be a positive integer",
    ),
    "Conv1D stride 0": (lambda n: pyldl.Conv1D(3, 1, 2, 0), ValueError, "stride must be a positive integer"),
    "Conv1D stride negative": (lambda n: pyldl.Conv1D(3, 1, 2, -1), ValueError, "stride"),
    "Conv1D chan_out 0": (lambda n: pyldl.Conv1D(3, 1, 0), ValueError, "chan_out"),
    "MaxPool1D 2-D X": (lambda n: pyldl.MaxPool1D(2, 2)(X), DimensionMismatchError, "X must be 3-D"),
    "MaxPool1D short sequence": (
        lambda n: pyldl.MaxPool1D(6, 1)(SEQUENCES),
        DimensionMismatchError,
        "shorter than the kernel (6)",
    ),
    "MaxPool1D delta shape": (
        lambda n: pyldl.MaxPool1D(2, 2).backward_delta(SEQUENCES, SEQUENCES[:, :3]),
        DimensionMismatchError,
        "delta must have the shape of the output",
    ),
    "MaxPool1D delta channels": (
        lambda n: pyldl.MaxPool1D(2, 2).backward_delta(SEQUENCES, SEQUENCES[:, :2, :1]),
        DimensionMismatchError,
        "Expected dimensions (4, 2, 2)",
    ),
    "MaxPool1D k_size negative": (lambda n: pyldl.MaxPool1D(-2, 1), ValueError, "k_size"),
    "MaxPool1D stride bool": (lambda n: pyldl.MaxPool1D(2, True), ValueError, "stride"),
    "SGD conv net 2-D X": (
        lambda n: n.conv_sgd(X=SEQUENCES.reshape(4, 10)),
        DimensionMismatchError,
        "X must be 3-D (batch, length, channels) for a network that starts with Conv1D",
    ),
    "SGD conv net channels": (
        lambda n: n.conv_sgd(X=SEQUENCES[:, :, :1]),
        DimensionMismatchError,
        "channels",
    ),
    "read-only parameters, module by module": (
        lambda n: (first(n.net)._parameters.setflags(write=False), first(n.net).forward(X)),
        ValueError,
        "Linear(3 -> 2) has read-only parameters",
    ),
}


@pytest.mark.parametrize(("call", "error", "fragment"), CASES.values(), ids=list(CASES))
def test_bad_input_is_refused_before_any_change(call, error, fragment):
    networks = Networks()
    rng_state = np.random.get_state()
    with pytest.raises(error, match=None) as raised:
        call(networks)
    assert fragment in str(raised.value)
    assert isinstance(raised.value, ValueError), "pyldl's errors are ValueError subclasses"
    networks.assert_unchanged()
    after = np.random.get_state()
    assert np.array_equal(after[1], rng_state[1]) and after[2] == rng_state[2], "drew from the global RNG"


@pytest.mark.parametrize(
    "make",
    [
        lambda x: np.asfortranarray(x),
        lambda x: np.repeat(x, 2, axis=0)[::2],  # not contiguous
        lambda x: x.astype(np.int64),
        lambda x: x > 0,
    ],
    ids=["Fortran", "strided", "int", "bool"],
)
def test_other_layouts_and_dtypes_train_like_a_float_copy(make):
    data = make(X)
    readonly = data.copy()
    readonly.flags.writeable = False
    losses = []
    for inputs in (np.ascontiguousarray(data, dtype=np.float64), readonly):
        with seeded(0):
            net = pyldl.Sequential(pyldl.Linear(3, 2), pyldl.Sigmoid())
            losses.append(sgd(net, X=inputs))
    assert losses[0] == losses[1]


def test_check_finite_false_skips_the_scan():
    with seeded(0):
        net = pyldl.Sequential(pyldl.Linear(3, 2), pyldl.Sigmoid())
    with pytest.raises(pyldl.DivergenceError) as raised:
        sgd(net, X=with_value(X, (0, 0), np.nan), check_finite=False)
    assert raised.value.epoch == 0


BAD_DATA = {
    "1-D X": (X[:, 0], Y, DimensionMismatchError, "{x} must be 2-D"),
    "rows": (X, Y[:9], DimensionMismatchError, "{x} has 10 rows but {y} has 9"),
    "empty": (X[:0], Y[:0], ValueError, "{x} is empty"),
    "features": (Y, Y, DimensionMismatchError, "{x} has 2 features"),
    "NaN": (with_value(X, (3, 2), np.nan), Y, ValueError, "{x} contains NaN or inf (first at index (3, 2))"),
    "y width": (X, X, DimensionMismatchError, "{y} and the network's output must have the same shape"),
}


# module by module, a shape that does not fit the network is the layers' and the loss's own
# error (CASES): the data check cannot know what user modules take
FUSED_ONLY = {"features", "y width"}
DATA_CASES = [
    pytest.param(*case, fused, id=f"{name}-{'fused' if fused else 'modules'}")
    for name, case in BAD_DATA.items()
    for fused in (True, False)
    if fused or name not in FUSED_ONLY
]


@pytest.mark.parametrize(("bad_x", "bad_y", "error", "fragment", "fused"), DATA_CASES)
def test_sgd_trainer_and_optim_step_check_data_alike(bad_x, bad_y, error, fragment, fused):
    """One check of the data serves SGD, Trainer and Optim.step, with each one's argument names."""
    networks = Networks()
    calls = {
        ("X", "y"): lambda: sgd(networks.net, X=bad_x, y=bad_y, fused=fused),
        ("batch_x", "batch_y"): lambda: pyldl.Optim(networks.net, pyldl.MSELoss(), fused=fused).step(
            bad_x, bad_y
        ),
    }
    for (x, y), call in calls.items():
        with pytest.raises(error) as raised:
            call()
        assert fragment.format(x=x, y=y) in str(raised.value)
    networks.assert_unchanged()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "modules"])
def test_optim_step_takes_a_1d_target_as_a_column(fused):
    target = Y[:, 0].copy()
    results = []
    for y in (target[:, None], target):
        with seeded(0):
            net = pyldl.Sequential(pyldl.Linear(3, 1))
        loss = pyldl.Optim(net, pyldl.MSELoss(), 0.1, fused=fused).step(X, y)
        results.append((loss, net._modules[0]._parameters.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_trainer_refuses_a_network_that_is_no_module():
    with pytest.raises(TypeError, match="network must be a pyldl Module, got list"):
        optimizers.Trainer([pyldl.Linear(3, 1)], pyldl.MSELoss(), X, Y[:, :1], 4)
