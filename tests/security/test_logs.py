"""What the logs hold: events, never the user's words, tool arguments or results, nor secrets;
and every line JSON, third-party tracebacks included."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from novakit.bridge import logs
from novakit.dev import DevOptions, demo_client, demo_script, local_stack
from novakit.tools import powertools
from stacks.connect_auth import AUTHORIZER_CODE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_logs(monkeypatch):
    """The bridge's log configuration at INFO, into a buffer; hooks and levels restored after."""
    for target, name in ((sys, "excepthook"), (sys, "unraisablehook"), (threading, "excepthook")):
        monkeypatch.setattr(target, name, getattr(target, name))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in logs.AWS_SDK_LOGGERS}
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, saved_level in levels.items():
        logging.getLogger(name).setLevel(saved_level)
    logging.captureWarnings(False)


@pytest.fixture
def tool_logs():
    """What the tools' Powertools logger writes at INFO and above, as the bridge's JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.setLevel(logging.INFO)
    target = logging.getLogger(powertools.logger.name)
    target.addHandler(handler)
    yield stream
    target.removeHandler(handler)


def entries(*streams: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for s in streams for line in s.getvalue().splitlines() if line]


async def test_a_conversation_with_a_tool_call_logs_events_not_words(
    json_logs, tool_logs, tmp_path
) -> None:
    screen = io.StringIO()
    options = DevOptions(port=0, tools_dir=REPO / "tools", web_dir=None, script=demo_script())
    async with local_stack(options, screen) as running:
        assert await demo_client(running.gateway_url, tmp_path / "reply.wav", screen) == 0
    said = screen.getvalue()
    # The conversation happened: question, tool call, answer with the tool's result, thanks.
    assert "user       what time is it in Tokyo" in said
    assert "tool       get_time: succeeded" in said
    found = re.search(r'\{"timezone":"Asia/Tokyo".*?\}', said)
    assert found is not None, said
    result = json.loads(found.group())

    logged = entries(json_logs, tool_logs)
    text = json.dumps(logged)
    for words in (
        "what time is it",  # what the user said
        "Tokyo",  # the tool's argument and its result
        result["date"],
        result["utc_offset"],
        "Here is what the clock says",  # what the model said
        "Thanks!",  # what the user typed
        "You are welcome",
    ):
        assert words not in text, f"{words!r} is in the logs"
    # ... while the events are there, at INFO.
    messages = [entry["message"] for entry in logged]
    for event in ("session open", "tool answered", "session ending"):
        assert any(m.startswith(event) for m in messages), messages
    answered = next(entry for entry in logged if entry["message"] == "tool answered")
    assert answered["params"]["type"] == "dict" and answered["params"]["length"] == 1
    assert set(answered["answer"]) == {"type", "length", "fingerprint"}


def test_the_lookup_tool_logs_the_size_of_the_query_not_its_words(tool_logs) -> None:
    from novakit.bridge.tools import load_handler

    lookup = load_handler(REPO / "tools" / "lookup" / "handler.py")
    for query in ("parking for my bicycle", "zebra xylophone quokka"):
        event = {"version": "1", "tool": "lookup", "toolUseId": "t-1", "input": {"query": query}}
        lookup(event, None)
    text = tool_logs.getvalue()
    for word in ("bicycle", "parking", "zebra", "quokka"):
        assert word not in text
    lines = entries(tool_logs)
    assert [e["message"] for e in lines] == ["lookup", "tool answered", "lookup", "tool refused"]
    assert lines[0]["query"]["length"] == len("parking for my bicycle")


def test_a_failing_tool_logs_where_it_failed_not_the_arguments(tool_logs) -> None:
    @powertools.voice_tool(schema={"type": "object"})
    def broken(params: dict[str, Any], call: Any) -> Any:
        return {"answer": {"Europe/Pariss": 1}[params["zone"]]}

    answer = broken(
        {"version": "1", "tool": "broken", "toolUseId": "t", "input": {"zone": "Atlantis/Lost"}},
        None,
    )
    assert answer == {"error": "the broken tool failed unexpectedly"}
    (entry,) = entries(tool_logs)
    assert entry["message"] == "tool failed" and entry["error_type"] == "KeyError"
    assert "broken" in entry["stack"]  # the function and line that failed
    assert "Atlantis" not in json.dumps(entry)


def test_summary_describes_without_content() -> None:
    described = powertools.summary("my secret question")
    assert described["type"] == "str" and described["length"] == 18
    assert described == powertools.summary("my secret question")  # repeats are visible
    assert described["fingerprint"] != powertools.summary("my other question")["fingerprint"]
    assert "secret" not in json.dumps(described)
    assert powertools.summary(None) == {"type": "NoneType"}
    assert powertools.summary({"a": [1, 2]})["length"] == 1
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    # no RecursionError from a hostile value (nor a fingerprint: it would cost a full walk)
    assert powertools.summary(deep) == {"type": "list", "length": 1}


# -- secrets ---------------------------------------------------------------------------------


def test_botocore_at_debug_does_not_log_the_shared_secret(monkeypatch) -> None:
    from moto import mock_aws

    secret = "moto-shared-secret-7f3c9a"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AUTH_MODE": "secret",
    }.items():
        monkeypatch.setenv(name, value)
    sdk_levels = {name: logging.getLogger(name).level for name in ("botocore", "boto3", "urllib3")}
    root = logging.getLogger()
    saved_level = root.level
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # as AWS_LAMBDA_LOG_LEVEL=DEBUG would
    try:
        with mock_aws():
            import boto3

            arn = boto3.client("secretsmanager").create_secret(
                Name="ws-token", SecretString=secret
            )["ARN"]
            monkeypatch.setenv("SECRET_ARN", arn)
            captured.truncate(0)
            spec = importlib.util.spec_from_file_location(
                "ws_authorizer_debug", AUTHORIZER_CODE / "handler.py"
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            event = {"methodArn": "arn:x", "queryStringParameters": {"token": secret}}
            answer = module.handler(event)
            assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in sdk_levels.items():
            logging.getLogger(name).setLevel(level)
    assert secret not in captured.getvalue()


def test_the_bridge_caps_the_aws_sdk_loggers_whatever_its_level(monkeypatch) -> None:
    for target, name in ((sys, "excepthook"), (sys, "unraisablehook"), (threading, "excepthook")):
        monkeypatch.setattr(target, name, getattr(target, name))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in logs.AWS_SDK_LOGGERS}
    stream = io.StringIO()
    try:
        logs.configure("DEBUG", stream)
        logging.getLogger("botocore.parsers").debug("Response body: SecretString=xyz")
        logging.getLogger("urllib3.connectionpool").debug("https://secrets GET 200")
        logging.getLogger("novakit.bridge.test").debug("the bridge's own debug line")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, saved_level in levels.items():
            logging.getLogger(name).setLevel(saved_level)
        logging.captureWarnings(False)
    assert [e["message"] for e in entries(stream)] == ["the bridge's own debug line"]


# -- third-party tracebacks ------------------------------------------------------------------


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n{stderr}")
    return parsed


def test_an_awscrt_callback_exception_is_one_json_line() -> None:
    # awscrt calls Python callbacks from its own threads; an exception there is "unraisable",
    # which Python prints to stderr as a bare traceback unless sys.unraisablehook says otherwise.
    proc = run_python(
        """
        import http.server, threading
        from awscrt import http as crt_http
        from novakit.bridge import logs

        logs.configure("INFO")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        connection = crt_http.HttpClientConnection.new(host_name="127.0.0.1", port=port).result(20)

        def on_body(http_stream, chunk, **kwargs):
            raise RuntimeError("a callback of awscrt failed")

        request = crt_http.HttpRequest(
            "GET", "/", crt_http.HttpHeaders([("host", f"127.0.0.1:{port}")])
        )
        stream = connection.request(request, on_body=on_body)
        stream.activate()
        try:
            stream.completion_future.result(20)
        except Exception as exc:  # the request fails with the callback: awscrt says so
            print(type(exc).__name__)
        try:
            connection.close().result(20)
        except Exception as exc:  # and so does the connection it was on
            print(type(exc).__name__)
        server.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"AwsCrtError"}
    # awscrt's own line, written from C after the traceback, is the only plain-text line.
    native = "Treating Python exception as error 3(AWS_ERROR_UNKNOWN)"
    (entry,) = json_lines(proc.stderr.replace(native, ""))
    assert entry["logger"] == "novakit.errors" and entry["level"] == "ERROR"
    assert entry["message"].startswith("exception in a callback on thread")
    assert "RuntimeError: a callback of awscrt failed" in entry["exception"]
    assert "in on_body" in entry["exception"]


