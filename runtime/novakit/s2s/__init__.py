"""Provider-agnostic speech-to-speech API.

from novakit import s2s

engine = s2s.new("nova", s2s.Config(instructions="You are a helpful assistant."))
async with engine.start() as session:
    await session.send_audio(pcm)
    async for event in session.recv():
        if event.type is s2s.EventType.AUDIO_OUTPUT:
            play(event.audio)
"""

from typing import TYPE_CHECKING, Any

from .config import (
    DEFAULT_MODEL,
    Config,
    Message,
    TextPart,
    ToolChoice,
    ToolDefinition,
    ToolResult,
)
from .errors import (
    ConfigError,
    ProviderError,
    ProviderNotFoundError,
    S2SError,
    SessionClosedError,
    UnsupportedError,
)
from .events import ErrorInfo, Event, EventType, ToolCall, Usage
from .registry import new, providers, register, unregister
from .session import Engine, Session, SessionStarter

if TYPE_CHECKING:
    from .pipeline import S2SProcessor, as_frame_processor


def __getattr__(name: str) -> Any:
    # The pipeline pulls in novakit.voice (numpy, soxr): import it only when asked for.
    if name in ("as_frame_processor", "S2SProcessor"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "Config",
    "ConfigError",
    "Engine",
    "ErrorInfo",
    "Event",
    "EventType",
    "Message",
    "ProviderError",
    "ProviderNotFoundError",
    "S2SError",
    "S2SProcessor",
    "Session",
    "SessionClosedError",
    "SessionStarter",
    "TextPart",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "ToolResult",
    "UnsupportedError",
    "Usage",
    "as_frame_processor",
    "new",
    "providers",
    "register",
    "unregister",
]
