import pytest

from novakit import s2s
from novakit.s2s import Config, ConfigError, ToolChoice, ToolDefinition


def test_defaults():
    config = Config()
    assert config.model == "amazon.nova-2-sonic-v1:0"
    assert config.input_sample_rate == 16000
    assert config.output_sample_rate == 24000


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, '"type": "object"'),
        ({"type": "object", "properties": []}, "properties"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "undefined"),
        ({"type": "object", "required": "a"}, "required"),
        ({"type": "object", "default": object()}, "JSON-serialisable"),
    ],
)
def test_bad_tool_schema(schema, message):
    with pytest.raises(ConfigError, match=message):
        ToolDefinition("lookup", "Looks things up", schema)


def test_bad_tool_names_and_descriptions():
    with pytest.raises(ConfigError, match="must start with a letter"):
        ToolDefinition("1lookup", "x")
    with pytest.raises(ConfigError, match="description is empty"):
        ToolDefinition("lookup", "  ")


def test_duplicate_tools_rejected():
    tool = ToolDefinition("lookup", "Looks things up")
    with pytest.raises(ConfigError, match="repeated: \\['lookup'\\]"):
        Config(tools=[tool, tool])


def test_schema_json_is_a_compact_string():
    tool = ToolDefinition(
        "lookup", "d", {"type": "object", "properties": {"q": {"type": "string"}}}
    )
    assert tool.schema_json() == '{"properties":{"q":{"type":"string"}},"type":"object"}'


def test_bad_sample_rate():
    with pytest.raises(ConfigError, match="input_sample_rate=11000"):
        Config(input_sample_rate=11000)


def test_overrides_replace_only_given_fields():
    base = Config(instructions="a", voice="matthew")
    changed = base.with_overrides(voice="tiffany", instructions=None)
    assert changed.voice == "tiffany"
    assert changed.instructions == "a"
    with pytest.raises(ConfigError, match="unknown session options"):
        base.with_overrides(colour="blue")


RETIRED_OK = {"allow_retired_model": True}


def test_nova_validates_voice_per_model():
    with pytest.raises(ConfigError, match="voice 'olivia' is not available on amazon.nova-sonic"):
        s2s.new("nova", Config(model="amazon.nova-sonic-v1:0", voice="olivia", extra=RETIRED_OK))
    s2s.new("nova", Config(model="amazon.nova-2-sonic-v1:0", voice="olivia"))


def test_nova_sonic_v1_is_refused_past_its_end_of_life():
    with pytest.raises(ConfigError) as info:
        s2s.new("nova", Config(model="amazon.nova-sonic-v1:0"))
    message = str(info.value)
    assert "end of life on 14 September 2026" in message
    assert "Use amazon.nova-2-sonic-v1:0" in message
    assert "allow_retired_model" in message
    # Where a Region or account still serves it, the caller may say so.
    engine = s2s.new("nova", Config(model="amazon.nova-sonic-v1:0", extra=RETIRED_OK))
    assert engine is not None
    with pytest.raises(ConfigError, match="allow_retired_model must be true or false"):
        s2s.new("nova", Config(extra={"allow_retired_model": "yes"}))


def test_nova_rejects_unknown_model_and_rates():
    with pytest.raises(ConfigError, match="unknown Nova Sonic model 'amazon.titan'"):
        s2s.new("nova", Config(model="amazon.titan"))
    with pytest.raises(ConfigError, match="takes 8000, 16000 or 24000 Hz input, not 22050"):
        s2s.new("nova", Config(input_sample_rate=22050))
    with pytest.raises(ConfigError, match="speaks at 8000, 16000, 24000"):
        s2s.new("nova", Config(output_sample_rate=48000))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"regoin": "us-east-1"}, "unknown Nova option"),
        ({"region": ""}, "region is required"),
        ({"base_url": "http://localhost:8443"}, "must be an https:// URL"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"aws_access_key_id": "AKID"}, "give both"),
        ({"temperature": 2.0}, "temperature"),
        ({"endpointing_sensitivity": "SOMETIMES"}, "HIGH, MEDIUM, LOW"),
        ({"keepalive_step": 0}, "keepalive_step must be between"),
        ({"keepalive_step": 2.0}, "keepalive_step must be between"),
        ({"keepalive_after": -1}, "keepalive_after must be >= 0"),
    ],
)
def test_nova_extra_validation(extra, message):
    with pytest.raises(ConfigError, match=message):
        s2s.new("nova", Config(extra=extra))


