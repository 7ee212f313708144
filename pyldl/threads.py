"""How many threads compute the fused epoch's products: chosen by measuring, or set by the user.

The products run in panels fixed by their shapes (``kernels._blas.gemm``), each a call of
SciPy's OpenBLAS on one thread, shared out among the threads chosen: a seed gives bitwise the
same losses whatever the count, and whatever the machine's load.

Automatic choice (the default), as FFTW's planner or cuDNN's benchmark mode choose: runs take
turns with each candidate count (1, 2, 4, ... up to ``usable_cores()``) until each has
``SAMPLES`` timed runs and ``SAMPLE_SECONDS`` of them, and the fewest threads whose mean
seconds per row is within ``MARGIN`` of the lowest is kept (the first run at each count is not
timed: it may compile, or start the threads; threads that barely help are left to the rest of
the machine). Means, not medians: on a busy machine threads wait for one another's turn on a
core, and the few runs that stall can cost more than all the others save. The choice is
remembered for the process by the products' shapes, the batch's rows and the dtype (a grid
search builds hundreds of networks of a few shapes), and measured again when the kept count's
mean over its last ``DRIFT_RUNS`` runs and ``DRIFT_SECONDS`` drifts past ``DRIFT`` times the
time it was chosen on: slower where fewer threads may now win (the machine got busy), faster
where more may (it got idle). Each time measuring again keeps the same count, the next window
is twice as long, up to ``MAX_PATIENCE`` times (a busy machine's share of a core for this
process swings by 2x from moment to moment: measuring again at each swing would cost more than
it finds); a new count starts again from the shortest.

Caps, smallest first: one thread while other pyldl runs or a sweep run at once (the count is
process-wide for OpenBLAS; a sweep fills the cores with trainings), and in a process forked
after threads ran (GNU OpenMP is not fork-safe); a user's setting (``set_num_threads``, the
``threads=`` argument, ``PYLDL_NUM_THREADS``); SciPy's OpenBLAS's own count (so
``OPENBLAS_NUM_THREADS`` and a ``threadpoolctl`` limit hold); the cores this process may use.
"""

import math
import os
import threading
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numba

from .kernels import _blas

SAMPLES, SAMPLE_SECONDS = 3, 0.02  # timed runs of each candidate, and seconds, before choosing
MARGIN = 0.05
DRIFT, DRIFT_RUNS, DRIFT_SECONDS = 1.5, 5, 0.1  # how far, over how many runs and seconds
MAX_PATIENCE = 32  # the longest window, in DRIFT_RUNS and DRIFT_SECONDS
_ENV = "PYLDL_NUM_THREADS"


