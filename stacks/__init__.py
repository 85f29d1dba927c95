"""CDK constructs and the stack of the novakit voice agent (infrastructure only)."""

from stacks.settings import AuthMode, Settings, SettingsError
from stacks.voice_agent_stack import Sources, VoiceAgentStack

__all__ = ["AuthMode", "Settings", "SettingsError", "Sources", "VoiceAgentStack"]
