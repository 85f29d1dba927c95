"""weather: current conditions from Open-Meteo (no API key), with a timeout and a friendly
failure: when the service is slow or down, the model tells the user so instead of going quiet.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from novakit.tools.powertools import Call, ToolError, logger, voice_tool

# Keep well inside the tool's own timeout, so a slow service becomes a spoken apology.
HTTP_TIMEOUT_S = 3.0
CONDITIONS = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    51: "light drizzle",
    61: "light rain",
    63: "rain",
    65: "heavy rain",
    71: "light snow",
    73: "snow",
    75: "heavy snow",
    80: "rain showers",
    95: "thunderstorms",
}


def _get_json(url: str, params: dict[str, Any], timeout: float) -> Any:
    full = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(full, timeout=timeout) as response:  # https URLs from config
        return json.load(response)


@voice_tool
def handler(params: dict[str, Any], call: Call) -> dict[str, Any]:
    city = params["city"]
    timeout = min(HTTP_TIMEOUT_S, max(0.5, call.remaining_seconds() / 2 - 0.5))
    try:
        places = _get_json(os.environ["GEOCODING_URL"], {"name": city, "count": 1}, timeout)
        if not places.get("results"):
            raise ToolError(f"I couldn't find a place called {city}")
        place = places["results"][0]
        forecast = _get_json(
            os.environ["FORECAST_URL"],
            {
                "latitude": place["latitude"],
                "longitude": place["longitude"],
                "current": "temperature_2m,weather_code,wind_speed_10m",
                "daily": "temperature_2m_max,temperature_2m_min,precipitation_probability_max",
                "forecast_days": 1,
                "timezone": "auto",
            },
            timeout,
        )
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        logger.warning("weather service unavailable: %s", exc)
        raise ToolError(
            "the weather service isn't answering right now; please try again in a minute"
        ) from exc
    except (KeyError, ValueError, TypeError) as exc:
        logger.warning("unexpected weather answer: %s", exc)
        raise ToolError("the weather service gave an answer I couldn't read") from exc
    current, daily = forecast.get("current", {}), forecast.get("daily", {})
    return {
        "place": f"{place.get('name')}, {place.get('country', '')}".strip(", "),
        "temperature_c": current.get("temperature_2m"),
        "conditions": CONDITIONS.get(current.get("weather_code"), "unknown conditions"),
        "wind_kmh": current.get("wind_speed_10m"),
        "today_max_c": (daily.get("temperature_2m_max") or [None])[0],
        "today_min_c": (daily.get("temperature_2m_min") or [None])[0],
        "rain_chance_percent": (daily.get("precipitation_probability_max") or [None])[0],
    }
