"""The provider registry: ``new(name, config)``, ``register(name, factory)``, ``providers()``.

Providers come from three places, looked up lazily so that importing ``novakit.s2s`` does not
import any provider's SDK: the built-in table below, ``register()`` calls, and the
``novakit.s2s.providers`` entry-point group of installed packages (the way a third-party package
adds a provider without code changes here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

from .config import Config
from .errors import ProviderNotFoundError

if TYPE_CHECKING:
    from .session import Engine

ProviderFactory = Callable[[Config], "Engine"]
ENTRY_POINT_GROUP = "novakit.s2s.providers"

_BUILTIN: dict[str, str] = {"nova": "novakit.s2s.nova:create_provider"}
_registered: dict[str, ProviderFactory] = {}


def register(name: str, factory: ProviderFactory) -> None:
    """Make ``factory`` available as ``new(name, ...)``; a later call replaces an earlier one."""
    if not name or not name.strip():
        raise ValueError("provider name is empty")
    _registered[name] = factory


def unregister(name: str) -> None:
    """Forget a provider added with ``register`` (built-ins and entry points stay)."""
    _registered.pop(name, None)


def providers() -> list[str]:
    """Names of every provider that ``new()`` accepts, sorted."""
    return sorted(set(_registered) | set(_BUILTIN) | set(_entry_points()))


def new(name: str, config: Config | None = None) -> Engine:
    """Build an engine of provider ``name``; raises ``ProviderNotFoundError`` listing the known."""
    factory = _resolve(name)
    return factory(config if config is not None else Config())


def _resolve(name: str) -> ProviderFactory:
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    entry_point = _entry_points().get(name)
    if entry_point is not None:
        factory: ProviderFactory = entry_point.load()
        return factory
    raise ProviderNotFoundError(
        f"no speech-to-speech provider named {name!r}; known providers: "
        + (", ".join(providers()) or "none")
    )


def _load(target: str) -> ProviderFactory:
    module_name, _, attribute = target.partition(":")
    factory: ProviderFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
