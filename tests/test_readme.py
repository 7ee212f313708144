"""The Python examples of the README and of every page in docs/ run as written, so they cannot
rot; their links lead somewhere; their speed figures are what the comparison command makes of
its saved results.

Each page's blocks run in order in one namespace (a later block may build on an earlier one),
under ``__name__ == "__readme__"``: what sits behind ``if __name__ == "__main__":`` (the Dask
example of docs/sweeps.md) is left to its own tests (tests/test_sweeps.py), as are the shell
blocks (tests/test_main.py for the demo, .ci/run for the test command).
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import seeded

from benchmarks import compare, threads

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = {page: re.findall(r"```python\n(.*?)```", page.read_text(), re.S) for page in PAGES if page.exists()}
CASES = [(page, index) for page, blocks in BLOCKS.items() for index in range(len(blocks))]


def name(page):
    return page.relative_to(ROOT).as_posix()


@pytest.mark.skipif(not README.exists(), reason="no README.md yet")
def test_readme_has_python_examples():
    assert BLOCKS[README]


@pytest.mark.parametrize(
    ("page", "index"), CASES, ids=[f"{name(page)}-block{index}" for page, index in CASES]
)
def test_example_runs(page, index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    namespace = {"__name__": "__readme__"}
    with seeded(0):  # examples may seed the global RNG: leave it as it was
        for block in BLOCKS[page][: index + 1]:  # later blocks may build on earlier ones
            exec(compile(block, f"{name(page)}[python block {index}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower()
    for variable, value in namespace.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{variable} is not finite"


@pytest.mark.parametrize("page", [page for page in PAGES if page.exists()], ids=name)
def test_relative_links_lead_to_files(page):
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text())
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, f"{name(page)} links to files that do not exist: {missing}"


def test_speed_figures_are_those_of_the_saved_results(tmp_path):
    """The README's summary and docs/benchmarks.md's tables are what ``python -m benchmarks.compare
    --from-json benchmarks/results/compare.json`` writes: no figure typed by hand, none stale.
    Run on copies: outside the markers nothing changes."""
    report = json.loads((ROOT / "benchmarks" / "results" / "compare.json").read_text())
    pages = {}
    for key, (path, marker) in compare.PAGES.items():
        copy = tmp_path / path.name
        text = path.read_text()
        start, end = text.index(f"<!-- {marker}:start -->"), text.index(f"<!-- {marker}:end -->")
        copy.write_text(text[:start] + f"<!-- {marker}:start -->\nstale\n" + text[end:])
        pages[key] = (copy, marker)
    assert compare.write_pages(report, pages) == [copy for copy, _ in pages.values()]
    for key, (copy, _) in pages.items():
        assert copy.read_text() == compare.PAGES[key][0].read_text(), (
            f"run compare --from-json: {key} is stale"
        )


def test_thread_figures_are_those_of_the_saved_results():
    """docs/performance.md's thread tables are what ``python -m benchmarks.threads --from-json
    benchmarks/results/threads.json`` writes."""
    report = json.loads((ROOT / "benchmarks" / "results" / "threads.json").read_text())
    page = threads.DOC.read_text()
    pool = report["numpy_pool"]
    for text, (start, end) in (
        (threads.render(report), threads.MARKERS),
        (threads.render_pool(pool["seconds"], pool["rounds"]), threads.POOL_MARKERS),
    ):
        assert f"{start}\n{text}\n{end}" in page, (
            "run benchmarks.threads --from-json: docs/performance.md is stale"
        )
