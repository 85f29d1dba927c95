import pytest

from novakit import s2s
from novakit.s2s.nova import NovaEngine


class _FakeEngine(s2s.Engine):
    name = "fake"

    def __init__(self, config: s2s.Config) -> None:
        self.config = config

    def create_session(self, config, history):  # pragma: no cover - not started here
        raise AssertionError


def test_builtin_nova_is_listed_and_built():
    assert "nova" in s2s.providers()
    engine = s2s.new("nova", s2s.Config(instructions="hi"))
    assert isinstance(engine, NovaEngine)
    assert engine.config.instructions == "hi"


def test_register_and_unregister():
    s2s.register("fake", _FakeEngine)
    try:
        assert "fake" in s2s.providers()
        engine = s2s.new("fake")
        assert isinstance(engine, _FakeEngine)
        assert engine.config == s2s.Config()
    finally:
        s2s.unregister("fake")
    assert "fake" not in s2s.providers()


def test_unknown_provider_lists_known_ones():
    with pytest.raises(s2s.ProviderNotFoundError) as info:
        s2s.new("openai-realtime")
    assert "'openai-realtime'" in str(info.value)
    assert "nova" in str(info.value)


def test_entry_point_is_declared():
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="novakit.s2s.providers")}
    assert "nova" in names


def test_empty_name_is_rejected():
    with pytest.raises(ValueError):
        s2s.register(" ", _FakeEngine)
