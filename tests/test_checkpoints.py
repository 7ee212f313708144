"""pyldl.save / pyldl.load: exact round trips, atomic writes, and refusal of bad files."""

import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest
from conftest import seeded

import pyldl
from pyldl import (
    AutoEncoder,
    Conv1D,
    Flatten,
    Linear,
    MaxPool1D,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    checkpoints,
)
from pyldl.exceptions import CheckpointError

# name -> a function building a network of the given dtype (input width 3)
NETWORKS = {
    "linear": lambda dt: Linear(3, 4, dtype=dt),
    "linear-no-bias": lambda dt: Linear(3, 2, bias=False, dtype=dt),
    "activation": lambda dt: Tanh(),
    "sequential": lambda dt: Sequential(
        Linear(3, 5, dtype=dt),
        Tanh(),
        Linear(5, 4, dtype=dt),
        Sigmoid(),
        Linear(4, 2, dtype=dt),
        Softmax(),
    ),
    "nested": lambda dt: Sequential(
        Sequential(Linear(3, 4, dtype=dt), ReLU()),
        Sequential(Sequential(Linear(4, 4, bias=False, dtype=dt), Tanh()), Sequential()),
        Linear(4, 1, dtype=dt),
        Sigmoid(),
    ),
    "autoencoder": lambda dt: AutoEncoder(
        Sequential(Linear(3, 2, dtype=dt), Tanh()), Sequential(Linear(2, 3, dtype=dt), Sigmoid())
    ),
    "autoencoder-in-sequential": lambda dt: Sequential(
        Linear(3, 3, dtype=dt),
        AutoEncoder(Linear(3, 2, dtype=dt), Sequential(Tanh(), Linear(2, 3, dtype=dt))),
        Softmax(),
    ),
}


def modules(network):
    """Every module of ``network`` in pre-order (containers included, repeats kept)."""
    yield network
    for child in getattr(network, "_modules", ()):
        yield from modules(child)


def assert_same_network(loaded, original):
    """Same structure, classes, dtypes and bitwise-equal parameters."""
    assert repr(loaded) == repr(original)
    pairs = list(zip(modules(loaded), modules(original), strict=True))
    for new, old in pairs:
        assert type(new) is type(old)
        for name in ("_parameters", "_bias"):
            a, b = getattr(new, name), getattr(old, name)
            if b is None:
                assert a is None
                continue
            assert a.shape == b.shape and a.dtype == b.dtype
            assert a.tobytes() == b.tobytes(), f"{type(old).__name__}.{name} differs"
            assert a.flags.c_contiguous and a.flags.writeable
            assert a is not b


@pytest.fixture
def path(tmp_path):
    return tmp_path / "net.npz"


@pytest.mark.parametrize("name", NETWORKS)
def test_round_trip_is_exact(name, dtype, path):
    np.random.seed(0)
    network = NETWORKS[name](dtype)
    pyldl.save(network, path)
    loaded = pyldl.load(path)
    assert_same_network(loaded, network)
    X = np.random.uniform(-1, 1, (6, 3)).astype(dtype)
    out, expected = loaded(X), network(X)
    assert out.dtype == expected.dtype == dtype
    assert out.tobytes() == expected.tobytes()


# name -> a convolutional network of the given dtype, for inputs (batch, 7, 2)
CONV_NETWORKS = {
    "conv": lambda dt: Sequential(
        Conv1D(3, 2, 4, 2, dtype=dt), ReLU(), MaxPool1D(2, 1), Flatten(), Linear(8, 3, dtype=dt)
    ),
    "conv-no-bias": lambda dt: Sequential(
        Conv1D(2, 2, 3, bias=False, dtype=dt), Conv1D(3, 3, 1, 3, dtype=dt), Flatten(), Sigmoid()
    ),
}


