"""A CPU hog: processes that spin on the machine's cores while timing-sensitive tests run, so
that they hold on a busy machine (as CI is), not only on an idle one.

``NOVAKIT_CPU_HOG`` sets how many spinners: 0 (none) when pytest is run by hand, 2 (one per
core here) in ``make test`` (so in CI), ``make soak`` and ``make cluster-hog``. Each spinner
stops by itself when the process that started it is gone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


def hog_size() -> int:
    return int(os.environ.get("NOVAKIT_CPU_HOG", "0"))


@contextlib.contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    count = hog_size() if processes is None else processes
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        yield spinners
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait(timeout=10)
