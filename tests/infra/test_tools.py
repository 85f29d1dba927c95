"""Tools: every folder under tools/ becomes a Lambda function and an entry of the bridge's tool
manifest, with no change to stacks/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from novakit.tools import discover_tools
from stacks.tool_functions import (
    ARM64_PLATFORMS,
    HELPER_MODULE,
    pip_install_command,
    powertools_version,
    requirement_lines,
    unpinned_requirements,
)
from tests.infra.conftest import write_tool


def manifest_of(synth):
    (task,) = synth.resources("AWS::ECS::TaskDefinition").values()
    (definition,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    return env["NOVAKIT_TOOLS"]


def decode_manifest(value):
    """The manifest's JSON with each function ARN (a CloudFormation reference) read as "ARN"."""
    parts = value["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "ARN" for p in parts)
    return json.loads(text), [p for p in parts if not isinstance(p, str)]


def test_one_function_per_tool_folder(default):
    functions = default.stack.tools.functions
    assert sorted(functions) == ["lookup_order", "weather"]
    # The two tools plus the $connect authorizer.
    default.template.resource_count_is("AWS::Lambda::Function", 3)


def test_functions_are_arm64_python_with_their_limits(default):
    lookup = default.stack.tools.functions["lookup_order"]
    (resource,) = [
        r
        for k, r in default.resources("AWS::Lambda::Function").items()
        if k == default.resolve(lookup.function_name)["Ref"]
    ]
    props = resource["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "handler.handler"
    assert (props["Timeout"], props["MemorySize"]) == (20, 512)
    assert "Layers" not in props  # Powertools is bundled at the tested version
    assert props["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "lookup_order",
        "POWERTOOLS_METRICS_NAMESPACE": "Novakit",
        "TABLE": "orders",
    }
    assert props["LoggingConfig"]["LogGroup"] == default.resolve(lookup.log_group.log_group_name)


def test_tool_logs_have_a_retention(default):
    for function in default.stack.tools.functions.values():
        group = default.raw["Resources"][default.resolve(function.log_group.log_group_name)["Ref"]]
        assert group["Properties"]["RetentionInDays"] == 30


def test_manifest_handed_to_the_bridge(default):
    manifest = default.resolve(default.stack.tools.manifest_json(default.stack))
    # A JSON document with the function ARNs joined in by CloudFormation.
    assert manifest == manifest_of(default)
    entries, arns = decode_manifest(manifest)
    assert [e["name"] for e in entries] == ["lookup_order", "weather"]
    assert entries[0] == {
        "name": "lookup_order",
        "description": "The lookup_order tool.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "function_arn": "ARN",
        "timeout_s": 20,
    }
    assert arns == [
        default.resolve(default.stack.tools.functions[n].function_arn)
        for n in ("lookup_order", "weather")
    ]


def test_adding_a_folder_adds_a_function(synth, two_tools, tmp_path_factory):
    root = tmp_path_factory.mktemp("three-tools")
    for tool in discover_tools(two_tools):
        (root / tool.name).mkdir()
        for file in tool.folder.iterdir():
            (root / tool.name / file.name).write_bytes(file.read_bytes())
    write_tool(root, "book_table")
    three = synth("three-tools", tools=root, nag=False)
    assert sorted(three.stack.tools.functions) == ["book_table", "lookup_order", "weather"]
    three.template.resource_count_is("AWS::Lambda::Function", 4)
    entries, _ = decode_manifest(manifest_of(three))
    assert [e["name"] for e in entries] == ["book_table", "lookup_order", "weather"]


def test_no_tools_means_no_invoke_permission(synth, tmp_path_factory):
    empty = synth("no-tools", tools=tmp_path_factory.mktemp("empty"), nag=False)
    assert empty.stack.tools.functions == {}
    assert decode_manifest({"Fn::Join": ["", [manifest_of(empty)]]})[0] == []
    task_policy = json.dumps(
        empty.resolve(empty.stack.bridge.task_role.node.find_child("DefaultPolicy").document)
    )
    assert "lambda:" not in task_policy


def test_each_function_carries_its_folder_and_the_tool_helper(default):
    staged = {
        json.loads(path.read_text())["name"]: path.parent
        for path in default.outdir.glob("asset.*/tool.json")
    }
    assert sorted(staged) == ["lookup_order", "weather"]
    for folder in staged.values():
        assert (folder / "handler.py").is_file()
        helper = folder / "novakit" / "tools" / "powertools.py"
        assert helper.read_text() == HELPER_MODULE.read_text()
        assert (folder / "novakit" / "__init__.py").is_file()
        assert (folder / "novakit" / "tools" / "__init__.py").is_file()
        assert (folder / "aws_lambda_powertools" / "__init__.py").is_file()


def test_bundled_powertools_is_the_tested_version(default):
    """The version in every function is the one requirements/lock.txt pins (what the tests and
    `novakit dev` run)."""
    from tests.infra.conftest import REPO

    pins = dict(
        line.split("==", 1)
        for line in (REPO / "requirements" / "lock.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    locked = next(
        v for k, v in pins.items() if k.lower().replace("_", "-") == "aws-lambda-powertools"
    )
    assert powertools_version() == locked
    for path in default.outdir.glob("asset.*/tool.json"):
        version_file = path.parent / "aws_lambda_powertools" / "shared" / "version.py"
        assert f'VERSION = "{locked}"' in version_file.read_text()


def test_repo_tools_import_only_what_their_function_carries():
    """The handlers under tools/ import the standard library, Powertools (the layer) and
    novakit.tools.powertools (bundled): nothing else of novakit."""
    import ast

    from tests.infra.conftest import REPO

    for handler in (REPO / "tools").glob("*/handler.py"):
        for node in ast.walk(ast.parse(handler.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("novakit"):
                assert node.module == "novakit.tools.powertools", handler
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("novakit"), handler


def test_pip_command_targets_lambda_arm64_wheels(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nrequests==2.32.3  # pinned\n\n")
    assert requirement_lines(requirements) == ["requests==2.32.3"]
    command = pip_install_command(requirements, Path("/out"))
    assert command[1:4] == ["-m", "pip", "install"]
    joined = " ".join(command)
    for tag in ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"):
        assert f"--platform {tag}" in joined
    assert ARM64_PLATFORMS == (
        "manylinux2014_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux_2_28_aarch64",
    )
    assert "--python-version 3.12" in joined
    assert "--only-binary=:all:" in joined
    assert "--target /out" in joined


def test_a_broken_tool_folder_stops_the_synth(synth, tmp_path_factory):
    from novakit.tools import ToolManifestError

    root = tmp_path_factory.mktemp("broken-tools")
    write_tool(root, "greedy", iam_statements=[{"actions": ["s3:*"], "resources": ["*"]}])
    with pytest.raises(ToolManifestError, match="greedy"):
        synth("broken", tools=root, nag=False)


def test_local_bundling_installs_then_copies_the_tool(tmp_path, monkeypatch):
    from stacks import tool_functions

    folder = write_tool(tmp_path / "src", "needs_deps")
    (folder / "requirements.txt").write_text("tzdata==2025.2\n")
    (tool,) = discover_tools(tmp_path / "src")
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        (Path(command[command.index("--target") + 1]) / "tzdata").mkdir()
        return subprocess_result(0)

    monkeypatch.setattr(tool_functions.subprocess, "run", fake_run)
    out = tmp_path / "out"
    out.mkdir()
    assert tool_functions.ToolBundling(tool).try_bundle(str(out), image=None)
    assert calls == [pip_install_command(tool.requirements, out)]
    assert sorted(p.name for p in out.iterdir()) == [
        "aws_lambda_powertools",
        "aws_xray_sdk",
        "fastjsonschema",
        "handler.py",
        "novakit",
        "requirements.txt",
        "tool.json",
        "typing_extensions.py",
        "tzdata",
        "wrapt",
    ]
    # Python only: wrapt's extension is built for this machine, and wrapt falls back without it.
    assert not list(out.rglob("*.so"))


def test_requirements_must_be_pinned(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "numpy==2.5.5\nrequests>=2\npydantic[email]==2.9.2\ntzdata\nattrs==24.*\n"
    )
    assert unpinned_requirements(requirements) == ["requests>=2", "tzdata", "attrs==24.*"]


def test_an_unpinned_requirement_stops_the_bundling_before_pip(tmp_path, monkeypatch):
    from stacks import tool_functions

    folder = write_tool(tmp_path / "src", "loose")
    (folder / "requirements.txt").write_text("numpy\n")
    (tool,) = discover_tools(tmp_path / "src")
    monkeypatch.setattr(tool_functions.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    with pytest.raises(RuntimeError, match=r"tool loose: pin every requirement.*\['numpy'\]"):
        tool_functions.ToolBundling(tool).try_bundle(str(tmp_path / "out"), image=None)


def test_local_bundling_failure_names_the_tool(tmp_path, monkeypatch):
    from stacks import tool_functions

    folder = write_tool(tmp_path / "src", "needs_c")
    (folder / "requirements.txt").write_text("some-c-extension==1.0\n")
    (tool,) = discover_tools(tmp_path / "src")
    monkeypatch.setattr(
        tool_functions.subprocess, "run", lambda command, **kw: subprocess_result(1, "no wheel")
    )
    with pytest.raises(RuntimeError, match=r"(?s)tool needs_c: could not bundle .*no wheel"):
        tool_functions.ToolBundling(tool).try_bundle(str(tmp_path), image=None)


def subprocess_result(returncode, stderr=""):
    import subprocess

    return subprocess.CompletedProcess(args=[], returncode=returncode, stdout="", stderr=stderr)


def test_the_bundled_helper_needs_only_the_standard_library_and_powertools():
    import ast
    import sys

    for node in ast.walk(ast.parse(HELPER_MODULE.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"relative import in {HELPER_MODULE.name}: the function lacks it")
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in (
                "aws_lambda_powertools",
                "__future__",
            ), name


def test_a_tool_made_by_new_tool_is_in_the_template(synth, tmp_path_factory):
    from novakit.tools.scaffold import new_tool

    root = tmp_path_factory.mktemp("scaffolded")
    new_tool("opening_hours", root)
    made = synth("scaffolded", tools=root, nag=False)
    assert sorted(made.stack.tools.functions) == ["opening_hours"]
    entries, _ = decode_manifest(manifest_of(made))
    assert [e["name"] for e in entries] == ["opening_hours"]
    assert entries[0]["input_schema"]["required"] == ["query"]


def test_a_bundle_runs_with_only_the_standard_library_and_lambdas_runtime(tmp_path):
    """What Lambda has: the bundle, the standard library and boto3 with its dependencies. The
    helper, its schema validation and the tracer import from the bundle and those alone."""
    import importlib.util
    import subprocess
    import sys

    from stacks import tool_functions

    folder = write_tool(tmp_path / "src", "self_sufficient")
    (tool,) = discover_tools(tmp_path / "src")
    out = tmp_path / "bundle"
    out.mkdir()
    assert tool_functions.ToolBundling(tool).try_bundle(str(out), image=None)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    modules = {"python-dateutil": "dateutil"}
    for distribution in tool_functions.LAMBDA_RUNTIME_PROVIDES:
        spec = importlib.util.find_spec(modules.get(distribution, distribution))
        assert spec is not None and spec.origin is not None, distribution
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    script = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import novakit.tools.powertools as helper\n"
        "from aws_lambda_powertools.utilities.validation import validate\n"
        "validate(event={'q': 'x'}, schema={'type': 'object'})\n"
        "assert helper._tracer('t') is not None\n"
        "import aws_lambda_powertools, os\n"
        "print(os.path.dirname(aws_lambda_powertools.__file__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(out), str(runtime)],
        capture_output=True,
        text=True,
        check=False,
        env={"POWERTOOLS_TRACE_DISABLED": "true", "AWS_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(out / "aws_lambda_powertools")
    assert folder.name == "self_sufficient"
