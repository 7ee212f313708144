"""The README's Python examples run as written, so they cannot rot."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import seeded

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if README.exists() else []


@pytest.mark.skipif(not README.exists(), reason="no README.md yet")
def test_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i}")
def test_readme_example_runs(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    namespace = {"__name__": "__readme__"}
    with seeded(0):  # examples may seed the global RNG: leave it as it was
        for block in BLOCKS[: index + 1]:  # later blocks may build on earlier ones
            exec(compile(block, f"README.md[python block {index}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower()
    for name, value in namespace.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{name} is not finite"
