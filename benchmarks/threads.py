"""Threads of the fused epoch: the automatic choice, one thread and all cores, idle and loaded.

    python -m benchmarks.threads                        # W1-W6, W9, W10 float64, about 10 minutes
    python -m benchmarks.threads --workloads W4 --rounds 7 --base ''   # without the old commit

One worker process per variant, each training the same workload with pyldl's fused epoch:
``auto`` (``PYLDL_NUM_THREADS`` unset: chosen by measuring), ``one`` (1), ``all`` (every
usable core), ``base`` (commit ``--base``, 26bd714 by default: its fixed rule, from a git
worktree, on this tree's workloads) and ``bare`` (the original's operations written out in
NumPy, on NumPy's own OpenBLAS threads). They are timed round by round in rotating order,
medians of ``--rounds`` rounds (at least 7), first on an idle machine, then with as many
CPU-bound processes as cores started by the benchmark itself. The GEMM yardstick is a 2048^3
product through SciPy's OpenBLAS, the BLAS pyldl calls, at one thread and at all cores, under
the same load. The losses of ``auto``, ``one`` and ``all`` are checked to be bitwise equal.

``--numpy-pool`` measures instead what NumPy's own OpenBLAS, a second thread pool in the same
process, does to pyldl's threads: W10's epochs with and without a NumPy product just before
each, on 1, 2 and the automatic count of threads, and again with ``OPENBLAS_THREAD_TIMEOUT=4``
set before NumPy is imported (a subprocess each).

``--from-json`` redraws the tables in docs/performance.md from a saved threads.json.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
MARKERS = ("<!-- threads:start -->", "<!-- threads:end -->")
POOL_MARKERS = ("<!-- numpy-pool:start -->", "<!-- numpy-pool:end -->")
_POOL_SCRIPT = """
import json, sys, time
import numpy as np
from pyldl import threads
from pyldl.optimizers import Trainer
from pyldl.workloads import WORKLOADS

w = WORKLOADS["W10"]
X, y = w.data()
A, B = np.random.rand(2000, 256), np.random.rand(256, 256)
out = {}
for between in (False, True):
    threads._choices.clear()
    trainers = {t: Trainer(w.network(), w.loss_module(), X, y, w.batch_size, w.gradient_step,
                           order=w.permutation(len(X)), threads=t) for t in (1, 2, None)}
    for trainer in trainers.values():
        for _ in range(12):  # the automatic one chooses here, with or without the products
            if between:
                A @ B
            trainer.epoch()
    times = {t: [] for t in trainers}
    for _ in range(int(sys.argv[1])):
        for t, trainer in trainers.items():
            if between:
                A @ B  # a NumPy product: NumPy's own OpenBLAS, on its default threads
            else:
                time.sleep(0.2)
            start = time.perf_counter()
            trainer.epoch()
            times[t].append(time.perf_counter() - start)
    out["numpy product before each" if between else "nothing before"] = {
        str(t or "auto"): sorted(v)[len(v) // 2] for t, v in times.items()}
print(json.dumps(out))
"""
VARIANTS = ["auto", "one", "all", "base", "bare"]
GEMM_N = 2048


def _worker(conn, impl, env, base):
    """A comparison worker (benchmarks._runners.worker); with ``base``, on that tree's pyldl and
    this tree's workloads."""
    if base:
        if "pyldl" in sys.modules:  # imported with the parent's main module: it would run instead
            raise RuntimeError(f"the base's worker has already imported {sys.modules['pyldl'].__file__}")
        sys.path.insert(0, base)
        import pyldl  # noqa: F401  (the base tree's)

        spec = importlib.util.spec_from_file_location("pyldl.workloads", ROOT / "pyldl" / "workloads.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["pyldl.workloads"] = module
        spec.loader.exec_module(module)
    from benchmarks._runners import worker

    worker(conn, impl, env)


@contextlib.contextmanager
def worktree(commit):
    """A git worktree of ``commit`` in a temporary folder for the block (None: no commit)."""
    if not commit:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="pyldl-base-")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", folder, commit], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", folder], check=False)


def ask(handle, *request):
    """A worker's reply to ``request`` (a ``benchmarks.compare.Worker``), or RuntimeError."""
    status, value = handle.ask(*request)
    if status != "ok":
        raise RuntimeError(f"{handle.variant}: {value}")
    return value


def gemm_rates(cores):
    """GFLOP/s of a 2048^3 float64 product through SciPy's OpenBLAS at 1 and ``cores`` threads."""
    import numpy as np
    from scipy.linalg import blas
    from threadpoolctl import threadpool_limits

    rs = np.random.RandomState(0)
    A, B = (np.asfortranarray(rs.standard_normal((GEMM_N, GEMM_N))) for _ in range(2))
    rates = {}
    for threads in sorted({1, cores}):
        with threadpool_limits(threads, user_api="blas"):
            blas.dgemm(1.0, A, B)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                blas.dgemm(1.0, A, B)
                times.append(time.perf_counter() - start)
        rates[threads] = 2 * GEMM_N**3 / min(times) / 1e9
    return rates


