"""This tree against a base commit, fused and module by module, interleaved in one run.

    python -m benchmarks.against --base 26bd714 --rounds 7 --warmup 30

Each (tree, path) trains in a worker process of its own (``benchmarks.compare.Worker``; the
base from a git worktree, on this tree's workloads: ``benchmarks.threads``). Per cell the two
trees alternate, round after round, after ``--warmup`` untimed epochs (the automatic thread
choice is made there); the medians' ratio is the speed of this tree against the base.
"""

import argparse
import multiprocessing
import os

from benchmarks.threads import _worker, ask, worktree  # (no pyldl: see main)

PATHS = ("fused", "modules")


def measure(workers, key, dtype, rounds, warmup, min_time, pause):
    from pyldl.workloads import WORKLOADS

    rows = []
    for path in PATHS:
        pair = {tree: workers[tree, path] for tree in ("this", "base")}
        epoch = {
            tree: min(
                ask(handle, "prepare", key, dtype, WORKLOADS[key].quick_samples, max(2, warmup))[
                    "epoch_times"
                ]
            )
            for tree, handle in pair.items()
        }
        reps = max(1, round(min_time / max(min(epoch.values()), 1e-4)))
        times = {tree: [] for tree in pair}
        for r in range(rounds):
            for tree in ("this", "base") if r % 2 == 0 else ("base", "this"):
                times[tree].append(ask(pair[tree], "time", reps, pause))
        for handle in pair.values():
            ask(handle, "drop")
        median = {tree: sorted(t)[len(t) // 2] for tree, t in times.items()}
        rows.append((key, dtype, path, median["this"], median["base"], median["base"] / median["this"]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.against", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="26bd714")
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6,W7,W8,W9,W10")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=30, help="untimed epochs first (at least 2)")
    parser.add_argument("--min-time", type=float, default=0.25)
    parser.add_argument("--pause", type=float, default=0.1)
    args = parser.parse_args(argv)
    # imported here, not at the top: a spawned worker imports this module first (as
    # __mp_main__), and benchmarks.compare imports this tree's pyldl, which the base's worker
    # would then run instead of the base's
    from benchmarks.compare import Worker

    os.environ.pop("PYLDL_NUM_THREADS", None)
    context = multiprocessing.get_context("spawn")
    workers = {}
    with worktree(args.base) as base:
        try:
            for path in PATHS:
                workers["this", path] = Worker(context, path, {}, _worker, (None,))
                workers["base", path] = Worker(context, path, {}, _worker, (base,))
            for (tree, path), handle in workers.items():
                handle.variant = f"{tree} {path}"
                ask(handle, "ping")
            print(
                f"load average {os.getloadavg()[0]:.2f}; seconds per epoch, medians of {args.rounds} rounds"
            )
            print("workload dtype    path     this tree  base       speed")
            for key in args.workloads.split(","):
                for dtype in args.dtypes.split(","):
                    for row in measure(
                        workers, key, dtype, args.rounds, args.warmup, args.min_time, args.pause
                    ):
                        print("{:8} {:8} {:8} {:.3e}  {:.3e}  {:.2f}x".format(*row), flush=True)
            print(f"load average {os.getloadavg()[0]:.2f}")
        finally:
            for handle in workers.values():
                handle.close()


if __name__ == "__main__":
    main()
