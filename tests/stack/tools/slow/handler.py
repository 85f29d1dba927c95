"""A tool that overruns its one-second timeout."""

import time
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    time.sleep(3)
    return {"result": "too late"}
