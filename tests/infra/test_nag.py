"""cdk-nag's AwsSolutions pack: every variant synthesizes with no finding left unacknowledged,
and every acknowledgment is needed and says why."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Validations

VARIANTS = {
    "default": {},
    "cognito": {"account": "111122223333", "auth_mode": "cognito"},
    "iam": {"auth_mode": "iam"},
    "open": {"auth_mode": "none", "allow_unauthenticated": True},
    "email": {"alarm_email": "oncall@example.com"},
    "ha": {"ha": True},
    "customer-key": {"directory_customer_key": True},
    "twilio": {"twilio": True},
    "twilio-cognito": {"account": "111122223333", "auth_mode": "cognito", "twilio": True},
}

# What AwsSolutions reports on the quick-start stack before the acknowledgments in stacks/nag.py.
EXPECTED_FINDINGS = {
    "AwsSolutions-APIG4",  # $default and $disconnect: WebSocket APIs authorize on $connect
    "AwsSolutions-IAM4",  # API Gateway's account logging role (the documented managed policy)
    "AwsSolutions-IAM5",  # @connections/*, this cluster's tasks; ecr:GetAuthorizationToken
    "AwsSolutions-ECS2",  # configuration in the container environment
    "AwsSolutions-ELB2",  # NLB access logs exist for TLS listeners only
    "AwsSolutions-SMG4",  # the quick-start shared secret is rotated by hand
    "AwsSolutions-L1",  # Python 3.12, the project's Python
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_has_no_unacknowledged_finding(synth, two_tools, variant):
    result = synth(variant, tools=two_tools, **VARIANTS[variant])
    report = json.loads((result.outdir / "validation-report.json").read_text())
    failures = [r for r in report["pluginReports"] if r.get("conclusion") == "failure"]
    assert failures == []


def test_web_client_variant_has_no_unacknowledged_finding(synth, two_tools, web_site):
    result = synth("web", tools=two_tools, web=web_site, web_client=True)
    report = json.loads((result.outdir / "validation-report.json").read_text())
    assert [r for r in report["pluginReports"] if r.get("conclusion") == "failure"] == []


def test_nag_runs_and_every_acknowledgment_is_needed(synth, two_tools):
    with pytest.raises(RuntimeError, match="ValidationFailed") as info:
        synth("unacknowledged", tools=two_tools, nag="unacknowledged")
    message = str(info.value)
    report_path = message.split("A copy of this report can be found in: ")[1].split(maxsplit=1)[0]
    with open(report_path) as handle:
        report = json.load(handle)
    (plugin,) = report["pluginReports"]
    rules = {v["ruleName"].split("[")[0] for v in plugin["violations"]}
    assert rules == EXPECTED_FINDINGS


def test_every_acknowledgment_has_a_reason(default):
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found = 0
    for construct in default.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != key:
                continue
            for rule, reason in entry.data.items():
                if "AwsSolutions-" in rule:
                    found += 1
                    assert len(reason) > 40, (construct.node.path, rule)
    assert found >= 10
