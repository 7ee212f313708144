"""W1-W10 side by side: pyldl fused, pyldl module by module (Trainer), a hand-written loop on
pyldl's modules, the NumPy reference, the same NumPy operations done bare, PyTorch eager and
JAX (jit + lax.scan), in float64 and float32, in one run.

    python -m benchmarks.compare            # full run, a few minutes on 2 cores
    python -m benchmarks.compare --quick    # about a minute: 3 rounds, W5 and W6 on fewer rows
    python -m benchmarks.compare --workloads W3,W4 --dtypes float32

Method: each implementation runs in its own worker process (so no two libraries' thread
pools live in one process), and the parent drives them round by round: per workload and
dtype, every round times each implementation once, in a rotating order, each after a short
pause so the previous one's spinning threads go to sleep. Seconds per epoch are the median
of the rounds; the ratios compare medians taken in the same rounds. All implementations
start from ``Workload.weights()`` and train on the batches of ``Workload.permutation``;
the first epochs' losses are checked against each other (a warning when they differ).

Writes benchmarks/results/compare.json, compare.png (the ratios) and table.md (the full
tables); puts the full tables and the targets between the ``speed-table`` markers of
docs/benchmarks.md, and a few-line summary between the ``speed-summary`` markers of README.md
(nothing else of either file changes). ``--from-json`` measures nothing and regenerates all
of it from a saved compare.json.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: python benchmarks/compare.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._runners import IMPLEMENTATIONS, LABELS, worker  # noqa: E402
from pyldl.workloads import WORKLOADS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The generated blocks: (file, marker name) -> what goes between <!-- name:start/end -->.
PAGES = {
    "docs": (ROOT / "docs" / "benchmarks.md", "speed-table"),
    "readme": (ROOT / "README.md", "speed-summary"),
}
PYLDL = ("fused", "modules", "hand", "reference")  # the implementations that run pyldl's code
PEERS = ("modules", "reference", "torch", "jax")  # what pyldl fused is compared with
GEMM_N = 2048
# --quick trains these on fewer rows, besides W6 (Workload.quick_samples): W5's PyTorch
# epoch (1437 one-sample steps in eager mode) alone takes 3 s.
QUICK_SAMPLES = {"W5": 256}
# Cells where some implementation needs this long per epoch (W6) get at most 3 rounds.
SLOW_EPOCH_S = 1.0
# The first epochs' losses of all implementations must agree this closely (relative).
LOSS_RTOL = {"float64": 1e-6, "float32": 2e-3}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds, short calls, W5 on 256 rows and W6 on 1024 (about a minute)",
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, e.g. W3,W4")
    parser.add_argument("--dtypes", default="float64,float32", help="comma-separated")
    parser.add_argument(
        "--impls", default=",".join(IMPLEMENTATIONS), help="comma-separated, of: " + " ".join(IMPLEMENTATIONS)
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="timed rounds per cell (default 5, quick 3; at most 3 where an epoch takes over 1 s)",
    )
    parser.add_argument("--min-time", type=float, help="seconds per timed call (default 0.25, quick 0.05)")
    parser.add_argument("--pause", type=float, help="seconds of rest before each timed call (0.2, quick 0.1)")
    parser.add_argument(
        "--empty-cache",
        action="store_true",
        help="give pyldl's workers empty Numba caches, so first calls include all compilation",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="cap threads per library (OpenMP, OpenBLAS, MKL; XLA only for 1); default: no cap",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: redraw the tables, chart, docs page and README summary from this compare.json",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="touch neither docs/benchmarks.md nor README.md's summary"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for name, values, allowed in (
        ("workload", args.workloads, WORKLOADS),
        ("dtype", args.dtypes, ("float64", "float32")),
        ("implementation", args.impls, IMPLEMENTATIONS),
    ):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.pause = args.pause if args.pause is not None else (0.1 if args.quick else 0.2)
    args.min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.25)
    return args


class Worker:
    """The parent's handle on one implementation's process."""

    def __init__(self, context, impl, env, target=worker, args=()):
        self.impl = impl
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, impl, env, *args), daemon=True)
        saved = dict(os.environ)
        os.environ.update(env)  # in the child's environment from its start, before any import
        try:
            self.process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child.close()

    def ask(self, *request):
        self.conn.send(request)
        return self.conn.recv()

    def close(self):
        try:
            self.ask("quit")
        except (BrokenPipeError, EOFError, OSError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()


def thread_env(threads):
    """Environment variables that cap every library's thread pool at ``threads`` (None: no cap)."""
    if not threads:
        return {}
    n = str(threads)
    env = {name: n for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = n
    if threads == 1:  # XLA has no thread-count flag; this is the recipe for one thread
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    return env


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("numpy", "numba", "scipy", "torch", "jax", "pyldl"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(), "versions": versions}


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def run(args):
    started = datetime.datetime.now().astimezone()
    context = multiprocessing.get_context("spawn")
    cache_dirs = []
    workers = {}
    print(f"starting {len(args.impls)} worker processes ({', '.join(args.impls)}) ...", flush=True)
    for impl in args.impls:
        env = thread_env(args.threads)
        if args.empty_cache and impl in PYLDL:
            cache_dirs.append(tempfile.TemporaryDirectory(prefix=f"pyldl-compare-{impl}-"))
            env["NUMBA_CACHE_DIR"] = cache_dirs[-1].name
        workers[impl] = Worker(context, impl, env)
    for handle in workers.values():  # wait until every worker has done its imports
        handle.ask("ping")
    load_before = load_average()
    gemm_worker = workers.get("reference") or workers.get("modules") or workers.get("fused")
    notes, results, gemm = [], [], {}
    try:
        measure_gemm(gemm_worker, args.dtypes, gemm)
        for key in args.workloads:
            for dtype in args.dtypes:
                results.extend(run_cell(args, workers, key, dtype, gemm, notes))
        measure_gemm(gemm_worker, args.dtypes, gemm)  # again at the end: the better one is the limit
    finally:
        for handle in workers.values():
            handle.close()
        for directory in cache_dirs:
            directory.cleanup()
    finished = datetime.datetime.now().astimezone()
    return {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": (finished - started).total_seconds(),
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": load_average()},
        "settings": {
            "command": " ".join(["python -m benchmarks.compare", *args.argv]),
            "quick": args.quick,
            "rounds": args.rounds,
            "rounds_slow_cells": min(args.rounds, 3),
            "min_time_s": args.min_time,
            "pause_s": args.pause,
            "empty_cache": args.empty_cache,
            "threads": args.threads,
            "method": "one worker process per implementation, timed round by round in rotating order, "
            "with a pause before each timed call; medians over rounds",
        },
        "gemm": gemm,
        "results": results,
        "notes": notes,
    }


def measure_gemm(handle, dtypes, gemm):
    """Time a 2048^3 product per dtype (NumPy, in a worker); keep the best rate seen."""
    for dtype in dtypes if handle else ():
        status, value = handle.ask("gemm", dtype)
        if status != "ok":
            continue
        seconds, samples = value
        entry = gemm.setdefault(dtype, {"seconds": seconds, "samples": []})
        entry["samples"] += samples
        entry["seconds"] = min(entry["seconds"], seconds)
        entry["gflops"] = 2 * GEMM_N**3 / entry["seconds"] / 1e9
        print(f"GEMM {GEMM_N}^3 {dtype}: {2 * GEMM_N**3 / seconds / 1e9:.0f} GFLOP/s (NumPy)", flush=True)


def cell_samples(args, key):
    """Rows to train on: None (all) except in --quick mode, for the slow workloads."""
    if not args.quick:
        return None
    return WORKLOADS[key].quick_samples or QUICK_SAMPLES.get(key)


def run_cell(args, workers, key, dtype, gemm, notes):
    """Prepare every implementation on one workload and dtype, then time them round by round."""
    workload = WORKLOADS[key]
    n_samples = cell_samples(args, key)
    rows = {}
    for impl, handle in workers.items():
        row = {
            "workload": key,
            "name": workload.name,
            "dtype": dtype,
            "reduced": n_samples is not None,
            "impl": impl,
            "label": LABELS[impl],
            "available": False,
        }
        rows[impl] = row
        status, value = handle.ask("prepare", key, dtype, n_samples, 2)
        if status != "ok":
            row["note"] = value
            note = (
                f"{LABELS[impl]}: {value}"
                if status == "unavailable"
                else f"{key} {dtype} {LABELS[impl]}: {value}"
            )
            if note not in notes:
                notes.append(note)
            continue
        row.update(available=True, first_call_s=value["first_call"], first_losses=value["losses"])
        row["samples"] = value["samples"]
        row["epoch_s"] = min(value["epoch_times"])
        row["reps"] = max(1, int(round(args.min_time / max(row["epoch_s"], 1e-7))))
        row["round_s"] = []
    check_losses(rows, dtype, notes)
    ready = [impl for impl in workers if rows[impl]["available"]]
    slowest = max((rows[impl]["epoch_s"] for impl in ready), default=0)
    rounds = args.rounds if slowest < SLOW_EPOCH_S else min(args.rounds, 3)
    for r in range(rounds):
        shift = r % max(len(ready), 1)
        for impl in ready[shift:] + ready[:shift]:
            status, value = workers[impl].ask("time", rows[impl]["reps"], args.pause)
            if status == "ok":
                rows[impl]["round_s"].append(value)
            else:
                notes.append(f"{key} {dtype} {LABELS[impl]} round {r}: {value}")
    n = next((row["samples"] for row in rows.values() if "samples" in row), None)
    flops = workload.flops_per_epoch(n) if n else None
    for impl in workers:
        workers[impl].ask("drop")
        row = rows[impl]
        row.update(samples=n, flops_per_epoch=flops)
        if row["available"] and row["round_s"]:
            seconds = float(np.median(row["round_s"]))
            row.update(
                seconds_per_epoch=seconds,
                epochs_per_s=1 / seconds,
                gflops=flops / seconds / 1e9,
                spread=float((max(row["round_s"]) - min(row["round_s"])) / seconds),
            )
            if dtype in gemm:
                row["pct_gemm"] = 100 * row["gflops"] / gemm[dtype]["gflops"]
    for key_name, basis in (("fused_speedup", rows.get("fused")), ("vs_reference", rows.get("reference"))):
        for row in rows.values():
            if basis and basis.get("seconds_per_epoch") and row.get("seconds_per_epoch"):
                row[key_name] = row["seconds_per_epoch"] / basis["seconds_per_epoch"]
    print_cell(list(rows.values()))
    return list(rows.values())


def check_losses(rows, dtype, notes):
    """Warn when the implementations' first epochs' losses differ (same weights, same batches)."""
    available = [row for row in rows.values() if row["available"]]
    if len(available) < 2:
        return
    base = next((row for row in available if row["impl"] == "reference"), available[0])
    for row in available:
        a, b = np.asarray(row["first_losses"]), np.asarray(base["first_losses"])
        close = np.allclose(a, b, rtol=LOSS_RTOL[dtype], atol=0)
        row["losses_match"] = bool(close)
        if not close:
            message = (
                f"WARNING loss mismatch, {row['workload']} {dtype}: {row['label']} {a.tolist()} "
                f"vs {base['label']} {b.tolist()} (rtol {LOSS_RTOL[dtype]})"
            )
            notes.append(message)
            print(message, flush=True)


def fmt_seconds(x):
    return "n/a" if x is None else f"{x:.2e}"


def fmt_number(x, digits=3):
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:.0f}"


