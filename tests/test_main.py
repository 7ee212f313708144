"""The demo, ``python -m pyldl``, on a slice of the digits so that it is quick (also without JIT)."""

import sys
import types

import numpy as np
import pytest
from conftest import seeded

from pyldl.__main__ import main


@pytest.fixture
def few_digits(monkeypatch):
    """scikit-learn's digits, cut to 64 images."""
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits().data[:64]
    monkeypatch.setattr(datasets, "load_digits", lambda: types.SimpleNamespace(data=data))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_demo_trains_and_reports(dtype, few_digits, capsys):
    with seeded(0):
        main(["--epochs", "2", "--dtype", dtype, "--batch-size", "16", "--no-progress"])
    out = capsys.readouterr().out
    assert f"on 64 8x8 digits, BCE, batch 16, 2 epochs, {dtype}" in out
    final = [line.split() for line in out.splitlines() if line.startswith("final loss")]
    loss, reference = float(final[0][2]), float(final[0][4].rstrip(")"))
    assert np.isfinite(loss) and loss == pytest.approx(reference, rel=1e-4)
    assert "speed-up" in out


def test_demo_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    with pytest.raises(SystemExit, match=r"pip install 'pyldl\[demo\]'"):
        main(["--epochs", "1"])


def test_demo_saves_a_picture(few_digits, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "demo.png"
    with seeded(0):
        main(["--epochs", "2", "--batch-size", "16", "--no-progress", "--plot", str(path)])
    assert capsys.readouterr().out.splitlines()[-1] == f"picture               {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_demo_plot_without_matplotlib(few_digits, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(SystemExit, match=r"--plot needs matplotlib: pip install 'pyldl\[plot\]'"):
        main(["--epochs", "1", "--plot", str(tmp_path / "demo.png")])
    assert not (tmp_path / "demo.png").exists()
