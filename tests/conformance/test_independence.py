"""The suite checks the emulator against AWS's documents, not against the project's provider."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_suite_imports_the_provider() -> None:
    modules = sorted(HERE.glob("*.py"))
    assert len(modules) >= 4
    for path in modules:
        for name in imported_modules(path):
            assert not (name == "novakit.s2s" or name.startswith("novakit.s2s.")), (path, name)
            # The emulator tests' helpers open streams through the provider's transport.
            assert not name.startswith("tests.emulator"), (path, name)


def test_the_check_sees_a_provider_import() -> None:
    # The check must be able to fail: every form of importing the provider is caught.
    for source in (
        "import novakit.s2s",
        "from novakit import s2s",
        "from novakit.s2s.nova.transport import BedrockTransport",
    ):
        tree = ast.parse(source)
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        assert any(n == "novakit.s2s" or n.startswith("novakit.s2s.") for n in names), source


def test_the_suite_does_not_load_the_provider_even_indirectly() -> None:
    # In a fresh interpreter: this process may have loaded the provider for other tests.
    code = (
        "import sys\n"
        "import tests.conformance.sequences, tests.conformance.test_sequences\n"
        "import tests.conformance.test_timing, tests.conformance.wire\n"
        "print(sorted(m for m in sys.modules if m.startswith('novakit.')))\n"
    )
    root = HERE.parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    assert "novakit.emulator" in loaded  # the check sees what the suite loads
    assert "novakit.s2s" not in loaded