def test_endpointing_is_nova2_only():
    with pytest.raises(ConfigError, match="not supported by amazon.nova-sonic-v1:0"):
        s2s.new(
            "nova",
            Config(
                model="amazon.nova-sonic-v1:0",
                extra={"endpointing_sensitivity": "HIGH", **RETIRED_OK},
            ),
        )


def test_unlisted_region_warns(caplog):
    s2s.new("nova", Config(extra={"region": "eu-west-9"}))
    assert "not known to be offered in eu-west-9" in caplog.text


def test_session_overrides_are_validated():
    engine = s2s.new("nova", Config())
    with pytest.raises(ConfigError, match="voice 'nobody'"):
        engine.start(voice="nobody")


def test_region_follows_the_environment(monkeypatch):
    from novakit.s2s.nova import NovaOptions

    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert NovaOptions.from_extra({}).region == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert NovaOptions.from_extra({}).region == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    assert NovaOptions.from_extra({}).region == "ap-northeast-1"
    assert NovaOptions.from_extra({"region": "us-east-1"}).region == "us-east-1"


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_nova_takes_each_documented_input_rate(rate: int) -> None:
    engine = s2s.new("nova", Config(input_sample_rate=rate))
    assert engine.config.input_sample_rate == rate
    # and per session
    other = 24000 if rate != 24000 else 8000
    session = engine.start(input_sample_rate=other)._session  # unopened: nothing is sent
    assert session.config.input_sample_rate == other  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="not 44100 Hz"):
        engine.start(input_sample_rate=44100)


def test_tool_choice_is_validated() -> None:
    lookup = ToolDefinition("lookup", "Look it up.")
    assert Config(tools=[lookup], tool_choice="any").tool_choice == ToolChoice("any")
    assert Config(tool_choice="auto").tool_choice == ToolChoice("auto")
    named = Config(tools=[lookup], tool_choice=ToolChoice.tool("lookup"))
    assert named.tool_choice == ToolChoice("tool", "lookup")
    with pytest.raises(ConfigError, match="use 'auto', 'any' or ToolChoice.tool"):
        Config(tools=[lookup], tool_choice="required")
    with pytest.raises(ConfigError, match="'any' needs tools to choose from"):
        Config(tool_choice="any")
    with pytest.raises(ConfigError, match="'other', which is not one of the tools"):
        Config(tools=[lookup], tool_choice=ToolChoice.tool("other"))
    with pytest.raises(ConfigError, match="mode must be auto, any or tool"):
        ToolChoice("sometimes")
    with pytest.raises(ConfigError, match="names a tool with mode 'tool', and only then"):
        ToolChoice("any", "lookup")
    with pytest.raises(ConfigError, match="must be a ToolChoice"):
        Config(tools=[lookup], tool_choice={"any": {}})  # type: ignore[arg-type]
    # per session, checked against that session's tools
    engine = s2s.new("nova", Config(tools=[lookup]))
    with pytest.raises(ConfigError, match="not one of the tools"):
        engine.start(tool_choice=ToolChoice.tool("missing"))


def test_speech_instructions_are_nova_2_only() -> None:
    s2s.new("nova", Config(extra={"speech_instructions": "Speak slowly."}))
    with pytest.raises(ConfigError, match="SYSTEM_SPEECH prompt\\) is not supported by amazon"):
        s2s.new(
            "nova",
            Config(
                model="amazon.nova-sonic-v1:0",
                extra={**RETIRED_OK, "speech_instructions": "Speak slowly."},
            ),
        )
    with pytest.raises(ConfigError, match="speech_instructions must be a string"):
        s2s.new("nova", Config(extra={"speech_instructions": "  "}))
