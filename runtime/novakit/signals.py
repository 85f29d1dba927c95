"""Stopping a long-running command cleanly on Ctrl-C or SIGTERM (what ECS sends)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable


def stop_event() -> asyncio.Event:
    """An event the running loop sets on SIGINT or SIGTERM.

    Where the loop cannot install handlers (not in the main thread, or no signal support),
    the event is only set by the caller.
    """
    stop = asyncio.Event()
    on_stop_signals(lambda _signum: stop.set())
    return stop


def on_stop_signals(callback: Callable[[signal.Signals], object]) -> None:
    """Call ``callback(signum)`` on SIGINT or SIGTERM, where the running loop can install
    handlers (in the main thread, with signal support)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, callback, signum)
