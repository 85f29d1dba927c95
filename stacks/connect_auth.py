"""How ``$connect`` is authenticated: a Lambda REQUEST authorizer (shared secret or Cognito),
IAM (SigV4), or nothing at all when explicitly allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.function_role import role_with_own_logs
from stacks.phone import code_with_twilio
from stacks.settings import AuthMode

AUTHORIZER_CODE = Path(__file__).parent / "functions" / "ws_authorizer"
TOKEN_QUERY_PARAMETER = "token"


def identity_source(bearer_stages: tuple[str, ...], *, twilio: bool = False) -> list[str]:
    """What API Gateway requires before it calls the authorizer. Routes (and so the authorizer)
    are shared by every stage, and a connect missing any listed source is refused unseen: with
    only ?token= accepted, that source; when some stage also accepts a Bearer header, or the
    phone stage a Twilio signature (Twilio sends no ?token=), the connection id, which every
    connect has, so the function sees each connect and decides by stage."""
    if bearer_stages or twilio:
        return ["context.connectionId"]
    return [f"route.request.querystring.{TOKEN_QUERY_PARAMETER}"]


@dataclass(frozen=True)
class ConnectAuthProps:
    mode: AuthMode
    api: apigwv2.CfnApi
    log_retention: logs.RetentionDays
    # At most this many authorizer invocations at once (0: none reserved): a flood of connects
    # cannot take the account's Lambda concurrency from the tool functions.
    reserved_concurrency: int = 10
    # Stages whose clients may send the token as "Authorization: Bearer ..." instead of
    # ?token= (OpenAI Realtime SDKs set that header; browsers cannot).
    bearer_stages: tuple[str, ...] = ()
    # Phone calls: the stage whose connects carry Twilio's signature instead of a token.
    twilio: TwilioConnect | None = None


@dataclass(frozen=True)
class TwilioConnect:
    stage: str
    #: The URL Twilio connects to (and signs), exactly as the webhook's TwiML gives it.
    stream_url: str
    auth_token: secretsmanager.ISecret


class ConnectAuth(Construct):
    """Creates what the chosen mode needs; ``route_authorization`` goes on the ``$connect`` route.

    Other routes need no authorization: API Gateway only lets frames through on a connection
    whose ``$connect`` was accepted.
    """

    def __init__(self, scope: Construct, construct_id: str, props: ConnectAuthProps) -> None:
        super().__init__(scope, construct_id)
        self.mode = props.mode
        self.secret: secretsmanager.Secret | None = None
        self.user_pool: cognito.UserPool | None = None
        self.user_pool_client: cognito.UserPoolClient | None = None
        self.authorizer: apigwv2.CfnAuthorizer | None = None
        self.function: lambda_.Function | None = None

        if props.mode is AuthMode.SECRET:
            self.secret = secretsmanager.Secret(
                self,
                "SharedSecret",
                description="novakit: the token clients pass as ?token= when they connect",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=48, exclude_punctuation=True
                ),
                removal_policy=RemovalPolicy.DESTROY,
            )
            self._lambda_authorizer(props, {"SECRET_ARN": self.secret.secret_arn})
            assert self.function is not None
            # Reads the one secret it checks tokens against.
            self.secret.grant_read(self.function)
        elif props.mode is AuthMode.COGNITO:
            self.user_pool = cognito.UserPool(
                self,
                "Users",
                self_sign_up_enabled=False,
                sign_in_aliases=cognito.SignInAliases(email=True, username=True),
                password_policy=cognito.PasswordPolicy(
                    min_length=12,
                    require_digits=True,
                    require_lowercase=True,
                    require_uppercase=True,
                    require_symbols=True,
                ),
                account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            )
            self.user_pool_client = self.user_pool.add_client(
                "Client",
                # A public client (no secret): the command-line and browser clients sign in.
                generate_secret=False,
                auth_flows=cognito.AuthFlow(user_srp=True, user_password=True),
                access_token_validity=Duration.hours(1),
            )
            self._lambda_authorizer(
                props,
                {
                    "USER_POOL_ID": self.user_pool.user_pool_id,
                    "CLIENT_ID": self.user_pool_client.user_pool_client_id,
                },
            )

    @property
    def route_authorization(self) -> tuple[str, str | None]:
        """``(authorization_type, authorizer_id)`` for the ``$connect`` route."""
        if self.authorizer is not None:
            return "CUSTOM", self.authorizer.ref
        if self.mode is AuthMode.IAM:
            return "AWS_IAM", None
        return "NONE", None

    def _lambda_authorizer(self, props: ConnectAuthProps, environment: dict[str, str]) -> None:
        twilio_environment = (
            {
                "TWILIO_STAGE": props.twilio.stage,
                "TWILIO_STREAM_URL": props.twilio.stream_url,
                "TWILIO_SECRET_ARN": props.twilio.auth_token.secret_arn,
            }
            if props.twilio is not None
            else {}
        )
        log_group, role = role_with_own_logs(
            self,
            logs_id="AuthorizerLogs",
            role_id="AuthorizerRole",
            description="novakit $connect authorizer: its own logs (and its secret, if any)",
            retention=props.log_retention,
        )
        self.function = lambda_.Function(
            self,
            "Authorizer",
            description="novakit: checks the token of a WebSocket $connect",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=(
                lambda_.Code.from_asset(str(AUTHORIZER_CODE), exclude=["__pycache__"])
                if props.twilio is None
                else code_with_twilio(AUTHORIZER_CODE)  # the twilio package's validator
            ),
            timeout=Duration.seconds(10),
            memory_size=256,
            environment={
                "AUTH_MODE": props.mode.value,
                "BEARER_STAGES": ",".join(props.bearer_stages),
                **environment,
                **twilio_environment,
            },
            reserved_concurrent_executions=props.reserved_concurrency or None,
            role=role,
            log_group=log_group,
        )
        if props.twilio is not None:
            # Checks Twilio's handshake signatures with the account's auth token.
            props.twilio.auth_token.grant_read(self.function)
        stack = Stack.of(self)
        self.authorizer = apigwv2.CfnAuthorizer(
            self,
            "ConnectAuthorizer",
            api_id=props.api.ref,
            name="connect-token",
            authorizer_type="REQUEST",
            authorizer_uri=(
                f"arn:{stack.partition}:apigateway:{stack.region}:lambda:path/2015-03-31/"
                f"functions/{self.function.function_arn}/invocations"
            ),
            # Routes (so the authorizer) are shared by every stage; see identity_source.
            identity_source=identity_source(props.bearer_stages, twilio=props.twilio is not None),
        )
        # Only this API's authorizer may invoke the function.
        self.function.add_permission(
            "InvokedByApiGateway",
            principal=iam.ServicePrincipal("apigateway.amazonaws.com"),
            source_arn=stack.format_arn(
                service="execute-api",
                resource=props.api.ref,
                resource_name=f"authorizers/{self.authorizer.ref}",
            ),
        )
