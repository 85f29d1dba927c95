"""get_time: the current date and time in an IANA time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from novakit.tools.powertools import Call, ToolError, voice_tool

# The longest IANA time zone name, America/Argentina/ComodRivadavia, has 32 characters: a longer
# one is not a zone, and repeating it back would let the caller fill the answer with anything.
MAX_ZONE_CHARS = 32


@voice_tool
def handler(params: dict[str, Any], call: Call) -> dict[str, str]:
    name = params["timezone"]
    if len(name) > MAX_ZONE_CHARS:
        raise ToolError(
            f"a time zone name has at most {MAX_ZONE_CHARS} characters, this one has"
            f" {len(name)}; try a city like Europe/Paris"
        )
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(
            f"I don't know the time zone {name!r}; try a city like Europe/Paris"
        ) from exc
    now = datetime.now(UTC).astimezone(zone)
    return {
        "timezone": name,
        "time": now.strftime("%H:%M"),
        "date": now.strftime("%A %d %B %Y"),
        "utc_offset": now.strftime("%z"),
    }
