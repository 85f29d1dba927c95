"""Structured JSON logs: one object per line, with the connection id when there is one.

Everything the process writes to stderr goes through this format, not only ``logging`` calls:
:func:`configure` also routes uncaught exceptions (main thread, other threads, the asyncio loop)
and *unraisable* ones to the log, so a third-party traceback is one JSON line, not dozens of
bare lines. awscrt, which calls Python callbacks from its own threads, reports an exception
raised in one either with ``PyErr_Print`` (which calls :data:`sys.excepthook` on that thread)
or with ``PyErr_WriteUnraisable`` (:data:`sys.unraisablehook`): both are hooked. After
``PyErr_Print`` it also writes one line from C, ``Treating Python exception as error …``, which
bypasses Python and stays plain text.

No secret at any level: botocore at DEBUG logs request headers and bodies (a secret fetched from
Secrets Manager, a signature), so the AWS SDK loggers are capped at WARNING whatever the level.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

# Attributes every LogRecord has; anything else was passed in ``extra`` and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

# Loggers of the AWS SDKs and their HTTP stacks: at DEBUG they print credentials, signatures,
# and response bodies (Secrets Manager's included).
AWS_SDK_LOGGERS = ("botocore", "boto3", "aiobotocore", "urllib3", "s3transfer")
# Where uncaught and unraisable exceptions are logged.
errors_log = logging.getLogger("novakit.errors")
# A repr that names the object an exception came from, not a dump of it.
_MAX_REPR = 200


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        # On every line: which of a task's processes wrote it (they share one log stream).
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._fields,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(
    level: str = "INFO", stream: Any = None, fields: dict[str, Any] | None = None
) -> None:
    """Send every log record to ``stream`` (stderr) as JSON, uncaught exceptions included;
    ``fields`` go on every line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every request at INFO: one line per audio frame is noise, not signal.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    cap_aws_sdk_loggers()
    logging.captureWarnings(True)
    install_exception_hooks()


def cap_aws_sdk_loggers() -> None:
    """The AWS SDK loggers log at WARNING or above, whatever the root level (no secrets)."""
    for name in AWS_SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        if sdk_logger.level < logging.WARNING:
            sdk_logger.setLevel(logging.WARNING)


def install_exception_hooks() -> None:
    """Log uncaught and unraisable exceptions instead of printing them to stderr.

    The asyncio loop has its handler set by :func:`log_loop_exceptions` once it runs.
    """
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable


def log_loop_exceptions(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Route what the asyncio loop would print (a task's exception never retrieved, a failing
    callback) to the log."""
    (loop or asyncio.get_running_loop()).set_exception_handler(_log_loop_exception)


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if threading.current_thread() is threading.main_thread():
        errors_log.critical(
            "uncaught exception: %s", kind.__name__, exc_info=(kind, value, traceback)
        )
        return
    # Not the end of the process: a native library (awscrt) reports an exception raised in a
    # Python callback it called from one of its own threads with PyErr_Print, which lands here.
    name = threading.current_thread().name
    errors_log.error(
        "exception in a callback on thread %s: %s",
        name,
        kind.__name__,
        exc_info=(kind, value, traceback),
        extra={"thread_name": name},
    )


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as the default hook: a thread that exits is not an error
    name = args.thread.name if args.thread is not None else "unknown"
    errors_log.error(
        "uncaught exception in thread %s: %s",
        name,
        args.exc_type.__name__,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        extra={"thread_name": name},
    )


def _log_unraisable(unraisable: Any) -> None:
    kind = unraisable.exc_type
    value = unraisable.exc_value if unraisable.exc_value is not None else kind()
    errors_log.error(
        "%s: %s",
        unraisable.err_msg or "exception ignored",
        kind.__name__,
        exc_info=(kind, value, unraisable.exc_traceback),
        extra={"object": _short_repr(unraisable.object)},
    )


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    details = {
        key: _short_repr(value)
        for key, value in context.items()
        if key not in ("message", "exception") and value is not None
    }
    errors_log.error(
        "%s",
        context.get("message") or "unhandled exception in the event loop",
        exc_info=(type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None,
        extra={"loop_context": details},
    )


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not lose the original exception
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…"
