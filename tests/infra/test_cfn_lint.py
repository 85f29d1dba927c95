"""cfn-lint on the synthesized templates: no errors; only the warnings explained here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import REGION

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
ACCEPTED_WARNINGS = {
    # CDK adds explicit DependsOn next to references that already order the resources.
    "W3005",
    # cfn-lint's action list lacks bedrock:InvokeModelWithBidirectionalStream: the API reference
    # names bedrock:InvokeModel as the permission the operation checks, and the task role is
    # granted both (one model ARN only), so the stream works whichever one IAM evaluates.
    "W3037",
}


def lint(template_path) -> list[dict]:
    result = subprocess.run(
        [
            str(CFN_LINT),
            "--format",
            "json",
            "--regions",
            REGION,
            "--",
            str(template_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


VARIANTS = {
    "default": {},
    "ha": {"ha": True},
    "web": {"web_client": True},
    "twilio": {"twilio": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_errors_and_only_explained_warnings(synth, two_tools, web_site, variant):
    extra = {**VARIANTS[variant], **({"web": web_site} if variant == "web" else {})}
    result = synth(variant, tools=two_tools, **extra)
    findings = lint(result.outdir / f"{result.stack.artifact_id}.template.json")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == []
    unexplained = {f["Rule"]["Id"] for f in findings} - ACCEPTED_WARNINGS
    assert unexplained == set(), [f for f in findings if f["Rule"]["Id"] in unexplained]
    for finding in findings:
        if finding["Rule"]["Id"] == "W3037":
            assert "invokemodelwithbidirectionalstream" in finding["Message"]
