"""The errors pyldl raises; all are ``ValueError`` subclasses, so ``except ValueError`` works."""


class DimensionMismatchError(ValueError):
    """An array's shape does not fit the layer or the other array it meets.

    ``expected`` and ``got`` keep the original's attributes; ``message`` says what was checked.
    """

    def __init__(self, expected, got, message=None):
        self.expected = expected
        self.got = got
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        text = f"Expected dimensions {self.expected}, got {self.got}."
        return f"{self.message}: {text}" if self.message else text


class DTypeError(TypeError, ValueError):
    """An array of a dtype pyldl cannot compute with (complex, object, text...).

    A ``TypeError``, as NumPy would raise, and a ``ValueError`` like every pyldl input error.
    """


class DivergenceError(ValueError):
    """Training produced a NaN or inf epoch loss.

    ``epoch`` is the first bad epoch (0-based), ``losses`` the epoch losses up to and
    including it; the network keeps the parameters of the last finite epoch.
    """

    def __init__(self, epoch, losses):
        self.epoch = epoch
        self.losses = list(losses)
        super().__init__(
            f"training diverged at epoch {epoch}: its loss is {self.losses[-1]}; "
            "the network keeps the parameters of the last finite epoch "
            "(try a smaller gradient_step)"
        )


class CheckpointError(ValueError):
    """A file given to :func:`pyldl.load` is not a valid pyldl checkpoint.

    Raised for truncated, foreign and tampered files; ``path`` names the file and the
    message says what was wrong with it.
    """

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: not a valid pyldl checkpoint: {reason}")
