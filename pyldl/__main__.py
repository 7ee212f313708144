"""Demo: train PyLDL's digit autoencoder with pyldl and with the NumPy reference, and compare.

python -m pyldl [--epochs 200] [--dtype float64|float32] [--seed 0] [--no-progress] [--plot PATH]
"""

import argparse
import sys
import time

import numpy as np

import pyldl
from pyldl import reference


def build(namespace, dtype):
    """The seed README's autoencoder: 64 -> 16 -> 2 -> 16 -> 64, Tanh inside, Sigmoid out."""
    encoder = namespace.Sequential(
        namespace.Linear(64, 16, dtype=dtype), namespace.Tanh(),
        namespace.Linear(16, 2, dtype=dtype), namespace.Tanh(),
    )  # fmt: skip
    decoder = namespace.Sequential(
        namespace.Linear(2, 16, dtype=dtype), namespace.Tanh(),
        namespace.Linear(16, 64, dtype=dtype), namespace.Sigmoid(),
    )  # fmt: skip
    return namespace.AutoEncoder(encoder, decoder)


def train(namespace, X, args, progress):
    """Seeded network and minibatches; returns (the trained network, losses, seconds)."""
    np.random.seed(args.seed)
    net = build(namespace, np.dtype(args.dtype))
    start = time.perf_counter()
    losses = namespace.SGD(net, namespace.BCELoss(), X, X, args.batch_size, args.step, args.epochs,
                           progress=progress)  # fmt: skip
    return net, losses, time.perf_counter() - start


def plot(path, losses, ref_losses, digits, reconstructions):
    """Save the two loss curves and a few digits above their reconstructions as an image."""
    from matplotlib.figure import Figure  # no pyplot: no window, no backend to choose

    n = len(digits)
    fig = Figure(figsize=(3 + 1.2 * n, 3.6), layout="constrained")
    grid = fig.add_gridspec(2, n + 3)
    ax = fig.add_subplot(grid[:, :3])
    epochs = np.arange(1, len(losses) + 1)
    ax.plot(epochs, losses, label="pyldl")
    ax.plot(epochs, ref_losses, "--", label="reference (NumPy)")
    ax.set(xlabel="epoch", ylabel="BCE loss", title="training")
    ax.legend()
    for row, (images, name) in enumerate(((digits, "digit"), (reconstructions, "rebuilt"))):
        for column, image in enumerate(images):
            image_ax = fig.add_subplot(grid[row, column + 3])
            image_ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            image_ax.set_axis_off()
            image_ax.set_title(name, fontsize=8)
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pyldl", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (default 200)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--step", type=float, default=0.01, help="gradient step (default 0.01)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--plot", metavar="PATH", help="save the loss curves and some digits with their reconstructions"
    )
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("The demo needs scikit-learn for its digits data: pip install 'pyldl[demo]'")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit("--plot needs matplotlib: pip install 'pyldl[plot]'")
    X = load_digits().data / 16

    print(f"pyldl {pyldl.__version__}: autoencoder 64-16-2-16-64 on {len(X)} 8x8 digits, "
          f"BCE, batch {args.batch_size}, {args.epochs} epochs, {args.dtype}")  # fmt: skip
    np.random.seed(args.seed)
    start = time.perf_counter()
    pyldl.SGD(build(pyldl, np.dtype(args.dtype)), pyldl.BCELoss(), X, X, args.batch_size,
              args.step, 1, progress=False)  # fmt: skip
    first_call = time.perf_counter() - start

    net, losses, fast = train(pyldl, X, args, not args.no_progress)
    _, ref_losses, slow = train(reference, X, args, False)
    print(f"final loss            {losses[-1]:.6f} (reference {ref_losses[-1]:.6f})")
    print(f"first call            {first_call:.2f} s (compilation, or loading the cache, + 1 epoch)")
    print(f"training, pyldl       {fast:.3f} s ({fast / args.epochs * 1e3:.3f} ms/epoch)")
    print(f"training, reference   {slow:.3f} s ({slow / args.epochs * 1e3:.3f} ms/epoch, NumPy)")
    print(f"speed-up              {slow / fast:.1f}x")
    if args.plot:
        plot(args.plot, losses, ref_losses, X[:6], net(X[:6]))
        print(f"picture               {args.plot}")


if __name__ == "__main__":
    main()
