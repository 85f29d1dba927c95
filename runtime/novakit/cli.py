"""The ``novakit`` command.

``novakit dev``       the local stack: Bedrock emulator, session bridge, local API Gateway (with
                      the browser client) and the tools of ``tools/``; ``--once`` runs a scripted
                      conversation through it and exits; ``--bedrock`` uses real Bedrock.
``novakit bridge``    the session bridge, as the container runs it (settings from environment).
``novakit gateway``   only the local API Gateway stand-in (``novakit gateway --help``).
``novakit emulator``  only the Bedrock emulator (``novakit emulator --help``).
``novakit new-tool``  a new tool folder: tool.json, handler.py and its test.
``novakit talk``      a command-line client: a WAV file (or the microphone) in, the assistant's
                      audio and the transcript out (``novakit talk --help``).
``novakit call``      a simulated phone call through Twilio Media Streams: a WAV file and keys
                      in, what the caller heard out (``novakit call --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import sys
from pathlib import Path

from . import __version__

# Commands with parsers of their own: everything after the name is theirs.
DELEGATED = ("bridge", "gateway", "emulator", "new-tool", "talk", "call")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in DELEGATED:
        return _delegate(args[0], args[1:])
    parsed = build_parser().parse_args(args)
    if parsed.command == "dev":
        return _dev(parsed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``novakit`` parser (the delegated commands' own parsers are in their modules)."""
    parser = argparse.ArgumentParser(prog="novakit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"novakit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bridge", help="run the session bridge (see: novakit bridge -h)")
    commands.add_parser("gateway", help="run the local API Gateway (see: novakit gateway -h)")
    commands.add_parser("emulator", help="run the Bedrock emulator (see: novakit emulator -h)")
    commands.add_parser("talk", help="talk to a voice agent from a WAV file (see: novakit talk -h)")
    commands.add_parser("call", help="a simulated phone call (see: novakit call -h)")
    commands.add_parser("new-tool", help="create tools/NAME/ (see: novakit new-tool -h)")
    dev = commands.add_parser("dev", help="run the local stack")
    dev.add_argument("--port", type=int, default=8080, help="WebSocket and web port (8080)")
    dev.add_argument("--once", action="store_true", help="run a scripted conversation and exit")
    dev.add_argument(
        "--out", type=Path, default=Path("demo-reply.wav"), help="where --once writes the reply"
    )
    dev.add_argument("--bedrock", action="store_true", help="real Bedrock (AWS credentials)")
    dev.add_argument("--tools", type=Path, default=Path("tools"), help="tools folder (tools)")
    dev.add_argument("--web", type=Path, default=Path("web"), help="browser client folder (web)")
    dev.add_argument("--token", help="require ?token=... from clients, as the stack does")
    dev.add_argument(
        "--twilio-auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="check Twilio's signature on /twilio with this auth token, as the stack does "
        "(default: $TWILIO_AUTH_TOKEN; none: /twilio is open)",
    )
    dev.add_argument(
        "--public-url",
        metavar="WSS_URL",
        type=_public_url,
        help="the address Twilio connects to through a tunnel that terminates TLS, e.g. "
        "wss://abc.ngrok.app: its signature is checked for that URL",
    )
    dev.add_argument(
        "--phone-hangup",
        action="store_true",
        help="let the model end phone calls (the end_call tool), as -c twilio_hangup=true does",
    )
    dev.add_argument(
        "--allow-client-instructions",
        action="store_true",
        default=_env_flag("NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS"),
        help="let clients replace the system prompt (Realtime session.instructions, a phone "
        "number's instructions), as NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS=1 does on the bridge "
        "(default: that variable)",
    )
    dev.add_argument("--batch-ms", type=int, default=100, help="audio per output frame (100)")
    dev.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help="the emulator plays these scripted turns first (JSON; see docs/s2s.md)",
    )
    dev.add_argument(
        "--no-speech",
        action="store_true",
        help="the emulator answers every turn generically in tone bursts (no offline speech)",
    )
    return parser


def _public_url(value: str) -> str:
    from .localgw.config import public_base_url

    try:
        return public_base_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_flag(name: str) -> bool:
    """A 0/1 variable read as the bridge reads its own (1, true, yes: on)."""
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes")


def _dev(parsed: argparse.Namespace) -> int:
    from .dev import DevOptions, run_dev

    if parsed.bedrock and not _has_aws_credentials():
        print("novakit dev: --bedrock needs AWS credentials (none found)", file=sys.stderr)
        return 2
    script = None
    if parsed.script is not None:
        from .emulator import Script

        try:
            script = Script.load(parsed.script)
        except (OSError, ValueError) as exc:
            print(f"novakit dev: --script {parsed.script}: {exc}", file=sys.stderr)
            return 2
    # The in-process tools' CloudWatch metrics (EMF JSON) mean nothing on a terminal.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    options = DevOptions(
        script=script,
        speech=not parsed.no_speech,
        port=parsed.port,
        bedrock=parsed.bedrock,
        tools_dir=parsed.tools,
        web_dir=parsed.web,
        token=parsed.token,
        twilio_auth_token=parsed.twilio_auth_token or None,
        twilio_public_url=parsed.public_url,
        phone_hangup=parsed.phone_hangup,
        allow_client_instructions=parsed.allow_client_instructions,
        batch_ms=parsed.batch_ms,
    )
    from .bridge.tools import ToolSetupError
    from .tools import ToolManifestError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run_dev(options, once=parsed.once, out=parsed.out))
    except (ToolManifestError, ToolSetupError) as exc:
        # A broken tool.json or handler.py: what is wrong and where, in one line.
        print(f"novakit dev: tool: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"novakit dev: port {parsed.port} is in use; choose another with --port "
            "(make dev PORT=...)",
            file=sys.stderr,
        )
        return 2
    return 0


def _delegate(command: str, args: list[str]) -> int:
    if command == "bridge":
        from .bridge.cli import main as bridge_main

        return bridge_main(args)
    if command == "gateway":
        from .localgw.cli import main as gateway_main

        return gateway_main(args)
    if command == "new-tool":
        from .tools.scaffold import main as new_tool_main

        return new_tool_main(args)
    if command == "talk":
        from .talk import main as talk_main

        return talk_main(args)
    if command == "call":
        from .call import main as call_main

        return call_main(args)
    from .emulator import cli_main

    return cli_main(args)


def _has_aws_credentials() -> bool:
    from botocore.session import get_session

    return get_session().get_credentials() is not None


if __name__ == "__main__":
    sys.exit(main())