def busy(cores):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def measure(args, workers, key, dtype, min_time):
    """One cell: warm every worker up (auto makes its choice there), then rounds in rotation,
    each timed call at least ``min_time`` seconds."""
    from pyldl.workloads import WORKLOADS

    workload = WORKLOADS[key]
    n_samples = workload.quick_samples
    losses, epoch = {}, {}
    for name, handle in workers.items():
        reply = ask(handle, "prepare", key, dtype, n_samples, args.warmup)
        losses[name], epoch[name] = reply["losses"], min(reply["epoch_times"])
    reps = max(1, round(min_time / max(min(epoch.values()), 1e-4)))
    times = {name: [] for name in workers}
    names = list(workers)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(ask(workers[name], "time", reps, args.pause))
    kept = ask(workers["auto"], "threads")  # auto's counts at the end, for the GEMM rate
    for handle in workers.values():
        ask(handle, "drop")
    same = {name: losses[name] == losses["one"] for name in ("auto", "all") if name in losses}
    flops = workload.flops_per_epoch(n_samples or len(workload.data()[0]))
    return {
        "workload": key,
        "dtype": dtype,
        "samples": n_samples,
        "reps": reps,
        "seconds": {name: sorted(t)[len(t) // 2] for name, t in times.items()},
        "rounds": times,
        "gflops_per_epoch": flops / 1e9,
        "auto_threads": kept,
        "bitwise_equal_to_one": same,
    }


def run(args):
    import multiprocessing

    from benchmarks.compare import Worker
    from pyldl import threads

    os.environ.pop("PYLDL_NUM_THREADS", None)  # auto, base and bare run with no setting

    cores = threads.usable_cores()
    context = multiprocessing.get_context("spawn")
    specs = {
        "auto": ("fused", {}),
        "one": ("fused", {"PYLDL_NUM_THREADS": "1"}),
        "all": ("fused", {"PYLDL_NUM_THREADS": str(cores)}),
        "bare": ("bare", {}),
    }
    report = {
        "cores": cores,
        "base": args.base,
        "rounds": args.rounds,
        "call_seconds": {"idle": args.min_time, "loaded": args.loaded_min_time},
        "conditions": {},
    }
    with worktree(args.base) as base:
        for condition in ("idle", "loaded"):
            load = busy(cores) if condition == "loaded" else []
            min_time = args.loaded_min_time if load else args.min_time
            try:
                time.sleep(1.0 if load else 0.0)
                workers = {
                    name: Worker(context, impl, env, _worker, (None,)) for name, (impl, env) in specs.items()
                }
                if base:
                    workers["base"] = Worker(context, "fused", {}, _worker, (base,))
                for name, handle in workers.items():
                    handle.variant = name
                    ask(handle, "ping")
                cells = []
                report["conditions"][condition] = {
                    "load_average_before": list(os.getloadavg()),
                    "gemm_gflops": gemm_rates(cores),
                    "cells": cells,
                }
                for key in args.workloads:
                    for dtype in args.dtypes:
                        cells.append(measure(args, workers, key, dtype, min_time))
                        print(table_row(cells[-1], report["conditions"][condition]), flush=True)
                report["conditions"][condition]["load_average_after"] = list(os.getloadavg())
                for handle in workers.values():
                    handle.close()
            finally:
                for process in load:
                    process.kill()
                    process.wait()
    return report


def ratio(a, b):
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def seconds(value):
    return "n/a" if value is None else f"{value:.3g}"


def table_row(cell, condition):
    s = cell["seconds"]
    rate = cell["gflops_per_epoch"] / s["auto"]
    threads = _auto_threads(cell)
    gemm = {str(count): float(gflops) for count, gflops in condition["gemm_gflops"].items()}  # as in JSON
    at = gemm.get(str(threads), max(gemm.values()))
    same = "yes" if all(cell["bitwise_equal_to_one"].values()) else "NO"
    dtype = cell["dtype"].replace("float", "f")
    return (
        f"| {cell['workload']} {dtype} | {seconds(s.get('base'))} | {seconds(s['one'])} | "
        f"{seconds(s['all'])} | {seconds(s['auto'])} | {ratio(s.get('base'), s['auto'])} | "
        f"{ratio(s['one'], s['auto'])} | "
        f"{ratio(s.get('bare'), s['auto'])} | {threads or '?'} | {100 * rate / at:.0f}% | "
        f"{same} |"
    )


def _auto_threads(cell):
    """The one count auto kept in ``cell`` (1 where the products are not split), else None."""
    kept = cell.get("auto_threads")
    if kept == []:
        return 1
    return kept[0] if kept and len(kept) == 1 and kept[0] is not None else None


def _calls(report):
    calls = report.get("call_seconds")
    return f" of timed calls of at least {calls['idle']} s idle, {calls['loaded']} s loaded" if calls else ""


def render(report):
    lines = [
        f"Measured by `python -m benchmarks.threads` on {report['cores']} usable cores, medians of "
        f"{report['rounds']} rounds{_calls(report)}; base: commit {report['base'] or 'not run'}. "
        "Seconds per epoch "
        "(float64 unless named); speed-ups of the automatic choice; the thread count it kept at the "
        "end (? where it measured, or kept several); % of the GEMM rate (2048^3 through SciPy's "
        "OpenBLAS, the BLAS pyldl calls, at that count, or all cores where unknown; same load); the "
        "losses of auto and all cores bitwise those of one thread.",
        "",
    ]
    for name, condition in report["conditions"].items():
        gemm = ", ".join(f"{t} thread(s) {g:.0f}" for t, g in condition["gemm_gflops"].items())
        load = condition["load_average_before"][0]
        what = (
            "nothing else running" if name == "idle" else f"{report['cores']} CPU-bound processes beside it"
        )
        lines += [
            f"**{name.capitalize()}** ({what}; load average {load:.1f} at the start; GEMM GFLOP/s: {gemm}):",
            "",
            "| workload | base | one | all | auto | auto vs base | auto vs one | auto vs bare NumPy "
            "| auto's threads | auto, % GEMM | bitwise |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [table_row(cell, condition) for cell in condition["cells"]]
        lines.append("")
    return "\n".join(lines)


def numpy_pool(rounds):
    """W10's seconds per epoch by thread count, with and without a NumPy product before each
    epoch, with OpenBLAS's default thread timeout and with OPENBLAS_THREAD_TIMEOUT=4."""
    report = {}
    for timeout in (None, "4"):
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYLDL_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")
        }
        if timeout:
            env["OPENBLAS_THREAD_TIMEOUT"] = timeout
        done = subprocess.run(
            [sys.executable, "-c", _POOL_SCRIPT, str(rounds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        report[f"OPENBLAS_THREAD_TIMEOUT={timeout}" if timeout else "default"] = json.loads(done.stdout)
    return report


def render_pool(pool, rounds):
    lines = [
        f"W10 float64, seconds per epoch, medians of {rounds} rounds (`python -m benchmarks.threads "
        "--numpy-pool`); before each epoch either a 0.2 s rest or a NumPy product (2000x256 by "
        "256x256, NumPy's OpenBLAS on its default threads):",
        "",
        "| NumPy's OpenBLAS | before each epoch | one thread | two threads | automatic |",
        "|---|---|---|---|---|",
    ]
    for setting, cases in pool.items():
        for case, seconds in cases.items():
            lines.append(
                f"| {setting} | {case} | {seconds['1']:.4f} | {seconds['2']:.4f} | {seconds['auto']:.4f} |"
            )
    return "\n".join(lines)


def write_doc(text, markers=MARKERS):
    page = DOC.read_text()
    start, end = page.index(markers[0]) + len(markers[0]), page.index(markers[1])
    DOC.write_text(page[:start] + "\n" + text + "\n" + page[end:])


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.threads", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6,W9,W10")
    parser.add_argument("--dtypes", default="float64")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=10, help="untimed epochs first (auto chooses there)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timed call, idle")
    parser.add_argument(
        "--loaded-min-time",
        type=float,
        default=1.0,
        help="seconds per timed call, loaded (the machine's share for each call varies more)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.2,
        help="seconds of rest before each timed call (spinning BLAS threads of the previous one go to sleep)",
    )
    parser.add_argument("--base", default="26bd714", help="the commit to compare with ('' for none)")
    parser.add_argument(
        "--numpy-pool", action="store_true", help="measure NumPy's OpenBLAS beside pyldl's threads"
    )
    parser.add_argument("--from-json", type=Path)
    args = parser.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if args.rounds < 7:
        parser.error("--rounds: at least 7")
    saved = RESULTS / "threads.json"
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = json.loads(saved.read_text()) if saved.exists() else {}
        if args.numpy_pool:
            report["numpy_pool"] = {"rounds": args.rounds, "seconds": numpy_pool(args.rounds)}
        else:
            report = {**run(args), "numpy_pool": report.get("numpy_pool")}
        RESULTS.mkdir(exist_ok=True)
        saved.write_text(json.dumps(report, indent=1))
    if "conditions" in report:
        write_doc(render(report))
        print(render(report))
    if report.get("numpy_pool"):
        pool = report["numpy_pool"]
        write_doc(render_pool(pool["seconds"], pool["rounds"]), POOL_MARKERS)
        print(render_pool(pool["seconds"], pool["rounds"]))


if __name__ == "__main__":
    main()
