"""Static files for plain GETs: content types, index pages, and no way out of the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from novakit.localgw.static import resolve_static

from .conftest import FakeBackend, client, gateway
from .test_management import request


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>novakit</h1>")
    (root / "js" / "app.js").write_text("export const x = 1;")
    (root / "js" / "index.html").write_text("js index")
    (root / "style.css").write_text("body {}")
    (root / "worklet.wasm").write_bytes(b"\x00asm")
    (root / ".env").write_text("SECRET=1")
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/", "text/html; charset=utf-8", b"<h1>novakit</h1>"),
        ("/index.html", "text/html; charset=utf-8", b"<h1>novakit</h1>"),
        ("/js/app.js", "text/javascript; charset=utf-8", b"export const x = 1;"),
        ("/js/", "text/html; charset=utf-8", b"js index"),
        ("/style.css", "text/css; charset=utf-8", b"body {}"),
        ("/worklet.wasm", "application/wasm", b"\x00asm"),
    ],
)
async def test_files_are_served_with_their_content_type(
    backend: FakeBackend, site: Path, path: str, content_type: str, body: bytes
) -> None:
    async with gateway(backend, static_dir=site) as gw:
        status, headers, received = await request("GET", gw.management_url + path)
    assert (status, headers["Content-Type"], received) == (200, content_type, body)


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/%2e%2e/%2e%2e/secret.txt",
        "/js/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/.env",
        "/escape",
        "/missing.html",
    ],
)
async def test_nothing_outside_the_root_or_hidden_is_served(
    backend: FakeBackend, site: Path, path: str
) -> None:
    async with gateway(backend, static_dir=site) as gw:
        status, _, body = await request("GET", gw.management_url + path)
    assert status == 404
    assert b"outside the root" not in body
    assert b"SECRET" not in body


def test_resolution_refuses_traversal_without_a_server(site: Path) -> None:
    assert resolve_static(site, "/") == (site / "index.html").resolve()
    assert resolve_static(site, "/js/app.js") == (site / "js" / "app.js").resolve()
    for path in ("/../secret.txt", "/js/../../secret.txt", "/a\\..\\b", "/x\x00", "/escape"):
        assert resolve_static(site, path) is None


async def test_websocket_handshakes_still_work_beside_static_files(
    backend: FakeBackend, site: Path
) -> None:
    async with gateway(backend, static_dir=site) as gw, client(gw.url) as ws:
        await ws.send("{}")
        await backend.recorder.wait_for("$default")


async def test_without_static_files_a_plain_get_is_told_to_upgrade(backend: FakeBackend) -> None:
    async with gateway(backend) as gw:
        status, headers, _ = await request("GET", gw.management_url + "/")
    assert status == 426
    assert headers["Upgrade"] == "websocket"
