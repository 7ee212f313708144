"""Save a network to one ``.npz`` file and load it back: architecture, parameters, dtype.

The file is an ordinary, uncompressed NumPy ``.npz`` archive that holds no pickled data:

- ``architecture``: a JSON string, ``{"format": "pyldl-checkpoint", "version": 1,
  "pyldl": <version that wrote it>, "network": <node>}``. A node is
  ``{"type": "Linear", "in_features": I, "out_features": O, "bias": true, "dtype": "float32"}``,
  ``{"type": "Conv1D", "k_size": K, "chan_in": I, "chan_out": O, "stride": S, "bias": true,
  "dtype": "float64"}``, ``{"type": "MaxPool1D", "k_size": K, "stride": S}``,
  ``{"type": "Tanh"}`` (Sigmoid, Softmax, ReLU and Flatten alike),
  ``{"type": "Sequential", "modules": [<node>, ...]}`` or
  ``{"type": "AutoEncoder", "encoder": <node>, "decoder": <node>}``. Nodes are numbered in
  pre-order; a module that appears again in the network (a shared layer) is written as
  ``{"same_as": k}``, k being the number of its first appearance.
- ``module{k}._parameters`` and ``module{k}._bias``: the arrays of the Linear or Conv1D layer
  numbered k, in the layer's dtype.

Only pyldl's built-in modules can be saved, and ``load`` builds only those, by name from a
fixed table: a checkpoint can never run code. Every other file (truncated, foreign,
tampered) is refused with :class:`~pyldl.exceptions.CheckpointError`.
"""

import contextlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .base import Module
from .exceptions import CheckpointError
from .optimizers import BUILT_INS

__all__ = ["load", "save"]

FORMAT = "pyldl-checkpoint"
VERSION = 1
_ARCHITECTURE = "architecture"

# The only classes a checkpoint can hold (pyldl's built-in modules); load() builds nothing else.
_CLASSES = {cls.__name__: cls for cls in BUILT_INS}
_NAMES = {cls: name for name, cls in _CLASSES.items()}
_FIELDS = {
    "Linear": {"type", "in_features", "out_features", "bias", "dtype"},
    "Conv1D": {"type", "k_size", "chan_in", "chan_out", "stride", "bias", "dtype"},
    "MaxPool1D": {"type", "k_size", "stride"},
    "Sequential": {"type", "modules"},
    "AutoEncoder": {"type", "encoder", "decoder"},
}
# the fields that give the weights' shape, in order
_WEIGHT_AXES = {"Linear": ("in_features", "out_features"), "Conv1D": ("k_size", "chan_in", "chan_out")}
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def save(network, path):
    """Write ``network`` (architecture, every parameter, dtype) to the ``.npz`` file ``path``.

    The write is atomic: the archive goes to a temporary file in the same folder, is flushed
    to disk, then renamed over ``path``, so a crash mid-write leaves any previous file whole.
    ``path`` is used as given (no ``.npz`` is appended). Gradients are not saved.

    Raises:
        TypeError: the network holds a module that is not one of pyldl's built-in classes
            (Linear, Conv1D, MaxPool1D, Flatten, Tanh, Sigmoid, Softmax, ReLU, Sequential,
            AutoEncoder); nothing is written.
    """
    from . import __version__

    arrays = {}
    node = _describe(network, arrays, {}, set())
    description = {"format": FORMAT, "version": VERSION, "pyldl": __version__, "network": node}
    arrays[_ARCHITECTURE] = np.array(json.dumps(description))
    _write_atomically(os.fspath(path), lambda file: np.savez(file, **arrays))


