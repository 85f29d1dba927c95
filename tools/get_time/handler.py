"""get_time: the current date and time in an IANA time zone.

Event (the novakit tool contract): ``{"version": "1", "tool": "get_time", "toolUseId": "...",
"input": {"timezone": "Europe/Paris"}, ...}``.
Answer: ``{"result": {...}}``, or ``{"error": "..."}`` for a zone it does not know.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    args = event.get("input", event) if isinstance(event, dict) else {}
    zone_name = args.get("timezone") if isinstance(args, dict) else None
    if not isinstance(zone_name, str) or not zone_name:
        return {"error": "timezone is required, for example Europe/Paris"}
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return {"error": f"unknown time zone {zone_name!r}; use an IANA name like Europe/Paris"}
    now = datetime.now(UTC).astimezone(zone)
    return {
        "result": {
            "timezone": zone_name,
            "iso": now.isoformat(timespec="seconds"),
            "date": now.strftime("%A %d %B %Y"),
            "time": now.strftime("%H:%M"),
            "utc_offset": now.strftime("%z"),
        }
    }
