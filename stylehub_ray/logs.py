"""Logging: every module logs to its own ``logging.getLogger(__name__)``; the entry points (the
CLI, the jobs through it, the serve demo) call :func:`setup`, which shows the package's INFO
messages on standard output, one plain line each, as a person reads them."""

from __future__ import annotations

import logging
import sys

PACKAGE = "stylehub_ray"


class _Stdout(logging.Handler):
    """Writes to whatever ``sys.stdout`` is when a record comes (a job's log, pytest's
    capture), not the stream there was at set-up."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
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
