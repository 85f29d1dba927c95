"""Provider-agnostic speech-to-speech API.

from novakit import s2s

engine = s2s.new("nova", s2s.Config(instructions="You are a helpful assistant."))
async with engine.start() as session:
    await session.send_audio(pcm)
    async for event in session.recv():
        if event.type is s2s.EventType.AUDIO_OUTPUT:
            play(event.audio)
"""

from .config import (
    DEFAULT_MODEL,
    Config,
    Message,
    TextPart,
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
    "Session",
    "SessionClosedError",
    "SessionStarter",
    "TextPart",
    "ToolCall",
    "ToolDefinition",
    "ToolResult",
    "UnsupportedError",
    "Usage",
    "new",
    "providers",
    "register",
    "unregister",
]
