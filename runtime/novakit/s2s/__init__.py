"""Provider-agnostic speech-to-speech API.

from novakit import s2s

engine = s2s.new("nova", s2s.Config(instructions="You are a helpful assistant."))
async with engine.start() as session:
    await session.send_audio(pcm)
    async for event in session.recv():
        match event:
            case s2s.AudioOutput(audio=pcm):
                play(pcm)
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
    FencedError,
    ProviderError,
    ProviderNotFoundError,
    S2SError,
    SessionClosedError,
    UnsupportedError,
)
from .events import (
    AudioOutput,
    ErrorInfo,
    Event,
    EventType,
    Interrupted,
    Reconnected,
    SessionError,
    TextOutput,
    ToolCall,
    ToolCallRequest,
    Transcript,
    TurnEnd,
    Usage,
    UsageUpdate,
)
from .registry import new, providers, register, unregister
from .session import Engine, SendGuard, Session, SessionStarter

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
    "AudioOutput",
    "Config",
    "ConfigError",
    "Engine",
    "ErrorInfo",
    "Event",
    "EventType",
    "FencedError",
    "Interrupted",
    "Message",
    "ProviderError",
    "ProviderNotFoundError",
    "Reconnected",
    "S2SError",
    "S2SProcessor",
    "SendGuard",
    "Session",
    "SessionClosedError",
    "SessionError",
    "SessionStarter",
    "TextOutput",
    "TextPart",
    "ToolCall",
    "ToolCallRequest",
    "ToolChoice",
    "ToolDefinition",
    "ToolResult",
    "Transcript",
    "TurnEnd",
    "UnsupportedError",
    "Usage",
    "UsageUpdate",
    "as_frame_processor",
    "new",
    "providers",
    "register",
    "unregister",
]
