"""A Nova Sonic emulator that speaks Bedrock's real wire protocol.

A test double for ``InvokeModelWithBidirectionalStream``: TLS (ALPN h2) + HTTP/2 + AWS event
stream + SigV4 (request and chunk chain) on loopback, Nova's input grammar, a deterministic
conversation engine (energy VAD, scripted transcripts, replies spoken as generated audio, tool
calls, barge-in, usage events) and fault injection. The real SDK talks to it unchanged::

    async with Emulator(EmulatorConfig(endpoint_seconds=0.3)) as emu:
        ...  # endpoint_uri=emu.endpoint, trust emu.ca_path, credentials DEFAULT_CREDENTIALS
        await emu.wait_for_streams(1)
        assert emu.records[0].outcome is Outcome.COMPLETED

Layout: ``eventstream`` (codec), ``sigv4`` (verification), ``grammar`` (input events),
``conversation`` (engine), ``speech`` (tone-burst audio), ``faults``, ``session`` (one stream,
sans I/O), ``server`` (asyncio + h2 adapter and ``Emulator``), ``cli``. The offline speech
(``EngineSettings(mind=Mind...)``, ``novakit dev``): ``recognition`` (PocketSphinx),
``matching`` (tool examples), ``slot_values``, ``answers``, ``synthesis`` (eSpeak NG),
``pronunciation``, and ``mind``, which puts them together.
"""

from .cli import cli_main
from .conversation import EngineSettings, OutputEvent, Script, ScriptTurn, ToolCall
from .faults import FaultKind, FaultPlan, Trigger
from .grammar import MODELS, NOVA_2_SONIC, NOVA_SONIC, ViolationError
from .record import Outcome, RecordedError, RecordedEvent, StreamRecord
from .server import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig
from .sigv4 import Credentials

__all__ = [
    "DEFAULT_CREDENTIALS",
    "MODELS",
    "NOVA_2_SONIC",
    "NOVA_SONIC",
    "Credentials",
    "Emulator",
    "EmulatorConfig",
    "EngineSettings",
    "FaultKind",
    "FaultPlan",
    "Outcome",
    "OutputEvent",
    "RecordedError",
    "RecordedEvent",
    "Script",
    "ScriptTurn",
    "StreamRecord",
    "ToolCall",
    "Trigger",
    "ViolationError",
    "cli_main",
]