@pytest.mark.parametrize("name", CONV_NETWORKS)
def test_convolutional_round_trip_trains_like_the_original(name, dtype, path):
    np.random.seed(2)
    network = CONV_NETWORKS[name](dtype)
    pyldl.save(network, path)
    loaded = pyldl.load(path)
    assert_same_network(loaded, network)
    X = np.random.uniform(-1, 1, (6, 7, 2)).astype(dtype)
    assert loaded(X).tobytes() == network(X).tobytes()
    y = np.random.uniform(0, 1, network(X).shape)
    losses = []
    for net in (network, loaded):
        with seeded(5):  # the same permutation
            losses.append(pyldl.SGD(net, pyldl.MSELoss(), X, y, 2, 0.1, 3, progress=False))
    assert losses[0] == losses[1]
    assert_same_network(loaded, network)


def test_convolutional_settings_are_checked(path):
    pyldl.save(Sequential(Conv1D(3, 2, 4, 2), MaxPool1D(2, 1)), path)
    with np.load(path) as archive:
        assert archive["module1._parameters"].shape == (3, 2, 4)
    for index, key, value, fragment in [
        (0, "stride", 0, "Conv1D has invalid settings"),
        (0, "k_size", 0, "Conv1D has invalid settings"),
        (0, "chan_in", 3, r"shape \(3, 2, 4\), the architecture says \(3, 3, 4\)"),
        (1, "stride", 1.5, "MaxPool1D has invalid settings"),
        (1, "k_size", -1, "MaxPool1D has invalid settings"),
        (1, "padding", 0, "MaxPool1D has fields"),
    ]:
        pyldl.save(Sequential(Conv1D(3, 2, 4, 2), MaxPool1D(2, 1)), path)
        rewrite(path, set_node(key, value, index))
        with pytest.raises(CheckpointError, match=fragment):
            pyldl.load(path)


