"""The phone deployment (-c twilio=true): the webhook function, its least-privilege role, the
auth token's secret, the authorizer's Twilio settings and bundle, and the outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stacks.settings import Settings, SettingsError
from tests.infra.conftest import REGION
from tests.infra.test_iam import statements_of

NUMBERS = '{"+15550199": {"greeting": "Thanks for calling.", "voice": "tiffany"}}'


@pytest.fixture(scope="module")
def phone(synth, two_tools):
    return synth(
        "twilio-numbers",
        tools=two_tools,
        twilio="true",
        twilio_numbers=NUMBERS,
        twilio_hangup="true",
    )


def function_of(phone, construct):
    logical = phone.stack.get_logical_id(construct.node.default_child)
    return phone.raw["Resources"][logical]


def test_the_webhook_is_a_public_function_url_that_checks_signatures_itself(phone):
    webhook = phone.stack.phone.webhook
    props = function_of(phone, webhook)["Properties"]
    assert props["Runtime"] == "python3.12" and props["Architectures"] == ["arm64"]
    env = props["Environment"]["Variables"]
    assert phone.resolve(env["TWILIO_SECRET_ARN"]) == phone.resolve(
        phone.stack.phone.auth_token.secret_arn
    )
    stream_url = phone.resolve(env["TWILIO_STREAM_URL"])
    assert stream_url["Fn::Join"][1][-1].endswith("/twilio")
    assert '"voice": "tiffany"' in env["TWILIO_NUMBERS"]
    phone.template.has_resource_properties("AWS::Lambda::Url", {"AuthType": "NONE"})
    assert "TwilioWebhookUrl" in phone.raw["Outputs"]
    assert "TwilioSetTokenCommand" in phone.raw["Outputs"]


def test_the_webhook_role_reads_its_logs_and_the_token_only(phone):
    role = phone.stack.phone.webhook.role
    statements = statements_of(phone, role)
    actions = sorted(a for s in statements for a in _list(s["Action"]))
    assert actions == [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    token = phone.resolve(phone.stack.phone.auth_token.secret_arn)
    for statement in statements:
        if statement["Action"][0].startswith("secretsmanager"):
            assert statement["Resource"] == token
    roles = phone.resources("AWS::IAM::Role")
    logical = phone.stack.get_logical_id(role.node.default_child)
    assert "ManagedPolicyArns" not in roles[logical]["Properties"]


def test_the_auth_token_secret_starts_random_and_is_read_by_webhook_and_authorizer(phone):
    secret = phone.resources("AWS::SecretsManager::Secret")
    token = phone.stack.get_logical_id(phone.stack.phone.auth_token.node.default_child)
    assert "GenerateSecretString" in secret[token]["Properties"]
    readers = [
        phone.stack.phone.webhook.role,
        phone.stack.auth.function.role,
    ]
    arn = phone.resolve(phone.stack.phone.auth_token.secret_arn)
    for role in readers:
        assert any(s["Resource"] == arn for s in statements_of(phone, role))


def test_the_authorizer_knows_the_phone_stage_and_sees_every_connect(phone):
    env = function_of(phone, phone.stack.auth.function)["Properties"]["Environment"]["Variables"]
    assert env["TWILIO_STAGE"] == "twilio"
    assert phone.resolve(env["TWILIO_STREAM_URL"]) == phone.resolve(
        function_of(phone, phone.stack.phone.webhook)["Properties"]["Environment"]["Variables"][
            "TWILIO_STREAM_URL"
        ]
    )
    # Twilio sends no ?token=: API Gateway must not refuse its connects before the function.
    phone.template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer", {"IdentitySource": ["context.connectionId"]}
    )


@pytest.mark.parametrize("function", ["webhook", "authorizer"])
def test_the_bundles_hold_the_twilio_modules_they_import(phone, function):
    marker = "handler.py"
    folders = [p.parent for p in phone.outdir.glob(f"asset.*/{marker}")]
    wanted = "incoming-call webhook" if function == "webhook" else "``$connect`` authorizer"
    [folder] = [f for f in folders if wanted in (f / marker).read_text()[:400]]
    assert (folder / "twilio" / "request_validator.py").is_file()
    assert not (folder / "twilio" / "rest").exists()  # the REST client (50 MB) stays out
    # Without site-packages (-S), as on Lambda: the function and the validator load from the
    # bundle alone (boto3, which Lambda provides, stood in for).
    script = (
        "import sys, types; sys.modules['boto3'] = types.ModuleType('boto3'); "
        "import handler, twilio.request_validator as v; "
        f"assert v.__file__.startswith({str(folder)!r}); "
        "url = 'wss://abc.execute-api.us-east-1.amazonaws.com/twilio'; "
        "r = v.RequestValidator('token'); assert r.validate(url, {}, r.compute_signature(url, {}))"
    )
    subprocess.run([sys.executable, "-S", "-c", script], cwd=folder, check=True, timeout=60)


def bridge_environment(synthesized):
    (task,) = synthesized.resources("AWS::ECS::TaskDefinition").values()
    (definition,) = task["Properties"]["ContainerDefinitions"]
    return {e["Name"]: e["Value"] for e in definition["Environment"]}


def test_twilio_hangup_lets_the_bridge_offer_end_call(phone, default):
    assert bridge_environment(phone)["NOVAKIT_PHONE_HANGUP"] == "1"
    assert "NOVAKIT_PHONE_HANGUP" not in bridge_environment(default)  # off by default


def test_the_default_deployment_has_no_phone(default):
    assert default.stack.phone is None
    assert "TwilioWebhookUrl" not in default.raw["Outputs"]
    stages = [
        r["Properties"]["StageName"] for r in default.resources("AWS::ApiGatewayV2::Stage").values()
    ]
    assert "twilio" not in stages
    env = function_of(default, default.stack.auth.function)["Properties"]["Environment"]
    assert not [name for name in env["Variables"] if name.startswith("TWILIO_")]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"auth_mode": "iam"}, "Lambda authorizer"),
        ({"stage_name": "twilio"}, "Twilio Media Streams"),
        ({"twilio_numbers": "not json"}, "not JSON"),
        ({"twilio_numbers": '{"+1": {"colour": "red"}}'}, "unknown keys"),
        ({"twilio_numbers": '{"+1": {"voice": "nobody"}}'}, "not offered"),
    ],
)
def test_phone_settings_are_checked(context, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_context({"region": REGION, "twilio": "true", **context})


def test_hanging_up_needs_phone_calls():
    with pytest.raises(SettingsError, match="needs twilio=true"):
        Settings.from_context({"region": REGION, "twilio_hangup": "true"})
    assert Settings.from_context({"region": REGION, "twilio": "true", "twilio_hangup": "true"})


def _list(value):
    return value if isinstance(value, list) else [value]
