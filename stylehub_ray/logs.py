"""Logging and the console: every module logs to its own ``logging.getLogger(__name__)``; the
entry points (the CLI, the jobs through it, the serve demo) call :func:`setup`, which shows the
package's INFO messages on standard output, one plain line each, as a person reads them.

:func:`console_session` keeps the console to that story: for its duration everything else the
process or a library writes (Ray's log lines, its workers' output forwarded to the driver,
C++ core-worker messages, progress bars of Ray Data, warnings of libraries) goes to a log file
instead; ``verbose`` leaves the console as it was. :func:`progress` is the one progress bar:
tqdm on a terminal, a plain line now and then (no escape codes) when the output is a file or
a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TextIO

PACKAGE = "stylehub_ray"
# How often a progress line is written when the console is not a terminal.
PLAIN_PROGRESS_EVERY_S = 30.0

_console: TextIO | None = None  # the story's stream during a console session
_console_err: TextIO | None = None
_log_path: str | None = None
_bars: list = []  # the progress bars drawn on the terminal now


def console() -> TextIO:
    """Where the story goes now: the console saved by :func:`console_session`, else
    whatever ``sys.stdout`` is (a job's log, pytest's capture)."""
    return _console or sys.stdout


def console_err() -> TextIO:
    return _console_err or sys.stderr


def log_path() -> str | None:
    """The log file of the current console session (None outside one or when verbose)."""
    return _log_path


class _Stdout(logging.Handler):
    """Writes to the console when a record comes (see :func:`console`), not the stream there
    was at set-up. A warning is said once: the same text again is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._warned: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                if text in self._warned:
                    return
                self._warned.add(text)
            out = console()
            if _bars:  # above the progress bar, which is redrawn below
                from tqdm import tqdm

                tqdm.write(text, file=out)
            else:
                out.write(text + "\n")
            out.flush()
        except Exception:  # noqa: BLE001 (logging's own contract: never raise from emit)
            self.handleError(record)


def setup(level: int = logging.INFO) -> None:
    """Show the package's messages at ``level`` and above on standard output (idempotent);
    warnings and errors also say their level."""
    logger = logging.getLogger(PACKAGE)
    logger.setLevel(level)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def detail(text: str) -> None:
    """A line for the log file only (a logger outside the package: the console never shows
    it; with ``--verbose``, or outside a session, it goes nowhere)."""
    logging.getLogger("stylehub_detail").info(text)


def default_log_path(run_uri: str | None, command: str) -> str:
    """``RUN/logs/<command>-<UTC time>.log`` for a local run; under the temporary directory
    for a run on object storage or a command without a run."""
    import tempfile

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{command.replace(' ', '-')}-{stamp}-{os.getpid()}.log"
    if run_uri and "://" not in run_uri:
        return os.path.join(os.path.abspath(os.path.expanduser(run_uri)), "logs", name)
    return os.path.join(tempfile.gettempdir(), "stylehub-logs", name)


@contextlib.contextmanager
def console_session(path: str | None, verbose: bool = False) -> Iterator[str | None]:
    """Route everything but the story to ``path`` until the block ends; yields the path.

    The redirection is at the file-descriptor level (1 and 2), so it also catches what no
    Python logger sees: Ray's C++ messages, its workers' output printed by the driver, bars
    drawn by libraries. The story keeps a copy of the console taken before. When
    ``sys.stdout`` is not the process's own (pytest's capture, a caller's buffer) the
    descriptors are left alone and the story goes to that stream. ``verbose`` (or no path):
    the console is left as it is."""
    global _console, _console_err, _log_path
    setup()
    if verbose or not path:
        yield None
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real = sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
    saved: list[tuple[int, int]] = []
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                "%(message)s"))
    root = logging.getLogger()
    previous = (_console, _console_err, _log_path)
    root_level = root.level
    try:
        if real:
            _console = os.fdopen(os.dup(1), "w", buffering=1)
            _console_err = os.fdopen(os.dup(2), "w", buffering=1)
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(log_fd, fd)
        else:
            _console, _console_err = sys.stdout, sys.stderr
        _log_path = path
        # The package's records (the story, with times) and every library's go to the file.
        root.addHandler(file_handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        yield path
    finally:
        root.removeHandler(file_handler)
        root.setLevel(root_level)
        file_handler.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if real:
            for stream in (_console, _console_err):
                with contextlib.suppress(Exception):
                    stream.close()
        os.close(log_fd)
        _console, _console_err, _log_path = previous


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or console()
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class progress:  # noqa: N801 (used like tqdm: a function-like wrapper)
    """A progress bar for a long loop: ``for x in progress(items, "embed", total=n): ...`` or
    ``with progress(None, "rows", total=n) as bar: bar.update(k)``. On a terminal it is tqdm
    (on the story's stream, left out of the log); otherwise a plain line at most every
    :data:`PLAIN_PROGRESS_EVERY_S` seconds and none at the end (the stage's own line says
    what was done)."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None,
                 unit: str = "it", every_s: float = PLAIN_PROGRESS_EVERY_S):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.n = 0
        self._start = self._last = time.monotonic()
        self._bar = None
        if is_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=console(),
                             leave=False, dynamic_ncols=True)
            _bars.append(self._bar)

    def update(self, k: int = 1) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            of = f"/{self.total:,}" if self.total else ""
            pct = f" ({self.n / self.total:.0%})" if self.total else ""
            out = console()
            out.write(f"  {self.desc}: {self.n:,}{of} {self.unit}{pct}, "
                      f"{now - self._start:.0f} s\n")
            out.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            with contextlib.suppress(ValueError):
                _bars.remove(self._bar)
            self._bar = None

    def __iter__(self):
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
