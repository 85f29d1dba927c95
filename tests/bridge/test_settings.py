"""Bridge settings from the environment: defaults, every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from novakit.bridge.settings import BridgeSettings, SettingsError

from ..gateway_auth import GATEWAY_SECRET, SECRET_ENV


def test_defaults_need_only_the_connections_url_and_the_gateway_secret() -> None:
    settings = BridgeSettings.from_env(
        {
            "NOVAKIT_CONNECTIONS_URL": "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            "AWS_REGION": "eu-west-1",
            **SECRET_ENV,
        }
    )
    assert settings.gateway_secrets == (GATEWAY_SECRET,)
    assert not settings.insecure_no_gateway_secret
    assert settings.relay_window_seconds == 30.0
    assert settings.connections_url == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    assert (settings.region, settings.port, settings.batch_ms) == ("eu-west-1", 8080, 100)
    assert settings.model == "amazon.nova-2-sonic-v1:0"
    assert settings.tools_manifest == ()


def test_every_problem_is_listed_by_variable_name() -> None:
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env(
            {
                "NOVAKIT_PORT": "http",
                "NOVAKIT_BATCH_MS": "5",
                "NOVAKIT_TOOLS": "[1, 2]",
                "NOVAKIT_LOG_LEVEL": "loud",
                "NOVAKIT_TOOLS_DIR": "/no/such/dir",
            }
        )
    problems = failure.value.problems
    assert problems == [
        "NOVAKIT_CONNECTIONS_URL is required",
        "NOVAKIT_GATEWAY_SECRET is required: the secret API Gateway sends with every "
        "integration request (for local use without a gateway, "
        "NOVAKIT_INSECURE_NO_GATEWAY_SECRET=1 accepts requests from anyone)",
        "NOVAKIT_PORT must be an integer, got 'http'",
        "NOVAKIT_BATCH_MS must be between 20 and 1000, got 5",
        "NOVAKIT_TOOLS must be a JSON list of tool objects",
        "NOVAKIT_TOOLS_DIR: '/no/such/dir' is not a directory",
        "NOVAKIT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'",
    ]
    assert "NOVAKIT_PORT must be an integer" in str(failure.value)


def test_the_tool_manifest_inline_or_from_a_file(tmp_path: Path) -> None:
    manifest = [{"name": "get_time", "function_arn": "arn:aws:lambda:eu-west-1:1:function:t"}]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(manifest))
    base = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080", **SECRET_ENV}
    inline = BridgeSettings.from_env({**base, "NOVAKIT_TOOLS": json.dumps(manifest)})
    from_file = BridgeSettings.from_env({**base, "NOVAKIT_TOOLS": f"@{path}"})
    assert inline.tools_manifest == from_file.tools_manifest == tuple(manifest)


def test_how_often_metrics_are_written() -> None:
    base = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080", **SECRET_ENV}
    assert BridgeSettings.from_env(base).metrics_seconds == 60.0
    often = BridgeSettings.from_env({**base, "NOVAKIT_METRICS_SECONDS": "2.5"})
    assert often.metrics_seconds == 2.5
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**base, "NOVAKIT_METRICS_SECONDS": "0"})
    assert failure.value.problems[0].startswith("NOVAKIT_METRICS_SECONDS must be between 1")


def test_a_retired_model_needs_the_bridges_explicit_setting() -> None:
    from novakit.bridge.app import Bridge
    from novakit.s2s import ConfigError

    env = {
        "NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080",
        "NOVAKIT_MODEL_ID": "amazon.nova-sonic-v1:0",
        "AWS_REGION": "us-east-1",
        **SECRET_ENV,
    }
    refused = BridgeSettings.from_env(env)
    assert refused.allow_retired_model is False
    with pytest.raises(ConfigError, match="end of life on 14 September 2026"):
        Bridge(refused)
    allowed = BridgeSettings.from_env({**env, "NOVAKIT_ALLOW_RETIRED_MODEL": "1"})
    assert allowed.allow_retired_model is True
    assert Bridge(allowed).engine is not None


def test_phone_hangup_refuses_a_deployment_tool_of_the_built_in_tools_name() -> None:
    from novakit.bridge.app import Bridge
    from novakit.bridge.tools import BoundTool, LocalInvoker, ToolSetupError
    from novakit.s2s import ToolDefinition

    env = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080", **SECRET_ENV}
    own = BoundTool(ToolDefinition("end_call", "hangs up"), 2.0, LocalInvoker("end_call", print))
    settings = BridgeSettings.from_env({**env, "NOVAKIT_PHONE_HANGUP": "1"})
    assert settings.phone_hangup is True
    with pytest.raises(ToolSetupError, match="built-in hang-up tool"):
        Bridge(settings, tools=[own])
    # Without the setting the name is the deployment's to use.
    assert len(Bridge(BridgeSettings.from_env(env), tools=[own]).tools) == 1


def test_the_gateway_secret_rules() -> None:
    url = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080"}
    rotating = BridgeSettings.from_env(
        {**url, **SECRET_ENV, "NOVAKIT_GATEWAY_SECRET_PREVIOUS": "p" * 40}
    )
    assert rotating.gateway_secrets == (GATEWAY_SECRET, "p" * 40)  # current first
    # local use without a gateway must say so, in a name that says what it costs
    insecure = BridgeSettings.from_env({**url, "NOVAKIT_INSECURE_NO_GATEWAY_SECRET": "1"})
    assert insecure.insecure_no_gateway_secret and insecure.gateway_secrets == ()
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env(
            {
                **url,
                "NOVAKIT_INSECURE_NO_GATEWAY_SECRET": "1",
                "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x",
            }
        )
    assert failure.value.problems[0].startswith("NOVAKIT_INSECURE_NO_GATEWAY_SECRET is refused")
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**url, "NOVAKIT_GATEWAY_SECRET": "short secret"})
    assert failure.value.problems == [
        "NOVAKIT_GATEWAY_SECRET(_PREVIOUS) must be at least 32 characters long",
        "NOVAKIT_GATEWAY_SECRET(_PREVIOUS) must be printable ASCII without spaces (a header value)",
    ]
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**url, "NOVAKIT_GATEWAY_SECRET_PREVIOUS": GATEWAY_SECRET})
    assert failure.value.problems == [
        "NOVAKIT_GATEWAY_SECRET_PREVIOUS needs NOVAKIT_GATEWAY_SECRET"
    ]
    windowed = BridgeSettings.from_env({**url, **SECRET_ENV, "NOVAKIT_RELAY_WINDOW_SECONDS": "5"})
    assert windowed.relay_window_seconds == 5.0