def _from_env():
    value = os.environ.get(_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    try:
        return checked(int(value))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{_ENV} must be a positive integer or 'auto', got {value!r}") from error


def checked(threads):
    """``threads`` if a positive integer or None, else ValueError."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (automatic), got {threads!r}")
    return threads


_setting = [_from_env()]
_lock = threading.Lock()
_running = [0]  # runs inside ``running`` now
_forked = [False]
_choices = {}
os.register_at_fork(after_in_child=lambda: _forked.__setitem__(0, True))


def set_num_threads(threads):
    """Fix the thread count of pyldl's products (``None``: choose by measuring, the default).

    ``PYLDL_NUM_THREADS`` (an integer or ``auto``) sets it at import. The count is still capped
    by SciPy's OpenBLAS's count and by the cores this process may use.
    """
    _setting[0] = checked(threads)


def get_num_threads():
    """The count set by ``set_num_threads`` or ``PYLDL_NUM_THREADS``; None: automatic."""
    return _setting[0]


def _quota(root=Path("/sys/fs/cgroup")):
    """The CPUs a cgroup's quota allows (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period)))


@cache
def usable_cores():
    """The cores this process may run on: its CPU affinity, a container's CPU quota, and
    Numba's thread pool (``NUMBA_NUM_THREADS``), as they were at the first call."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _quota()
    return max(1, min(cores, quota or cores, numba.config.NUMBA_NUM_THREADS))


def _running_elsewhere(proc=Path("/proc")):
    """How many threads of other processes are running or ready to run right now (Linux's
    ``/proc``: the system's count less this process's own; 0 where the system does not tell)."""
    try:
        everywhere = int((proc / "loadavg").read_text().split()[3].split("/")[0])
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in (proc / "self" / "task").iterdir()
        ]
    except (OSError, ValueError, IndexError):  # macOS, Windows; a thread that just ended
        return 0
    return max(0, everywhere - states.count("R"))


def core_to_spare():
    """Whether a second process would find a core of its own now: this one and it, beside what
    other processes run right now (not a load average: just after a ``pip install`` the
    average still counts it for a minute), within the usable cores."""
    return _running_elsewhere() + 2 <= usable_cores()


def _candidates(cap):
    counts, count = [], 1
    while count <= cap:
        counts.append(count)
        count *= 2
    if counts[-1] != cap:
        counts.append(cap)
    return counts


class _Choice:
    """The measurements and the kept count for one key: timed runs' seconds and rows summed, so
    each count is judged by its mean time per row, stalls included."""

    def __init__(self, candidates, warm=(), previous=None, patience=1):
        self.candidates = candidates
        self.timed = {count: [0, 0.0, 0] for count in candidates}  # runs, seconds, rows
        self.warm = set(warm)  # counts that ran once: a first run may compile or start threads
        self.kept, self.chosen_at, self.window = None, None, [0, 0.0, 0]
        self.previous, self.patience = previous, patience  # the count kept before; window scale

    def next(self):
        if self.kept is not None:
            return self.kept
        return min(self.candidates, key=lambda c: ((c in self.warm) + self.timed[c][0], self.timed[c][1]))

    def record(self, count, seconds, rows):
        if count not in self.warm:
            self.warm.add(count)
            return
        if self.kept is None:
            _add(self.timed[count], seconds, rows)
            if all(runs >= SAMPLES and spent >= SAMPLE_SECONDS for runs, spent, _ in self.timed.values()):
                per_row = {c: spent / rows for c, (_, spent, rows) in self.timed.items()}
                fastest = min(per_row.values())
                self.kept = min(c for c, t in per_row.items() if t <= fastest * (1 + MARGIN))
                self.chosen_at = per_row[self.kept]
                same = self.kept == self.previous  # measured again for nothing: wait longer next time
                self.patience = min(self.patience * 2, MAX_PATIENCE) if same else 1
            return
        runs, spent, window_rows = _add(self.window, seconds, rows)
        if runs >= DRIFT_RUNS * self.patience and spent >= DRIFT_SECONDS * self.patience:
            self.window = [0, 0.0, 0]
            drift = spent / window_rows / self.chosen_at
            slower = drift > DRIFT and self.kept > 1  # fewer threads may win now
            faster = drift * DRIFT < 1 and self.kept < max(self.candidates)  # more may
            if slower or faster:  # measure again
                self.__init__(self.candidates, self.warm, self.kept, self.patience)


def _add(totals, seconds, rows):
    """Add one run to [runs, seconds, rows]; the new totals."""
    totals[0] += 1
    totals[1] += seconds
    totals[2] += rows
    return totals


@contextmanager
def running(key, threads=None):
    """The thread count for one run of products keyed by ``key`` (None: the products are too
    small to be split, one thread); SciPy's OpenBLAS on one thread inside. ``threads``: the
    caller's setting (None: the process's). The block's ``record(seconds)`` times the run."""
    with _lock:
        _running[0] += 1
        alone = _running[0] == 1 and _blas.one_thread_users() == 0 and not _forked[0]
        blas_threads = _blas.blas_threads() if alone else 1
    try:
        with _blas.one_thread():
            setting = checked(threads) if threads is not None else _setting[0]
            cap = min(setting or usable_cores(), blas_threads or 1, usable_cores()) if alone else 1
            choice = None
            if key is None or cap == 1:
                count = 1
            elif setting is not None:
                count = cap
            else:
                choice = _choices.get((key, cap))
                if choice is None:
                    choice = _choices[key, cap] = _Choice(_candidates(cap))
                count = choice.next()
            if count > 1:
                _blas.launch_threads()
                numba.set_num_threads(count)
            yield _Run(count, choice)
    finally:
        with _lock:
            _running[0] -= 1


class _Run:
    __slots__ = ("threads", "_choice", "_start")

    def __init__(self, threads, choice):
        self.threads, self._choice, self._start = threads, choice, time.perf_counter()

    def record(self, rows):
        """The run's time per row, for the choice (when one is being made)."""
        if self._choice is not None and rows:
            self._choice.record(self.threads, time.perf_counter() - self._start, rows)
