"""A tool with a strict input schema, written with @voice_tool."""

from typing import Any

from novakit.tools.powertools import Call, voice_tool


@voice_tool
def handler(params: dict[str, Any], call: Call) -> dict[str, int]:
    return {"count": params["count"]}
