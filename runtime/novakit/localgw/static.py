"""Static files for plain HTTP GETs (the browser client), resolved safely, sans I/O but for stat.

A request path maps to a file under the root only if every segment is an ordinary name: no ``..``,
no hidden names, no backslashes or NUL, and the resolved file (symlinks followed) still lies under
the root. Directories serve their ``index.html``.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

__all__ = ["content_type", "resolve_static"]

# The platform's mime table varies (``.js`` has been ``application/javascript`` or missing);
# browsers need these exact types for modules, workers and WebAssembly.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".wav": "audio/wav",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


def content_type(path: Path) -> str:
    known = _CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def resolve_static(root: Path, url_path: str) -> Path | None:
    """The file ``url_path`` (decoded, starting with ``/``) names under ``root``, or ``None``."""
    if "\\" in url_path or "\x00" in url_path:
        return None
    segments = [part for part in PurePosixPath(url_path).parts if part != "/"]
    if any(part.startswith(".") for part in segments):  # "..", ".env", ".git"
        return None
    root = root.resolve()
    candidate = root.joinpath(*segments)
    if url_path.endswith("/") or candidate.is_dir():
        candidate = candidate / "index.html"
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        return None
    return resolved