def print_cell(rows):
    first = rows[0]
    print(
        f"\n{first['workload']} {first['name']} {first['dtype']}: {first['samples']} samples, "
        f"{first['flops_per_epoch'] / 1e9:.3g} GFLOP per epoch (nominal)"
    )
    header = f"  {'implementation':<24}{'s/epoch':>10}{'epochs/s':>10}{'GFLOP/s':>9}{'% GEMM':>8}"
    header += f"{'spread':>8}{'1st call s':>11}{'fused x':>9}{'NumPy x':>9}"
    print(header)
    for row in rows:
        if not row.get("seconds_per_epoch"):
            print(f"  {row['label']:<24}{'n/a':>10}   {row.get('note', '')}")
            continue
        print(
            f"  {row['label']:<24}{fmt_seconds(row['seconds_per_epoch']):>10}"
            f"{fmt_number(row['epochs_per_s']):>10}{fmt_number(row['gflops']):>9}"
            f"{fmt_number(row.get('pct_gemm'), 2):>8}{100 * row['spread']:>7.0f}%"
            f"{row['first_call_s']:>11.3f}{fmt_number(row.get('fused_speedup')):>9}"
            f"{fmt_number(1 / row['vs_reference'] if row.get('vs_reference') else None):>9}"
        )
    print(flush=True)


