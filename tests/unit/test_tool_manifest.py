"""The tool folder contract: what makes a folder under tools/ a tool, and the errors otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from novakit.tools import ToolManifestError, ToolSpec, discover_tools

REPO_TOOLS = Path(__file__).resolve().parents[2] / "tools"


def make_tool(root: Path, folder_name: str, handler: bool = True, **manifest: Any) -> Path:
    folder = root / folder_name
    folder.mkdir(parents=True)
    body: dict[str, Any] = {
        "name": folder_name,
        "description": f"The {folder_name} tool.",
        "input_schema": {"type": "object", "properties": {}},
    }
    body.update(manifest)
    (folder / "tool.json").write_text(json.dumps(body))
    if handler:
        (folder / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return folder


def test_discovers_tools_sorted_with_defaults(tmp_path):
    make_tool(tmp_path, "zeta")
    make_tool(tmp_path, "alpha", timeout_s=30, memory_mb=512, environment={"API_URL": "x"})
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("not a folder")

    specs = discover_tools(tmp_path)

    assert [s.name for s in specs] == ["alpha", "zeta"]
    alpha, zeta = specs
    assert (alpha.timeout_s, alpha.memory_mb, alpha.environment) == (30, 512, {"API_URL": "x"})
    assert (zeta.timeout_s, zeta.memory_mb, zeta.environment) == (10, 256, {})
    assert zeta.folder == tmp_path / "zeta"
    assert zeta.requirements is None
    assert zeta.iam_statements == ()


def test_declaration_is_what_the_model_sees(tmp_path):
    make_tool(tmp_path, "lookup", description="Find a thing.")
    (spec,) = discover_tools(tmp_path)
    assert spec.declaration() == {
        "name": "lookup",
        "description": "Find a thing.",
        "input_schema": {"type": "object", "properties": {}},
    }


def test_requirements_file_is_noticed(tmp_path):
    folder = make_tool(tmp_path, "needs_deps")
    (folder / "requirements.txt").write_text("requests==2.32.3\n")
    (spec,) = discover_tools(tmp_path)
    assert spec.requirements == folder / "requirements.txt"


def test_missing_root_means_no_tools(tmp_path):
    assert discover_tools(tmp_path / "nowhere") == []


def test_iam_statements_are_kept_with_reasons(tmp_path):
    statements = [
        {"actions": ["dynamodb:GetItem"], "resources": ["arn:aws:dynamodb:eu-west-1:1:table/t"]},
        {
            "actions": ["ec2:DescribeRegions"],
            "resources": ["*"],
            "reason": "DescribeRegions has no resource-level permissions",
        },
    ]
    make_tool(tmp_path, "regions", iam_statements=statements)
    (spec,) = discover_tools(tmp_path)
    assert spec.iam_statements == tuple(statements)


def test_a_tool_may_read_a_knowledge_base(tmp_path):
    statement = {
        "actions": ["bedrock:Retrieve"],
        "resources": ["arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KB123"],
    }
    make_tool(tmp_path, "kb", iam_statements=[statement])
    (spec,) = discover_tools(tmp_path)
    assert spec.iam_statements == (statement,)


def test_the_example_tool_is_valid():
    names = [spec.name for spec in discover_tools(REPO_TOOLS)]
    assert "get_time" in names


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"name": "other"}, "must equal the folder name"),
        ({"description": ""}, "description must be a non-empty string"),
        ({"input_schema": {"type": "string"}}, '"type": "object"'),
        ({"input_schema": ["not", "a", "schema"]}, '"type": "object"'),
        ({"input_schema": {"type": "object", "properties": []}}, "properties must be an object"),
        ({"timeout_s": 0}, "timeout_s must be an integer from 1 to 60"),
        ({"timeout_s": 61}, "timeout_s must be an integer from 1 to 60"),
        ({"timeout_s": "10"}, "timeout_s must be an integer"),
        ({"timeout_s": True}, "timeout_s must be an integer"),
        ({"memory_mb": 127}, "memory_mb must be an integer from 128 to 3008"),
        ({"memory_mb": 4096}, "memory_mb must be an integer from 128 to 3008"),
        ({"environment": {"KEY": 1}}, "must be a string"),
        ({"environment": {"AWS_REGION": "x"}}, "reserved by Lambda"),
        ({"environment": {"1BAD": "x"}}, "not a valid variable name"),
        ({"environment": ["KEY=x"]}, "environment must be an object"),
        ({"timeout": 10}, "unknown key"),
        ({"iam_statements": {"actions": []}}, "iam_statements must be a list"),
        ({"iam_statements": [{"actions": [], "resources": ["arn:x"]}]}, "non-empty list"),
        ({"iam_statements": [{"actions": ["s3:GetObject"]}]}, "resources must be a non-empty"),
        (
            {"iam_statements": [{"actions": ["s3:ListAllMyBuckets"], "resources": ["*"]}]},
            r'resource "\*" needs a "reason"',
        ),
        (
            {"iam_statements": [{"actions": ["*"], "resources": ["arn:x"], "reason": "all"}]},
            "not all actions",
        ),
        (
            {"iam_statements": [{"actions": ["bedrock:InvokeModel"], "resources": ["arn:x"]}]},
            "no Bedrock permissions except",
        ),
        (
            {"iam_statements": [{"actions": ["bedrock:*"], "resources": ["arn:x"]}]},
            "no Bedrock permissions except",
        ),
        (
            {"iam_statements": [{"actions": ["s3:GetObject"], "resources": ["a"], "why": "x"}]},
            "unknown key",
        ),
    ],
)
def test_bad_manifests_name_the_folder(tmp_path, manifest, message):
    folder = make_tool(tmp_path, "broken", **manifest)
    with pytest.raises(ToolManifestError, match=message) as info:
        discover_tools(tmp_path)
    assert str(folder) in str(info.value)


def test_bad_name_pattern(tmp_path):
    folder = tmp_path / "Bad-Name"
    folder.mkdir()
    (folder / "tool.json").write_text(
        json.dumps({"name": "Bad-Name", "description": "x", "input_schema": {"type": "object"}})
    )
    (folder / "handler.py").write_text("")
    with pytest.raises(ToolManifestError, match=r"name must match") as info:
        discover_tools(tmp_path)
    assert "Bad-Name" in str(info.value)


def test_missing_files_and_bad_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolManifestError, match="empty: missing tool.json"):
        discover_tools(tmp_path)

    other = tmp_path / "other"
    make_tool(other, "no_handler", handler=False)
    with pytest.raises(ToolManifestError, match=r"no_handler: missing handler\.py"):
        discover_tools(other)

    bad = tmp_path / "bad"
    folder = make_tool(bad, "garbled")
    (folder / "tool.json").write_text("{not json")
    with pytest.raises(ToolManifestError, match="garbled: tool.json is not valid JSON"):
        discover_tools(bad)

    array = tmp_path / "array"
    folder = make_tool(array, "listed")
    (folder / "tool.json").write_text("[]")
    with pytest.raises(ToolManifestError, match="listed: tool.json must hold a JSON object"):
        discover_tools(array)


def test_duplicate_names_are_refused(tmp_path, monkeypatch):
    # Names equal folder names, so a duplicate needs two roots' worth of folders under one
    # listing; simulate it by making the loader see one name twice.
    make_tool(tmp_path, "first")
    make_tool(tmp_path, "second")
    from novakit.tools import manifest

    real = manifest.load_tool

    def same_name(folder: Path) -> ToolSpec:
        spec = real(folder)
        return ToolSpec(**{**spec.__dict__, "name": "first"})

    monkeypatch.setattr(manifest, "load_tool", same_name)
    with pytest.raises(ToolManifestError, match="already used by"):
        discover_tools(tmp_path)


# -- examples, values and say (the local emulator's offline speech) --------------------------------

CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "day": {"type": "string"}},
    "required": ["city"],
}


def test_examples_values_and_say_are_read_and_kept_from_the_model(tmp_path):
    make_tool(
        tmp_path,
        "shop",
        input_schema=CITY_SCHEMA,
        examples=["when is the {city} shop open", "is the {city} shop open on {day}"],
        values={"city": ["Lyon", "Lille"], "day": "days"},
        say="The {city} shop is open {hours}.",
    )
    (spec,) = discover_tools(tmp_path)
    assert spec.examples == ("when is the {city} shop open", "is the {city} shop open on {day}")
    assert spec.values == {"city": ["Lyon", "Lille"], "day": "days"}
    assert spec.say == "The {city} shop is open {hours}."
    # The model (and so the CDK stack, which deploys the declaration) never sees them.
    assert set(spec.declaration()) == {"name", "description", "input_schema"}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"examples": "when is it open"}, "examples must be a list"),
        ({"examples": [""]}, "examples[0] must be a non-empty string"),
        ({"examples": ["open in {town}"]}, "{town} is not a property of input_schema"),
        ({"examples": ["is it open on {day}"]}, "must fill the required properties ['city']"),
        ({"examples": ["{city} or {city}"]}, "a slot appears twice"),
        ({"values": {"town": ["Lyon"]}}, "'town' is not a property"),
        ({"values": {"city": "planets"}}, "no value list 'planets'"),
        ({"values": {"city": []}}, "must be a non-empty list of strings"),
        ({"values": {"city": 3}}, "must be a list name"),
        ({"say": ""}, "say must be a non-empty string"),
        ({"say": "x" * 501}, "at most 500 characters"),
    ],
)
def test_bad_examples_values_and_say_are_refused_by_name(tmp_path, manifest, message):
    make_tool(tmp_path, "shop", input_schema=CITY_SCHEMA, **manifest)
    with pytest.raises(ToolManifestError, match=re.escape(message)):
        discover_tools(tmp_path)


def test_the_example_tools_have_examples_that_match_their_values():
    from novakit.emulator.matching import Matcher, ToolExamples

    specs = discover_tools(Path(__file__).resolve().parents[2] / "tools")
    matcher = Matcher([ToolExamples.from_spec(spec) for spec in specs])
    assert all(spec.examples for spec in specs)
    found = matcher.match("what time is it in Tokyo")
    assert found is not None and (found.tool, found.arguments) == (
        "get_time",
        {"timezone": "Asia/Tokyo"},
    )
    weather = matcher.match("is it raining in Paris")
    assert weather is not None and weather.arguments == {"city": "Paris"}
    lookup = matcher.match("what does the handbook say about parking")
    assert lookup is not None and lookup.arguments == {"query": "parking"}
