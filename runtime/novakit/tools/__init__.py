"""Tools the model can call: the tool folder contract (``tools/<name>/``)."""

from novakit.tools.manifest import ToolManifestError, ToolSpec, discover_tools

__all__ = ["ToolManifestError", "ToolSpec", "discover_tools"]