def by_cell(report):
    cells = {}
    for row in report["results"]:
        cells.setdefault((row["workload"], row["dtype"]), {})[row["impl"]] = row
    return cells


def markdown_table(report):
    """The full tables: s/epoch (GFLOP/s) per implementation, speed-ups, first calls."""
    machine, settings = report["machine"], report["settings"]
    impls = [impl for impl in IMPLEMENTATIONS if any(r["impl"] == impl for r in report["results"])]
    peers = [impl for impl in PEERS if impl in impls]
    # the hand-written loop's speed-up over the reference, and the reference's cost over bare NumPy
    yardsticks = [impl for impl in ("hand", "bare") if impl in impls and "reference" in impls]
    gemm = ", ".join(f"{d} {g['gflops']:.0f} GFLOP/s" for d, g in report["gemm"].items())
    spreads = [r["spread"] for r in report["results"] if r.get("spread") is not None]
    lines = [
        f"Measured {report['date'][:10]} by `{settings['command']}` on {machine['cpu']} "
        f"({machine['cores']} cores), "
        f"{' '.join(f'{k} {v}' for k, v in machine['versions'].items() if v)}.",
        f"GEMM rate ({GEMM_N}^3 through NumPy, same run): {gemm or 'not measured'}. "
        f"Median of {settings['rounds']} rounds ({settings['rounds_slow_cells']} where an epoch "
        "takes over 1 s); each implementation in its own process, timed in turn; median spread "
        f"between rounds {100 * np.median(spreads) if spreads else 0:.0f}%. "
        f"Threads: {threads_text(settings.get('threads'))}. "
        f"Load average before/after: {fmt_load(report['load_average'])}.",
        "",
        "Seconds per epoch (GFLOP/s, nominal FLOPs of WORKLOADS.md); n/a: not installed or not built.",
        "",
        "| workload | dtype | "
        + " | ".join(LABELS[i] for i in impls)
        + " | fused % of GEMM | "
        + " | ".join(f"fused vs {short(i)}" for i in peers)
        + "".join(
            {"hand": " | hand-written vs NumPy", "bare": " | NumPy reference / bare"}[i] for i in yardsticks
        )
        + " |",
        "|---|---|" + "---:|" * (len(impls) + 1 + len(peers) + len(yardsticks)),
    ]
    for (key, dtype), rows in by_cell(report).items():
        cells = []
        for impl in impls:
            row = rows.get(impl, {})
            seconds = row.get("seconds_per_epoch")
            cells.append("n/a" if seconds is None else f"{seconds:.2e} ({fmt_number(row['gflops'])})")
        fused = rows.get("fused", {})
        cells.append(fmt_number(fused.get("pct_gemm"), 2) + ("%" if fused.get("pct_gemm") else ""))
        cells += [speedup(rows.get(i, {}).get("fused_speedup")) for i in peers]
        for impl in yardsticks:  # reference s / hand s, reference s / bare s
            ratio = rows.get(impl, {}).get("vs_reference")
            cells.append(speedup(ratio and 1 / ratio))
        row = next(iter(rows.values()))
        label = f"{key} {row['name']}" + (f" ({row['samples']} rows)" if row["reduced"] else "")
        lines.append(f"| {label} | {dtype} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "First call in a warm process (compile, or load from Numba's cache, plus one epoch), seconds:",
        "",
        "| workload | dtype | " + " | ".join(LABELS[i] for i in impls) + " |",
        "|---|---|" + "---:|" * len(impls),
    ]
    for (key, dtype), rows in by_cell(report).items():
        cells = [fmt_number(rows.get(i, {}).get("first_call_s")) for i in impls]
        lines.append(f"| {key} | {dtype} | " + " | ".join(cells) + " |")
    if report["notes"]:
        lines += ["", "Notes from this run:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def threads_text(threads):
    if not threads:
        return "each library's default (all cores)"
    return f"{threads} per library, GEMM included (--threads {threads})"


def short(impl):
    return {"modules": "modules", "reference": "NumPy", "torch": "PyTorch", "jax": "JAX"}[impl]


def speedup(x):
    return "n/a" if x is None else f"{x:.2f}x"


def fmt_load(load):
    if not load or not load["before"] or not load["after"]:
        return "n/a"
    return f"{load['before'][0]:.1f}/{load['after'][0]:.1f}"


def draw_chart(report, path):
    """Bars: how many times faster pyldl fused is than each peer, per workload and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = by_cell(report)
    dtypes = list(dict.fromkeys(dtype for _, dtype in cells))
    keys = list(dict.fromkeys(key for key, _ in cells))
    peers = [p for p in PEERS if any(p in rows for rows in cells.values())]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.2), squeeze=False, sharey=True)
    width = 0.8 / max(len(peers), 1)
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        for i, peer in enumerate(peers):
            values = [cells.get((key, dtype), {}).get(peer, {}).get("fused_speedup") for key in keys]
            x = [k + (i - (len(peers) - 1) / 2) * width for k in range(len(keys))]
            heights = [v - 1 if v else 0 for v in values]  # bars grow from 1 (as fast)
            bars = ax.bar(x, heights, width, bottom=1, label=f"vs {LABELS[peer]}")
            for bar, value in zip(bars, values, strict=True):
                if value:
                    y = value * (1.05 if value >= 1 else 0.95)
                    va = "bottom" if value >= 1 else "top"
                    ax.text(
                        bar.get_x() + width / 2,
                        y,
                        f"{value:.2g}" if value < 100 else f"{value:.0f}",
                        ha="center",
                        va=va,
                        fontsize=6,
                    )
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_yscale("log")
        ax.set_title(dtype)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("pyldl fused speed-up (peer s/epoch / fused s/epoch)")
    axes[0][-1].legend(fontsize=8)
    threads = report["settings"].get("threads")
    fig.suptitle(
        f"pyldl fused vs peers, {report['date'][:10]}, {report['machine']['cpu']}, "
        f"{f'{threads} thread(s) per library' if threads else 'default threads'}",
        fontsize=9,
    )
    if not any(r.get("fused_speedup") for r in report["results"]):
        fig.text(0.5, 0.5, "pyldl fused not available in this run", ha="center", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# target -> its checks (workload, dtype, measure, bound). measure: a peer, for pyldl fused's
# speed-up over it (at least bound); "gemm", fused's % of the GEMM rate (at least); "hand", the
# hand-written loop's speed-up over the reference (at least); "bare", the reference's seconds
# over bare NumPy's (at most); "over bare", fused's speed-up over bare NumPy (at least).
_MID = ("W2", "W3", "W4", "W5")
_BOTH = ("float64", "float32")
TARGETS = {
    "fused vs NumPy reference, float64: W3, W4 >= 3x, W5 >= 15x": [
        ("W3", "float64", "reference", 3),
        ("W4", "float64", "reference", 3),
        ("W5", "float64", "reference", 15),
    ],
    "fused vs JAX >= 1.25x, W2-W5, both dtypes": [(w, d, "jax", 1.25) for w in _MID for d in _BOTH],
    "fused vs PyTorch eager >= 3x, W2-W5": [(w, d, "torch", 3) for w in _MID for d in _BOTH],
    "W3 and W4 >= 55% of the GEMM rate (float64)": [
        ("W3", "float64", "gemm", 55),
        ("W4", "float64", "gemm", 55),
    ],
    "hand-written loop vs reference: >= 2x f64 / >= 3x f32 on W2-W5": [
        (w, d, "hand", 2 if d == "float64" else 3) for w in _MID for d in _BOTH
    ],
    "hand-written loop never slower than the reference, W1-W10": [
        (w, d, "hand", 1) for w in WORKLOADS for d in _BOTH
    ],
    "reference within 10% of bare NumPy, W1-W6": [
        (w, d, "bare", 1.1) for w in ("W1", "W2", "W3", "W4", "W5", "W6") for d in _BOTH
    ],
    "W7 fused >= 3x reference, >= 3x PyTorch, >= 1.25x JAX": [
        ("W7", d, peer, bound)
        for peer, bound in (("reference", 3), ("torch", 3), ("jax", 1.25))
        for d in _BOTH
    ],
    "W9, W10 fused >= 4x bare NumPy (float64)": [(w, "float64", "over bare", 4) for w in ("W9", "W10")],
    "W8 fused >= 10x reference, >= 3x PyTorch, >= 1.25x JAX": [
        ("W8", d, peer, bound)
        for peer, bound in (("reference", 10), ("torch", 3), ("jax", 1.25))
        for d in _BOTH
    ],
}


def measure(rows, what):
    """The value a target checks in one cell's rows (see TARGETS), or None when not measured."""
    if what == "gemm":
        return rows.get("fused", {}).get("pct_gemm")
    if what in ("hand", "bare"):
        ratio = rows.get(what, {}).get("vs_reference")  # its seconds over the reference's
        return ratio and 1 / ratio  # hand: the loop's speed-up; bare: the reference's cost over bare
    if what == "over bare":
        return rows.get("bare", {}).get("fused_speedup")
    return rows.get(what, {}).get("fused_speedup")


def targets_table(report):
    """The targets, each with the cells of this run that hold it and those that do not (how far)."""
    cells = by_cell(report)
    lines = [
        "Targets, from the run above (held, or how far):",
        "",
        "| target | held | not yet (how far) |",
        "|---|---|---|",
    ]
    for target, checks in TARGETS.items():
        held, short_of = [], []
        several = len({what for _, _, what, _ in checks}) > 1
        for key, dtype, what, bound in checks:
            value = measure(cells.get((key, dtype), {}), what)
            if value is None:
                continue
            ok = value <= bound if what == "bare" else value >= bound
            text = f"{value:.0f}%" if what == "gemm" else f"{value:.2f}x"
            peer = f" vs {short(what)}" if several else ""
            (held if ok else short_of).append(f"{key} {dtype.replace('float', 'f')}{peer} {text}")
        if held or short_of:
            lines.append(f"| {target} | {', '.join(held)} | {', '.join(short_of)} |")
    return "\n".join(lines) + "\n"


def summary(report):
    """The README's few lines: pyldl fused's speed-up over each peer, median and range over the workloads."""
    machine, cells = report["machine"], by_cell(report)
    dtypes = list(dict.fromkeys(dtype for _, dtype in cells))
    lines = [
        "How many times faster pyldl's compiled epoch is than each peer: the median over "
        f"{', '.join(dict.fromkeys(key for key, _ in cells))} and, in brackets, the range. Measured "
        f"{report['date'][:10]} by `{report['settings']['command']}` on {machine['cpu']} "
        f"({machine['cores']} cores).",
        "",
        "| pyldl fused vs | " + " | ".join(dtypes) + " |",
        "|---|" + "---:|" * len(dtypes),
    ]
    for peer in ("reference", "torch", "jax", "modules"):
        ratios = [
            [
                rows[peer]["fused_speedup"]
                for (_, d), rows in cells.items()
                if d == dtype and rows.get(peer, {}).get("fused_speedup")
            ]
            for dtype in dtypes
        ]
        if any(ratios):
            columns = [f"{np.median(r):.1f}x ({min(r):.1f}-{max(r):.1f}x)" if r else "n/a" for r in ratios]
            lines.append(f"| {LABELS[peer]} | " + " | ".join(columns) + " |")
    return "\n".join(lines) + "\n"


def replace_between(path, marker, text):
    """Put ``text`` between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` of ``path``,
    leaving the rest of the file as it is; False when the file or a marker is missing."""
    if not path.exists():
        return False
    start_marker, end_marker = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    old = path.read_text()
    start, end = old.find(start_marker), old.find(end_marker)
    if start < 0 or end < start:
        return False
    path.write_text(old[: start + len(start_marker)] + "\n" + text + old[end:])
    return True


def write_pages(report, pages=PAGES):
    """The generated blocks of the docs page and the README; returns the files written."""
    blocks = {"docs": markdown_table(report) + "\n" + targets_table(report), "readme": summary(report)}
    return [path for name, (path, marker) in pages.items() if replace_between(path, marker, blocks[name])]


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run(args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if not args.from_json or args.from_json.resolve() != (args.output_dir / "compare.json").resolve():
        (args.output_dir / "compare.json").write_text(json.dumps(report, indent=1) + "\n")
        written.append(args.output_dir / "compare.json")
    table = markdown_table(report)
    (args.output_dir / "table.md").write_text(table)
    written.append(args.output_dir / "table.md")
    try:
        draw_chart(report, args.output_dir / "compare.png")
        written.append(args.output_dir / "compare.png")
    except ImportError:
        print("matplotlib not installed: no chart (pip install pyldl[bench])")
    if not args.no_docs:
        written += write_pages(report)
    print(table)
    for note in report["notes"]:
        print("note:", note)
    print(f"measured in {report['duration_s']:.0f} s; wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