def load(path):
    """The network saved in ``path`` by :func:`save`, with its parameters and dtype.

    Gradients start at zero; NumPy's global random state is left as it was.

    Raises:
        CheckpointError: ``path`` is not a valid pyldl checkpoint (truncated, another kind of
            file, or altered: unknown module names, missing or extra arrays, wrong shapes or
            dtypes). A ``ValueError`` subclass.
        OSError: ``path`` cannot be opened.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        try:
            return _read(file, path)
        except CheckpointError:
            raise
        except Exception as error:  # any failure to parse untrusted bytes means a bad file
            raise CheckpointError(path, f"{type(error).__name__}: {error}") from error


# -- writing ----------------------------------------------------------------------------


def _describe(module, arrays, seen, active):
    """The architecture node of ``module``; its arrays go into ``arrays``."""
    name = _NAMES.get(type(module))
    if name is None:
        kind = "a user-defined module" if isinstance(module, Module) else "not a pyldl Module"
        raise TypeError(
            f"cannot save {type(module).__module__}.{type(module).__qualname__}, {kind}: "
            f"checkpoints hold only pyldl's built-in modules ({', '.join(_CLASSES)})"
        )
    key = id(module)
    if key in seen:
        if key in active:
            raise ValueError(f"cannot save a network that contains itself (a {name})")
        return {"same_as": seen[key]}
    index = seen[key] = len(seen)
    active.add(key)
    if name in _WEIGHT_AXES:
        W, b = module._weights()
        arrays[f"module{index}._parameters"] = W
        if b is not None:
            arrays[f"module{index}._bias"] = b
        node = {"type": name, **dict(zip(_WEIGHT_AXES[name], W.shape, strict=True))}
        if name == "Conv1D":
            node["stride"] = module._stride
        node.update(bias=b is not None, dtype=W.dtype.name)
    elif name == "MaxPool1D":
        node = {"type": name, "k_size": module._k_size, "stride": module._stride}
    elif name == "AutoEncoder":
        node = {
            "type": name,
            "encoder": _describe(module._encoder, arrays, seen, active),
            "decoder": _describe(module._decoder, arrays, seen, active),
        }
    elif name == "Sequential":
        modules = [_describe(m, arrays, seen, active) for m in module._modules]
        node = {"type": name, "modules": modules}
    else:
        node = {"type": name}
    active.discard(key)
    return node


def _write_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    prefix = f".{os.path.basename(path)}."
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _new_file_mode(path):
    """The permissions ``path`` has, or those a new file gets (mkstemp would give 0o600)."""
    with contextlib.suppress(OSError):
        return os.stat(path).st_mode & 0o7777
    umask = None
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    if umask is None:  # not Linux: read the umask by setting it (briefly, process-wide)
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder):
    """Flush the rename to disk, where the OS lets a folder be opened (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------------------


def _read(file, path):
    if file.read(4) != b"PK\x03\x04":
        raise CheckpointError(path, "it is not an .npz archive")
    file.seek(0)
    size = os.fstat(file.fileno()).st_size
    with np.load(file, allow_pickle=False) as archive:
        reader = _Reader(archive, path, size)
        description = reader.architecture()
        network = reader.module(description["network"])
        extra = set(archive.files) - reader.used
        if extra:
            raise CheckpointError(path, f"unexpected arrays {sorted(extra)}")
    return network


class _Reader:
    """Checks an open archive piece by piece and builds the modules it describes."""

    def __init__(self, archive, path, size):
        self.archive, self.path, self.size = archive, path, size
        self.nodes = []  # modules in pre-order; None while a container is being built
        self.used = set()
        names = archive.files
        if len(set(names)) != len(names):
            self.fail("an array name appears twice")
        for info in archive.zip.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                self.fail(f"member {info.filename!r} is compressed or larger than the file")

    def fail(self, reason):
        raise CheckpointError(self.path, reason)

    def array(self, name, shape=None, dtype=None):
        """The array ``name``, checked (from its header, before reading) against shape/dtype."""
        if name not in self.archive.files:
            self.fail(f"array {name!r} is missing")
        try:
            info = self.archive.zip.getinfo(name + ".npy")
        except KeyError:
            self.fail(f"member {name!r} is not an .npy array")
        with self.archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                header_shape, _, header_dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                header_shape, _, header_dtype = np.lib.format.read_array_header_2_0(member)
            else:
                self.fail(f"array {name!r} has an unsupported .npy version {version}")
            data_size = info.file_size - member.tell()
        if header_dtype.hasobject:
            self.fail(f"array {name!r} holds Python objects")
        if dtype is not None and header_dtype != dtype:
            self.fail(f"array {name!r} has dtype {header_dtype}, the architecture says {dtype}")
        if shape is not None and tuple(header_shape) != shape:
            got = tuple(header_shape)
            self.fail(f"array {name!r} has shape {got}, the architecture says {shape}")
        if math.prod(header_shape) * header_dtype.itemsize != data_size:
            self.fail(f"array {name!r} does not hold the data its header announces")
        self.used.add(name)
        return np.require(self.archive[name], requirements=["C", "W", "O"])

    def architecture(self):
        if _ARCHITECTURE not in self.archive.files:
            self.fail("it has no 'architecture' entry (it was not written by pyldl.save)")
        value = self.array(_ARCHITECTURE)
        if value.dtype.kind != "U" or value.shape != ():
            self.fail("'architecture' is not a string")
        description = json.loads(str(value[()]))
        if not isinstance(description, dict) or description.get("format") != FORMAT:
            self.fail("'architecture' is not a pyldl architecture")
        if description.get("version") != VERSION:
            self.fail(
                f"format version {description.get('version')!r}; "
                f"this pyldl reads version {VERSION} (a newer pyldl may read it)"
            )
        fields = {"format", "version", "pyldl", "network"}
        if set(description) != fields:
            self.fail(
                f"architecture fields: unexpected {sorted(set(description) - fields)}, "
                f"missing {sorted(fields - set(description))}"
            )
        return description

    def module(self, node):
        if not isinstance(node, dict):
            self.fail(f"a module is described by {type(node).__name__}, not an object")
        if set(node) == {"same_as"}:
            k = node["same_as"]
            if not _is_count(k) or k >= len(self.nodes) or self.nodes[k] is None:
                self.fail(f"'same_as' {k!r} names no earlier, complete module")
            return self.nodes[k]
        name = node.get("type")
        if not isinstance(name, str) or name not in _CLASSES:
            self.fail(f"unknown module type {name!r} (known: {', '.join(_CLASSES)})")
        expected = _FIELDS.get(name, {"type"})
        if set(node) != expected:
            self.fail(f"{name} has fields {sorted(node)}, expected {sorted(expected)}")
        index = len(self.nodes)
        self.nodes.append(None)
        if name in _WEIGHT_AXES:
            module = self.weighted(name, node, index)
        elif name == "MaxPool1D":
            if not (_is_count(node["k_size"], 1) and _is_count(node["stride"], 1)):
                self.fail(f"MaxPool1D has invalid settings {node}")
            module = _CLASSES[name](node["k_size"], node["stride"])
        elif name == "Sequential":
            if not isinstance(node["modules"], list):
                self.fail("Sequential 'modules' is not a list")
            module = _CLASSES[name](*[self.module(child) for child in node["modules"]])
        elif name == "AutoEncoder":
            module = _CLASSES[name](self.module(node["encoder"]), self.module(node["decoder"]))
        else:
            module = _CLASSES[name]()
        self.nodes[index] = module
        return module

    def weighted(self, name, node, index):
        shape = tuple(node[axis] for axis in _WEIGHT_AXES[name])
        bias, dtype = node["bias"], node["dtype"]
        stride = node.get("stride", 1)
        smallest = 1 if name == "Conv1D" else 0  # a Conv1D needs a kernel and channels
        sizes_ok = all(_is_count(n, smallest) for n in shape) and _is_count(stride, 1)
        if not (sizes_ok and type(bias) is bool and dtype in _DTYPES):
            self.fail(f"{name} has invalid settings {node}")
        dtype = _DTYPES[dtype]
        weights = self.array(f"module{index}._parameters", shape, dtype)
        b = self.array(f"module{index}._bias", (1, shape[-1]), dtype) if bias else None
        # A layer of size 1 whose arrays are then replaced (as SPEC lets users do): loading
        # neither draws its random numbers nor moves NumPy's global random state.
        state = np.random.get_state()
        try:
            sizes = (1, 1, 1, stride) if name == "Conv1D" else (1, 1)
            layer = _CLASSES[name](*sizes, bias=bias, dtype=dtype)
        finally:
            np.random.set_state(state)
        layer._parameters, layer._bias = weights, b
        layer.zero_grad()
        return layer


def _is_count(value, smallest=0):
    return type(value) is int and value >= smallest
