"""Quiet, useful terminal output for the CLI and the demo.

One line per stage (:class:`Stages`), a transient progress bar on long work, and every
library's log (Ray's, Ray Train's, jobrec's own INFO lines) in one log file that the output
names (:func:`log_to_file`), instead of on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# loggers whose records go to the log file, never to the terminal
LIBRARY_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.data", "filelock", "urllib3", "h5py")
JOBREC_LOGGERS = ("jobrec", "workers", "training", "server", "core")


class LogFile:
    """Ray's and jobrec's Python logs sent to one file; :meth:`restore` undoes it."""

    def __init__(self, path: Path, level: int = logging.INFO) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self._saved = {}
        # Ray attaches its own stderr handler to the ``ray`` logger: it is replaced, so
        # warnings such as Ray Train's controller polling land in the file, not on screen
        for name in (*LIBRARY_LOGGERS, *JOBREC_LOGGERS):
            lg = logging.getLogger(name)
            self._saved[name] = (list(lg.handlers), lg.level, lg.propagate)
            lg.handlers[:] = [self.handler]
            lg.setLevel(level)
            lg.propagate = False

    def restore(self) -> None:
        """Put the loggers back as they were and close the file."""
        for name, (handlers, level, propagate) in self._saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        self.handler.close()

    def __str__(self) -> str:
        return str(self.path)


def log_to_file(path: Path, level: int = logging.INFO) -> LogFile:
    """Send Ray's and jobrec's Python logs to ``path`` (appending) until ``restore()``."""
    return LogFile(path, level)


def ray_session_dir() -> str:
    """The log directory of this process's Ray session (see :mod:`workers.actors`)."""
    from workers.actors import session_log_dir

    return session_log_dir()


class Stages:
    """Numbered stages, one line each: ``[2/6] what — 1.2s: result``.

    On a terminal the running stage shows as a transient line that the finished line
    overwrites; elsewhere (logs, tests) only finished lines are printed.
    """

    def __init__(self, total: int, out=None) -> None:
        self.total, self.i = total, 0
        self.out = out or sys.stdout
        self._what = ""
        self._t0 = time.perf_counter()
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def start(self, what: str) -> None:
        """Begin the next stage."""
        self.i += 1
        self._what = what
        self._t0 = time.perf_counter()
        if self.tty:
            print(f"[{self.i}/{self.total}] {what} ...", end="\r", file=self.out, flush=True)

    def done(self, result: str = "") -> None:
        """Finish the running stage with one line."""
        secs = time.perf_counter() - self._t0
        line = f"[{self.i}/{self.total}] {self._what} — {secs:.1f}s" + (
            f": {result}" if result else ""
        )
        pad = "\x1b[K" if self.tty else ""  # clear what the transient line left
        print(line + pad, file=self.out, flush=True)


class FileProgress:
    """A transient progress bar fed by the lines workers append to progress files.

    Ray Train workers run in other processes; rank 0 appends its progress lines to
    ``<phase_dir>/progress.log`` (``training.ray_train``), which this tails from the driver.
    ``count`` turns all lines read so far into ``(done, total)``
    (``training.progress.epoch_progress``): the total may change as the workers say what
    they actually run, and ends equal to what was done.
    """

    def __init__(self, files: Callable[[], list[Path]],
                 count: Callable[[list[str]], tuple[int, int]], desc: str, unit: str = "epoch",
                 enabled: bool = True):
        from tqdm import tqdm

        self._files = files
        self._count = count
        self.n, self.total = count([])  # what the bar shows (kept here: a disabled tqdm counts nothing)
        self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False, disable=not enabled)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="jobrec-progress")
        self.last = ""

    def _poll(self) -> None:
        lines = []
        for f in self._files():
            try:
                lines += [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
            except OSError:
                continue
        done, total = self._count(lines)
        if total != self.total:
            self.total = self._bar.total = total
            self._bar.refresh()
        if done > self.n:
            self._bar.update(done - self.n)
            self.n = done
        if lines and lines[-1] != self.last:
            self.last = lines[-1]
            self._bar.set_postfix_str(self.last[:60], refresh=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._poll()

    def __enter__(self) -> FileProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()
        self._bar.close()


@contextlib.contextmanager
def stdout_to(path: Path):
    """Send this process's stdout, Python-level and file-descriptor level, to ``path``.

    Ray Train's driver-side code also writes to fd 1 directly (blank progress lines), which
    ``contextlib.redirect_stdout`` alone does not catch. Stderr (progress bars) is untouched.
    """
    sys.stdout.flush()
    with open(path, "a", encoding="utf-8") as sink:
        try:
            saved = os.dup(1)
        except OSError:  # no real fd 1 (embedded interpreters): Python level only
            saved = None
        try:
            if saved is not None:
                os.dup2(sink.fileno(), 1)
            with contextlib.redirect_stdout(sink):
                yield
        finally:
            sys.stdout.flush()
            if saved is not None:
                os.dup2(saved, 1)
                os.close(saved)