@pytest.mark.parametrize("name", ["sequential", "autoencoder-in-sequential"])
def test_loaded_network_trains_like_the_original(name, dtype, path):
    np.random.seed(1)
    network = NETWORKS[name](dtype)
    pyldl.save(network, path)
    loaded = pyldl.load(path)
    X = np.random.uniform(-1, 1, (16, 3))
    y = network(X).copy()
    y += np.random.uniform(-0.1, 0.1, y.shape)
    initial = loaded._modules[0]._parameters.copy()
    losses = []
    for net in (network, loaded):
        optimizer = pyldl.Optim(net, pyldl.MSELoss(), gradient_step=0.05)
        losses.append([optimizer.step(X[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)])
    assert losses[0] == losses[1]
    assert_same_network(loaded, network)
    assert not np.array_equal(loaded._modules[0]._parameters, initial)  # it did train


def test_shared_layer_stays_shared(path):
    shared = Linear(4, 4)
    network = Sequential(Linear(3, 4), Tanh(), shared, Tanh(), shared)
    pyldl.save(network, path)
    loaded = pyldl.load(path)
    assert loaded._modules[2] is loaded._modules[4]
    assert loaded._modules[1] is not loaded._modules[3]
    assert_same_network(loaded, network)


def test_save_stores_user_assigned_parameters_converted(path):
    """SPEC: users assign _parameters/_bias directly (ints, a 1-D bias); save converts them."""
    layer = Linear(2, 3)
    layer._parameters = np.arange(6).reshape(2, 3)
    layer._bias = np.array([1, 2, 3])
    pyldl.save(layer, path)
    loaded = pyldl.load(path)
    assert loaded._parameters.dtype == np.float64
    np.testing.assert_array_equal(loaded._parameters, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(loaded._bias, [[1, 2, 3]])


def test_load_leaves_the_global_rng_alone(path):
    pyldl.save(NETWORKS["nested"](np.float64), path)
    np.random.seed(5)
    expected = np.random.uniform(size=3)
    np.random.seed(5)
    pyldl.load(path)
    np.testing.assert_array_equal(np.random.uniform(size=3), expected)


def test_path_as_string_and_no_suffix_added(tmp_path):
    target = str(tmp_path / "model")
    pyldl.save(Tanh(), target)
    assert os.listdir(tmp_path) == ["model"]
    assert isinstance(pyldl.load(target), Tanh)


def test_checkpoint_is_a_plain_npz_without_pickle(path):
    pyldl.save(NETWORKS["autoencoder"](np.float32), path)
    with np.load(path, allow_pickle=False) as archive:
        description = json.loads(str(archive["architecture"]))
        assert description["format"] == "pyldl-checkpoint" and description["version"] == 1
        assert description["network"]["type"] == "AutoEncoder"
        assert archive["module2._parameters"].dtype == np.float32


# -- refusing what cannot be saved --------------------------------------------------------


class Doubler(pyldl.Module):
    def forward(self, X):
        return 2 * X

    def backward_update_gradient(self, input, delta):
        pass

    def backward_delta(self, input, delta):
        return 2 * delta


class MyLinear(Linear):
    pass


@pytest.mark.parametrize(
    "network, fragment",
    [
        (Sequential(Linear(2, 2), Doubler()), "Doubler, a user-defined module"),
        (MyLinear(2, 2), "MyLinear, a user-defined module"),
        (AutoEncoder(Linear(2, 1), Sequential(Doubler())), "Doubler"),
        (pyldl.reference.Tanh(), "pyldl.reference.activations.Tanh"),
        (Sequential(pyldl.MSELoss()), "MSELoss, not a pyldl Module"),
        ([Linear(2, 2)], "list"),
    ],
    ids=["custom-in-sequential", "subclass", "custom-in-autoencoder", "reference", "loss", "list"],
)
def test_save_refuses_other_modules_and_writes_nothing(network, fragment, tmp_path, path):
    pyldl.save(Tanh(), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=fragment):
        pyldl.save(network, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_save_refuses_a_network_that_contains_itself(path):
    network = Sequential(Linear(2, 2))
    network._modules.append(network)
    with pytest.raises(ValueError, match="contains itself"):
        pyldl.save(network, path)
    assert not path.exists()


# -- atomic writes ------------------------------------------------------------------------


def test_overwrite_keeps_permissions_and_leaves_no_temporary_file(tmp_path, path):
    pyldl.save(Linear(2, 2), path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    path.chmod(0o640)
    pyldl.save(Linear(3, 3), path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert pyldl.load(path)._parameters.shape == (3, 3)
    assert os.listdir(tmp_path) == [path.name]


def test_save_without_proc_or_folder_fsync(tmp_path, path, monkeypatch):
    """Where there is no /proc (macOS) and folders cannot be opened or fsynced (Windows)."""
    real_open, real_fsync = os.open, os.fsync

    def no_proc(file, *args, **kwargs):
        raise FileNotFoundError(file)

    def os_open(file, flags, *args, **kwargs):
        if os.path.isdir(file):
            raise PermissionError(13, "Permission denied", file)
        return real_open(file, flags, *args, **kwargs)

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoints, "open", no_proc, raising=False)  # only /proc is opened
    umask = os.umask(0o027)
    try:
        pyldl.save(Linear(2, 2), path)
        assert path.stat().st_mode & 0o777 == 0o640
        monkeypatch.setattr(os, "open", os_open)
        pyldl.save(Linear(3, 2), path)
        monkeypatch.setattr(os, "open", real_open)
        monkeypatch.setattr(os, "fsync", fsync)
        pyldl.save(Linear(4, 2), path)
    finally:
        os.umask(umask)
    monkeypatch.undo()
    assert pyldl.load(path)._parameters.shape == (4, 2)
    assert os.listdir(tmp_path) == [path.name]


def test_save_fsyncs_the_temporary_file_before_the_rename(tmp_path, path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(source, target):
        calls.append(("replace", os.stat(source).st_ino))
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    pyldl.save(Linear(2, 2), path)
    monkeypatch.undo()
    renamed = [i for i, (name, _) in enumerate(calls) if name == "replace"]
    assert len(renamed) == 1
    inode = calls[renamed[0]][1]
    assert ("fsync", inode) in calls[: renamed[0]]  # the file's data is on disk before its name
    assert path.stat().st_ino == inode


def test_failed_write_removes_its_temporary_file(tmp_path, path, monkeypatch):
    pyldl.save(Linear(2, 2), path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space"):
        pyldl.save(Linear(3, 3), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


# A process that saves a network and is killed (SIGKILL: no cleanup at all) either halfway
# through writing the temporary file, or after writing and fsyncing it, just before rename.
KILLED_WRITER = textwrap.dedent(
    """
    import io, os, signal, sys
    import numpy as np
    import pyldl

    path, where, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class DyingFile(io.FileIO):
        written = 0

        def write(self, data):
            room = limit - DyingFile.written
            if len(data) >= room:
                super().write(bytes(data)[:room])
                os.kill(os.getpid(), signal.SIGKILL)
            DyingFile.written += len(data)
            return super().write(data)

    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "mid-write":
        os.fdopen = lambda fd, mode: DyingFile(fd, "wb")
    else:
        os.replace = die
    np.random.seed(2)
    pyldl.save(pyldl.Sequential(pyldl.Linear(40, 30), pyldl.Tanh(), pyldl.Linear(30, 20)), path)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_killed_write_leaves_the_old_checkpoint_loadable(where, tmp_path, path):
    np.random.seed(3)
    old = NETWORKS["nested"](np.float64)
    pyldl.save(old, path)
    before = path.read_bytes()
    full_size = len(before) + 40 * 30 * 8  # the new network is larger than the old one
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path), where, str(full_size // 2)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".net.npz.")
    assert path.read_bytes() == before
    assert_same_network(pyldl.load(path), old)
    if where == "mid-write":
        assert leftovers[0].stat().st_size == full_size // 2  # the write really stopped halfway
        with pytest.raises(CheckpointError):  # and the half-written file is itself refused
            pyldl.load(leftovers[0])
    else:
        assert pyldl.load(leftovers[0])._modules[0]._parameters.shape == (40, 30)  # complete


# -- refusing bad files -------------------------------------------------------------------


def good_checkpoint(path):
    np.random.seed(4)
    pyldl.save(Sequential(Linear(3, 4), Tanh(), Linear(4, 2, bias=False), Sigmoid()), path)
    return path.read_bytes()


def rewrite(path, change):
    """Rewrite the checkpoint at ``path`` after ``change(arrays, description)``."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    description = json.loads(str(arrays.pop("architecture")))
    change(arrays, description)
    arrays.setdefault("architecture", np.array(json.dumps(description)))
    arrays = {name: value for name, value in arrays.items() if value is not None}
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def set_node(key, value, index=0):
    def change(arrays, description):
        description["network"]["modules"][index][key] = value

    return change


def pop_array(name):
    return lambda arrays, description: arrays.pop(name)


def set_array(name, value):
    return lambda arrays, description: arrays.__setitem__(name, value)


def replace_architecture(value):
    """Store ``value`` (None: nothing) as the architecture."""
    return lambda arrays, description: arrays.__setitem__("architecture", value)


def replace_network(network):
    return lambda arrays, description: description.__setitem__("network", network)


# name -> (how the good checkpoint is altered, a fragment of the error message)
TAMPERED = {
    "missing-weights": (pop_array("module1._parameters"), "'module1._parameters' is missing"),
    "missing-bias": (pop_array("module1._bias"), "'module1._bias' is missing"),
    "extra-array": (set_array("evil", np.zeros(3)), r"unexpected arrays \['evil'\]"),
    "wrong-shape": (set_array("module1._parameters", np.zeros((4, 3))), r"shape \(4, 3\)"),
    "flat-bias": (set_array("module1._bias", np.zeros(4)), r"shape \(4,\)"),
    "float32-weights": (set_array("module1._parameters", np.zeros((3, 4), np.float32)), "float32"),
    "int-weights": (set_array("module1._parameters", np.zeros((3, 4), np.int64)), "int64"),
    "big-endian": (set_array("module1._parameters", np.zeros((3, 4), ">f8")), ">f8"),
    "string-weights": (set_array("module1._parameters", np.full((3, 4), "x")), "<U1"),
    "unknown-type": (set_node("type", "os.system"), "unknown module type 'os.system'"),
    "type-not-string": (set_node("type", ["Linear"]), "unknown module type"),
    "extra-field": (set_node("activation", "relu"), "Linear has fields"),
    "negative-size": (set_node("in_features", -3), "invalid settings"),
    "bool-size": (set_node("out_features", True), "invalid settings"),
    "float-size": (set_node("out_features", 4.0), "invalid settings"),
    "float16": (set_node("dtype", "float16"), "invalid settings"),
    "bias-flag-off": (set_node("bias", False), r"unexpected arrays \['module1._bias'\]"),
    "bias-flag-string": (set_node("bias", "yes"), "invalid settings"),
    "modules-not-list": (
        lambda arrays, d: d["network"].__setitem__("modules", {"0": {"type": "Tanh"}}),
        "'modules' is not a list",
    ),
    "node-not-object": (replace_network(["Tanh"]), "described by list"),
    "same-as-forward": (
        replace_network({"type": "Sequential", "modules": [{"same_as": 5}]}),
        "same_as",
    ),
    "same-as-cycle": (
        replace_network({"type": "Sequential", "modules": [{"same_as": 0}]}),
        "same_as",
    ),
    "same-as-string": (
        replace_network({"type": "Sequential", "modules": [{"same_as": "0"}]}),
        "same_as",
    ),
    "newer-version": (lambda arrays, d: d.__setitem__("version", 2), "format version 2"),
    "other-format": (
        lambda arrays, d: d.__setitem__("format", "keras"),
        "not a pyldl architecture",
    ),
    "extra-top-field": (
        lambda arrays, d: d.__setitem__("code", "print(1)"),
        r"unexpected \['code'\]",
    ),
    "no-network": (lambda arrays, d: d.pop("network"), r"missing \['network'\]"),
    "no-architecture": (replace_architecture(None), "no 'architecture'"),
    "architecture-not-json": (replace_architecture(np.array("{'type': ")), "JSONDecodeError"),
    "architecture-not-string": (replace_architecture(np.arange(3)), "not a string"),
    "architecture-list": (replace_architecture(np.array(["{}", "{}"])), "not a string"),
    "architecture-json-list": (
        replace_architecture(np.array("[1, 2]")),
        "not a pyldl architecture",
    ),
    "deep-nesting": (
        replace_architecture(np.array("[" * 100_000 + "]" * 100_000)),
        "RecursionError",
    ),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_checkpoint_is_refused(case, path):
    change, fragment = TAMPERED[case]
    good_checkpoint(path)
    rewrite(path, change)
    with pytest.raises(CheckpointError, match=fragment) as caught:
        pyldl.load(path)
    assert isinstance(caught.value, ValueError)
    assert str(path) in str(caught.value)


class MakesAFile:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_array_is_never_unpickled(tmp_path, path):
    marker = tmp_path / "code-ran"
    good_checkpoint(path)
    payload = np.array([MakesAFile(str(marker))], dtype=object)
    rewrite(path, set_array("module1._parameters", payload))
    with pytest.raises(CheckpointError, match="Python objects"):
        pyldl.load(path)
    assert not marker.exists()


def test_pickle_file_is_never_unpickled(tmp_path, path):
    marker = tmp_path / "code-ran"
    path.write_bytes(pickle.dumps(MakesAFile(str(marker))))
    with pytest.raises(CheckpointError, match="not an .npz archive"):
        pyldl.load(path)
    assert not marker.exists()


def truncated(keep):
    def make(path, good):
        path.write_bytes(good[: keep(len(good))])

    return make


def flip_byte(where):
    def make(path, good):
        data = bytearray(good)
        data[where(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))

    return make


def write_zip(path, good):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")


def write_compressed(path, good):
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    np.savez_compressed(path, **arrays)


def write_member_without_npy(path, good):
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes", "hello")


def write_oversized_header(path, good):
    """A member whose header announces far more data than it holds."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in arrays.items():
            with archive.open(name + ".npy", "w") as member:
                if name == "module1._parameters":
                    np.lib.format.write_array_header_1_0(
                        member, {"descr": "<f8", "fortran_order": False, "shape": (3, 4)}
                    )
                    member.write(b"\0" * 8)
                else:
                    np.lib.format.write_array(member, value)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npy_version(version, duplicate=None):
    """Rewrite every member as .npy ``version``; ``duplicate``: a member written twice."""

    def make(path, good):
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
            with zipfile.ZipFile(path, "w") as archive:
                for name in [*arrays, *([duplicate] if duplicate else [])]:
                    with archive.open(name + ".npy", "w") as member:
                        np.lib.format.write_array(member, arrays[name], version=version)

    return make


def write_text_architecture(path, good):
    """The architecture as a bare text member, not an .npy array."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
        text = str(arrays.pop("architecture"))
    np.savez(path, **arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("architecture", text)


# name -> (how the file is made from the good checkpoint's bytes, a fragment of the error)
BAD_FILES = {
    "empty": (lambda path, good: path.write_bytes(b""), "not an .npz archive"),
    "text": (lambda path, good: path.write_text("layer 1: 3 -> 4\n"), "not an .npz archive"),
    "npy": (lambda path, good: path.write_bytes(npy_bytes(np.zeros(3))), "not an .npz archive"),
    "foreign-npz": (lambda path, good: np.savez(path, x=np.zeros(3)), "no 'architecture'"),
    "foreign-zip": (write_zip, "no 'architecture'"),
    "compressed": (write_compressed, "compressed"),
    "member-without-npy": (write_member_without_npy, "notes"),
    "oversized-header": (write_oversized_header, "does not hold the data"),
    "npy-version-3": (write_npy_version((3, 0)), r"unsupported .npy version \(3, 0\)"),
    "duplicate-member": (write_npy_version((1, 0), "module1._bias"), "appears twice"),
    "text-architecture": (write_text_architecture, "'architecture' is not an .npy array"),
    "truncated-to-4-bytes": (truncated(lambda n: 4), "BadZipFile"),
    "truncated-to-100-bytes": (truncated(lambda n: 100), "BadZipFile"),
    "truncated-to-half": (truncated(lambda n: n // 2), "BadZipFile"),
    "truncated-by-one-byte": (truncated(lambda n: n - 1), "BadZipFile"),
    "flipped-data-byte": (flip_byte(lambda n: 200), "BadZipFile"),  # inside the first array
    "flipped-directory-byte": (flip_byte(lambda n: n - 30), None),  # in the central directory
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_refused(case, path):
    make, fragment = BAD_FILES[case]
    good = good_checkpoint(path)
    make(path, good)
    with pytest.raises(CheckpointError, match=fragment):
        pyldl.load(path)


def test_npy_version_2_loads(path):
    good_checkpoint(path)
    original = pyldl.load(path)
    write_npy_version((2, 0))(path, None)
    assert_same_network(pyldl.load(path), original)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        pyldl.load(tmp_path / "none.npz")


def test_sgd_saves_a_checkpoint_every_k_epochs_and_after_the_last(tmp_path, monkeypatch):
    import pyldl.checkpoints

    saved_after = []
    real_save = pyldl.checkpoints.save

    def counting_save(network, path):
        saved_after.append(len(losses_so_far))
        real_save(network, path)

    losses_so_far = []
    monkeypatch.setattr(pyldl.checkpoints, "save", counting_save)
    monkeypatch.setattr(
        pyldl.optimizers.Trainer, "epoch", _recording(pyldl.optimizers.Trainer.epoch, losses_so_far)
    )
    np.random.seed(0)
    net = pyldl.Sequential(pyldl.Linear(3, 2), pyldl.Sigmoid())
    X, y = np.random.rand(10, 3), np.random.rand(10, 2)
    path = tmp_path / "run.npz"
    pyldl.SGD(net, pyldl.MSELoss(), X, y, 4, 0.1, 5, progress=False, checkpoint=path, checkpoint_every=2)
    assert saved_after == [2, 4, 5]
    loaded = pyldl.load(path)
    np.testing.assert_array_equal(loaded._modules[0]._parameters, net._modules[0]._parameters)
    with pytest.raises(ValueError, match="checkpoint_every"):
        pyldl.SGD(net, pyldl.MSELoss(), X, y, checkpoint=path, checkpoint_every=0)


def _recording(epoch, record):
    def wrapped(self):
        value = epoch(self)
        record.append(value)
        return value

    return wrapped
