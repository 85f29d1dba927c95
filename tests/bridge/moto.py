"""A DynamoDB-compatible server for tests: moto's server mode, on loopback, in a subprocess."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from novakit.dev import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start the server; yields its endpoint URL; stops it (bounded) at the end."""
    with moto_process() as (url, _process):
        yield url


@contextlib.contextmanager
def moto_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``moto_server``, also yielding the process (tests stop it to make the directory slow)."""
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # moto imports much at start: on a machine whose cores are busy that takes a while
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a test may have left it stopped
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def dynamodb_client(endpoint: str) -> Any:
    from botocore.session import get_session

    return get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=endpoint, **KEYS
    )


class CountingClient:
    """A botocore client that records every call it makes: ``(operation, arguments)``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if name.startswith("_") or name in ("close", "meta", "exceptions") or not callable(found):
            return found

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return found(**kwargs)

        return call

    def operations(self, since: int = 0) -> list[str]:
        return [name for name, _ in self.calls[since:]]