def test_every_hook_logs_one_json_line() -> None:
    proc = run_python(
        """
        import asyncio, threading, warnings
        from novakit.bridge import logs

        logs.configure("INFO")

        def in_a_thread():
            raise ValueError("thread failed")

        thread = threading.Thread(target=in_a_thread, name="worker-1")
        thread.start()
        thread.join()

        class Leaky:
            def __del__(self):
                raise OSError("finaliser failed")

        Leaky()

        async def main():
            logs.log_loop_exceptions()
            loop = asyncio.get_running_loop()
            done = asyncio.Event()

            def callback():
                done.set()
                raise LookupError("callback failed")

            loop.call_soon(callback)
            await done.wait()
            await asyncio.sleep(0)

        asyncio.run(main())
        warnings.warn("a library warns")
        raise KeyError("main failed")
        """
    )
    assert proc.returncode == 1
    lines = json_lines(proc.stderr)
    assert len(lines) == 5, proc.stderr
    thread, unraisable, loop, warning, uncaught = lines
    assert (
        thread["thread_name"] == "worker-1" and "ValueError: thread failed" in thread["exception"]
    )
    assert "OSError: finaliser failed" in unraisable["exception"]
    assert "Leaky.__del__" in unraisable["object"] or "__del__" in unraisable["message"]
    assert "LookupError: callback failed" in loop["exception"]
    assert warning["logger"] == "py.warnings" and "a library warns" in warning["message"]
    assert uncaught["level"] == "CRITICAL" and "KeyError: 'main failed'" in uncaught["exception"]
    for entry in (thread, unraisable, loop, uncaught):
        assert entry["logger"] == "novakit.errors"
