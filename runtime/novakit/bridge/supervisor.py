"""``novakit bridge`` with ``NOVAKIT_PROCESSES`` above 1: one bridge process per CPU in a task.

The supervisor starts the processes (``python -m novakit.bridge`` with the same environment,
plus the process's index and address; ``processes.py`` says how they share the port), and:

- forwards SIGTERM and SIGINT to every process: each drains as a lone bridge does (its siblings
  stop with it, so they never take its sessions; other tasks do);
- starts a process again when it exits while nothing asked it to stop, at most ``RESTARTS``
  times per process within ``RESTART_WINDOW`` seconds: past that the fault is not passing, so
  it stops every process and exits 1 (ECS then replaces the task) instead of spinning;
- exits once every process has exited after a stop.

It holds no session and opens no socket, so its own failure modes are few. The processes write
their logs to the same stdout and stderr, each line with its ``process`` index and ``pid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from ..signals import on_stop_signals
from .cluster import discover_address
from .processes import process_address
from .settings import PREFIX, BridgeSettings

log = logging.getLogger(__name__)

PROCESS_INDEX_VARIABLE = f"{PREFIX}PROCESS_INDEX"
PROCESSES_VARIABLE = f"{PREFIX}PROCESSES"
ADVERTISE_URL_VARIABLE = f"{PREFIX}ADVERTISE_URL"
RESTARTS = 5
RESTART_WINDOW = 60.0
# A process started again right after a crash would meet the same fault at once.
RESTART_DELAY = 0.5


class RestartBudget:
    """At most ``limit`` restarts within any ``window`` seconds."""

    def __init__(self, limit: int = RESTARTS, window: float = RESTART_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._restarts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Whether a restart at ``now`` fits the budget; if it does, it is counted."""
        while self._restarts and now - self._restarts[0] >= self.window:
            self._restarts.popleft()
        if len(self._restarts) >= self.limit:
            return False
        self._restarts.append(now)
        return True


class Supervisor:
    """Runs ``settings.processes`` bridge processes until a stop, and stops them together."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        environ: Mapping[str, str] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "novakit.bridge"),
        restarts: int = RESTARTS,
        restart_window: float = RESTART_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._command = list(command)
        # The task's address (ECS task metadata, NOVAKIT_ADVERTISE_URL, or loopback), read
        # once: each process is reached there, on its own port.
        self.task_url = discover_address(settings.port, self._environ)
        self._budgets = [RestartBudget(restarts, restart_window) for _ in range(settings.processes)]
        self._clock = clock
        self._children: list[asyncio.subprocess.Process | None] = [None] * settings.processes
        self._stop_signal: signal.Signals | None = None
        self.gave_up = False
        # Set whenever every process has been started (again).
        self.all_running = asyncio.Event()

    def address(self, index: int) -> str:
        return process_address(self.task_url, self.settings, index)

    def environment(self, index: int) -> dict[str, str]:
        """Process ``index``'s environment: the task's, plus which process it is, of how many
        (counted once, here: each process's own count of CPUs could differ), and where it is
        reached."""
        return {
            **self._environ,
            PROCESSES_VARIABLE: str(self.settings.processes),
            PROCESS_INDEX_VARIABLE: str(index),
            ADVERTISE_URL_VARIABLE: self.address(index),
        }

    @property
    def pids(self) -> list[int | None]:
        """The running processes' pids, by index (``None`` while one is being started)."""
        return [None if child is None else child.pid for child in self._children]

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """Stop every process (a second call sends the signal again)."""
        self._stop_signal = signum
        for child in self._children:
            if child is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    async def run(self) -> int:
        """Run until every process has exited after a stop; 0 when all exited cleanly."""
        on_stop_signals(self.stop)
        log.info(
            "starting bridge processes",
            extra={
                "processes": self.settings.processes,
                "port": self.settings.port,
                "addresses": [self.address(i) for i in range(self.settings.processes)],
            },
        )
        codes = await asyncio.gather(*(self._keep(i) for i in range(self.settings.processes)))
        clean = (0, -signal.SIGTERM, -signal.SIGINT)  # a process stopped before it could drain
        failed = self.gave_up or any(code not in clean for code in codes)
        log.info("bridge processes stopped", extra={"status": codes})
        return 1 if failed else 0

    async def _keep(self, index: int) -> int:
        """Run process ``index``, again after an unexpected exit; its last exit status."""
        while True:
            child = await asyncio.create_subprocess_exec(
                *self._command, env=self.environment(index), stdin=asyncio.subprocess.DEVNULL
            )
            self._children[index] = child
            if None not in self._children:
                self.all_running.set()
            if self._stop_signal is not None:  # the stop came while it was being started
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(self._stop_signal)
            log.info(
                "bridge process started",
                extra={"index": index, "child_pid": child.pid, "address": self.address(index)},
            )
            code = await child.wait()
            self._children[index] = None
            self.all_running.clear()
            details = {"index": index, "child_pid": child.pid, "status": code}
            if self._stop_signal is not None:
                log.info("bridge process exited", extra=details)
                return code
            if not self._budgets[index].allow(self._clock()):
                log.error(
                    "bridge process %d exited %d times within %g s: stopping the task",
                    index,
                    self._budgets[index].limit + 1,
                    self._budgets[index].window,
                    extra=details,
                )
                self.gave_up = True
                self.stop()
                return code
            log.warning("bridge process exited unexpectedly: starting it again", extra=details)
            await asyncio.sleep(RESTART_DELAY)
            if self._stop_signal is not None:
                return code


def run(settings: BridgeSettings) -> int:
    """Supervise ``settings.processes`` bridge processes; the exit status."""
    return asyncio.run(Supervisor(settings).run())
