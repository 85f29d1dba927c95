"""Deployment settings are checked before anything is defined: clear messages, safe defaults."""

from __future__ import annotations

import json

import pytest

from stacks import AuthMode, Settings, SettingsError
from tests.infra.conftest import REPO


def test_defaults_are_the_quick_start():
    settings = Settings.from_context({"region": "us-east-1"})
    assert settings.model_id == "amazon.nova-2-sonic-v1:0"
    assert settings.auth_mode is AuthMode.SECRET
    assert settings.allow_unauthenticated is False
    assert settings.web_client is False


def test_cdk_json_context_is_valid_and_matches_the_defaults():
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    settings = Settings.from_context({"region": "us-east-1", **context})
    assert settings == Settings.from_context({"region": "us-east-1"})


def test_command_line_strings_are_coerced():
    settings = Settings.from_context(
        {
            "region": "us-west-2",
            "min_tasks": "2",
            "max_tasks": "6",
            "web_client": "true",
            "auth_mode": "COGNITO",
            "batch_ms": "60",
        }
    )
    assert (settings.min_tasks, settings.max_tasks, settings.batch_ms) == (2, 6, 60)
    assert settings.web_client is True
    assert settings.auth_mode is AuthMode.COGNITO


def test_region_comes_from_the_cli_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("CDK_DEFAULT_REGION", "ap-northeast-1")
    assert Settings.from_context({}).region == "ap-northeast-1"
    monkeypatch.delenv("CDK_DEFAULT_REGION")
    assert Settings.from_context({}).region == "us-east-1"


def test_region_outside_nova_sonic_fails_with_the_list():
    with pytest.raises(SettingsError, match=r"not offered in eu-west-1") as info:
        Settings.from_context({"region": "eu-west-1"})
    assert "us-east-1" in str(info.value)
    assert "cross-Region" in str(info.value)


def test_v1_model_is_refused_past_its_end_of_life_unless_allowed():
    with pytest.raises(SettingsError, match="end of life on 14 September 2026") as info:
        Settings.from_context({"model_id": "amazon.nova-sonic-v1:0"})
    assert "amazon.nova-2-sonic-v1:0" in str(info.value)
    assert "-c allow_retired_model=true" in str(info.value)


def test_v1_model_has_its_own_regions():
    settings = Settings.from_context(
        {
            "region": "eu-north-1",
            "model_id": "amazon.nova-sonic-v1:0",
            "allow_retired_model": "true",
        }
    )
    assert settings.region == "eu-north-1"
    with pytest.raises(SettingsError, match="not offered in eu-north-1"):
        Settings.from_context({"region": "eu-north-1"})


def test_open_endpoint_needs_the_loud_flag():
    with pytest.raises(SettingsError, match="allow_unauthenticated=true"):
        Settings.from_context({"region": "us-east-1", "auth_mode": "none"})
    settings = Settings.from_context(
        {"region": "us-east-1", "auth_mode": "none", "allow_unauthenticated": "true"}
    )
    assert settings.auth_mode is AuthMode.NONE


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"model_id": "amazon.titan-text"}, "not a Nova Sonic model"),
        ({"voice": "hal"}, "not offered by amazon.nova-2-sonic-v1:0"),
        ({"auth_mode": "oauth"}, "auth_mode must be one of secret, cognito, iam, none"),
        ({"task_cpu": 300}, "task_cpu must be one of"),
        ({"task_cpu": 256, "task_memory_mib": 4096}, "does not fit task_cpu 256"),
        ({"min_tasks": 0}, "min_tasks must be from 1"),
        ({"min_tasks": 3, "max_tasks": 2}, "max_tasks must be from 3"),
        ({"min_tasks": "two"}, "min_tasks must be a whole number"),
        ({"web_client": "maybe"}, "web_client must be true or false"),
        ({"batch_ms": 5}, "batch_ms must be from 20"),
        ({"log_retention_days": 10}, "log_retention_days must be one of"),
        ({"stage_name": "prod-1"}, "stage_name must be letters and digits"),
        ({"stage_name": "realtime"}, "OpenAI Realtime protocol; choose another name"),
        ({"log_level": "chatty"}, "log_level must be"),
    ],
)
def test_bad_values_are_refused(context, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_context({"region": "us-east-1", **context})


def test_every_accepted_log_retention_has_a_cdk_value():
    from stacks.settings import _LOG_RETENTION_DAYS
    from stacks.voice_agent_stack import RETENTION

    assert set(RETENTION) == set(_LOG_RETENTION_DAYS)


def test_the_gateway_secret_version_is_a_secrets_manager_version_id():
    version = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    assert Settings.from_context({"gateway_secret_version": version}).gateway_secret_version == (
        version
    )
    assert Settings.from_context({}).gateway_secret_version == ""
    for bad in ("AWSCURRENT", "x" * 65, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d::"):
        with pytest.raises(SettingsError, match="gateway_secret_version"):
            Settings.from_context({"gateway_secret_version": bad})


def test_ha_raises_tasks_and_nat_gateways_without_lowering_anything():
    plain = Settings.from_context({"region": "us-east-1"})
    assert (plain.task_range, plain.nat_gateway_count) == ((1, 4), 1)
    ha = Settings.from_context({"region": "us-east-1", "ha": "true"})
    assert (ha.task_range, ha.nat_gateway_count) == ((2, 4), 2)
    bigger = Settings.from_context({"region": "us-east-1", "ha": "true", "min_tasks": "3"})
    assert bigger.task_range == (3, 4)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("connect_rate", "3000", "connect_rate must be from 1 to 2500"),
        ("connect_burst", "0", "connect_burst must be from 1 to 5000"),
        ("min_free_sessions", "21", "min_free_sessions must be from 1 to 20"),
        ("authorizer_concurrency", "-1", "authorizer_concurrency must be from 0 to 1000"),
    ],
)
def test_flood_and_scaling_limits_are_checked(key, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_context({"region": "us-east-1", key: value})


def test_top_level_requirements_pin_the_locked_versions():
    """requirements.txt (what `pip install -r requirements.txt && npx cdk synth` needs) names
    exact versions, the lock's, and constrains the rest to the lock."""
    lock = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.lower().replace("_", "-")] = version.strip()
    lines = [
        line.split("#", 1)[0].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
    ]
    lines = [line for line in lines if line]
    assert "-c requirements/lock.txt" in lines and "-e ." in lines
    pins = dict(line.split("==", 1) for line in lines if not line.startswith("-"))
    pins = {name.split("[")[0]: version for name, version in pins.items()}
    assert {"aws-cdk-lib", "constructs", "cdk-nag", "aws-lambda-powertools"} <= set(pins)
    for name, version in pins.items():
        assert lock[name.lower()] == version, name
