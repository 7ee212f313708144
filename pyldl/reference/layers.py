"""Containers: Sequential and AutoEncoder. They hold no arithmetic of their own."""

from ..base import Module, as_float_array
from .activations import ReLU, Sigmoid, Softmax, Tanh
from .modules import Flatten, MaxPool1D, Weighted

# parameter-free built-ins: they keep a float input's dtype, so the container converts for them
_BUILT_IN_ACTIVATIONS = (ReLU, Sigmoid, Softmax, Tanh, MaxPool1D, Flatten)
_KINDS = {}  # module class -> (a container, a parameter-free built-in)


def _kind(module):
    """(isinstance(module, Sequential), isinstance(module, _BUILT_IN_ACTIVATIONS)), looked up by
    class: isinstance on these ABCs costs 0.35 us a class, a forward pass checked up to eight."""
    cls = type(module)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = (issubclass(cls, Sequential), issubclass(cls, _BUILT_IN_ACTIVATIONS))
    return kind


class Sequential(Module):
    """Modules applied one after the other; a container may hold containers.

    ``forward`` keeps each module's input; ``backward(input, delta)`` walks the modules
    from last to first (gradient, then delta) and returns the delta for the network's input.
    """

    def __init__(self, *modules):
        super().__init__()
        self._modules = list(modules)
        self._inputs = None

    def __repr__(self):
        inner = ",\n".join("  " + repr(m).replace("\n", "\n  ") for m in self._modules)
        return f"{type(self).__name__}(\n{inner}\n)"

    def _leaves(self):
        for module in self._modules:
            if isinstance(module, Sequential):
                yield from module._leaves()
            else:
                yield module

    def _boundary(self, X):
        """``X`` in the network's dtype when a built-in activation, MaxPool1D or Flatten comes
        first (a Linear or Conv1D converts its own input; a user's module gets ``X`` untouched)."""
        first = self
        while _kind(first)[0]:  # cheap: no generator on the common path
            first = first._modules[0] if first._modules else None
        if not _kind(first)[1]:
            return X
        for module in self._leaves():
            if isinstance(module, Weighted):
                return as_float_array(X, "X", module.dtype)
        return X

    def forward(self, X):
        X = self._boundary(X)
        self._inputs = []
        for module in self._modules:
            self._inputs.append(X)
            X = module(X)
        return X

    def _stored_inputs(self):
        if self._inputs is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward pass first")
        return self._inputs

    def backward(self, input, delta):
        """Accumulate every module's gradient; return the delta for ``input``."""
        for module, x in zip(reversed(self._modules), reversed(self._stored_inputs()), strict=True):
            if _kind(module)[0]:
                delta = module.backward(x, delta)
            else:
                module.backward_update_gradient(x, delta)
                delta = module.backward_delta(x, delta)
        return delta

    def backward_update_gradient(self, input, delta):
        self.backward(input, delta)

    def backward_delta(self, input, delta):
        for module, x in zip(reversed(self._modules), reversed(self._stored_inputs()), strict=True):
            delta = module.backward_delta(x, delta)
        return delta

    def update_parameters(self, gradient_step=1e-3):
        for module in self._modules:
            module.update_parameters(gradient_step)

    def zero_grad(self):
        for module in self._modules:
            module.zero_grad()


class AutoEncoder(Sequential):
    """An encoder to a latent space followed by a decoder back: ``decoder(encoder(X))``."""

    def __init__(self, encoder, decoder):
        super().__init__(encoder, decoder)
        self._encoder = encoder
        self._decoder = decoder

    def encode(self, X):
        """The latent representation of ``X``."""
        return self._encoder(X)
