"""The whole voice agent in one stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from novakit.bridge.dialects import BEARER_STAGES, STAGE_DIALECTS
from novakit.bridge.dialects.twilio import TWILIO_STAGE
from novakit.tools import discover_tools
from stacks.bridge_service import REPO_ROOT, BridgeService, BridgeServiceProps
from stacks.connect_auth import (
    TOKEN_QUERY_PARAMETER,
    ConnectAuth,
    ConnectAuthProps,
    TwilioConnect,
)
from stacks.gateway_secret import GatewaySecret
from stacks.network import Network, NetworkProps
from stacks.observability import Observability, ObservabilityProps
from stacks.phone import PhoneCalls, PhoneCallsProps
from stacks.session_directory import SessionDirectory
from stacks.settings import AuthMode, Settings
from stacks.tool_functions import ToolFunctions, ToolFunctionsProps
from stacks.web_client import WebClient, WebClientProps
from stacks.websocket_gateway import ConnectAuthorization, WebSocketGateway, WebSocketGatewayProps

METRICS_NAMESPACE = "Novakit"
# The command-line client as `make install` puts it in the checkout's virtual environment (a
# fresh machine has no `novakit` on its PATH); --text needs no microphone or audio device.
TALK = ".venv/bin/novakit talk"
# Every retention Settings accepts (log_retention_days), as CDK names it.
RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
}


@dataclass(frozen=True)
class Sources:
    """Where the stack reads the project's folders (tests point these at temporary ones)."""

    tools: Path = REPO_ROOT / "tools"
    web: Path = REPO_ROOT / "web"
    image: Path = REPO_ROOT


class VoiceAgentStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        sources: Sources | None = None,
        **kwargs: Any,
    ) -> None:
        open_endpoint = settings.auth_mode is AuthMode.NONE
        description = (
            "novakit: Amazon Nova Sonic voice agent (WebSocket API, Fargate bridge, tools)"
        )
        if open_endpoint:
            description = "UNAUTHENTICATED ENDPOINT - " + description
        super().__init__(scope, construct_id, description=description, **kwargs)
        sources = sources or Sources()
        self.settings = settings
        retention = RETENTION[settings.log_retention_days]
        metrics_service = self.stack_name

        self.network = Network(
            self,
            "Network",
            NetworkProps(
                nat_gateways=settings.nat_gateway_count,
                interface_endpoints=settings.interface_endpoints,
                flow_log_retention=retention,
            ),
        )
        self.directory = SessionDirectory(
            self, "SessionDirectory", customer_key=settings.directory_customer_key
        )
        self.tools = ToolFunctions(
            self,
            "Tools",
            ToolFunctionsProps(
                tools=discover_tools(sources.tools),
                region=self.region,
                log_retention=retention,
                metrics_namespace=METRICS_NAMESPACE,
            ),
        )
        self.gateway = WebSocketGateway(
            self,
            "Gateway",
            WebSocketGatewayProps(
                stage_name=settings.stage_name,
                throttle_rate=settings.throttle_rate,
                throttle_burst=settings.throttle_burst,
                connect_rate=settings.connect_rate,
                connect_burst=settings.connect_burst,
                log_retention=retention,
                account_logging_role=settings.apigw_account_logging_role,
                # One stage per other client protocol of the bridge (its dialect registry); the
                # phone stage only with phone calls on (its authorizer check needs their token).
                more_stages=tuple(
                    s for s in STAGE_DIALECTS if s != TWILIO_STAGE or settings.twilio
                ),
            ),
        )
        self.phone: PhoneCalls | None = None
        if settings.twilio:
            self.phone = PhoneCalls(
                self,
                "Phone",
                PhoneCallsProps(
                    stream_url=self.gateway.urls[TWILIO_STAGE],
                    log_retention=retention,
                    greeting=settings.twilio_greeting,
                    numbers=settings.phone_numbers,
                ),
            )
        self.auth = ConnectAuth(
            self,
            "ConnectAuth",
            ConnectAuthProps(
                mode=settings.auth_mode,
                api=self.gateway.api,
                log_retention=retention,
                reserved_concurrency=settings.authorizer_concurrency,
                bearer_stages=tuple(s for s in BEARER_STAGES if s in STAGE_DIALECTS),
                twilio=None
                if self.phone is None
                else TwilioConnect(
                    TWILIO_STAGE, self.gateway.urls[TWILIO_STAGE], self.phone.auth_token
                ),
            ),
        )

        self.gateway_secret = GatewaySecret(
            self, "GatewaySecret", version_id=settings.gateway_secret_version
        )
        environment = {
            "NOVAKIT_VOICE": settings.voice,
            "NOVAKIT_BATCH_MS": str(settings.batch_ms),
            "NOVAKIT_LOG_LEVEL": settings.log_level,
            "NOVAKIT_TOOLS": self.tools.manifest_json(self),
        }
        if settings.instructions:
            environment["NOVAKIT_INSTRUCTIONS"] = settings.instructions
        if settings.allow_retired_model:
            environment["NOVAKIT_ALLOW_RETIRED_MODEL"] = "1"
        if settings.twilio_hangup:  # the model may end phone calls (docs/phone.md)
            environment["NOVAKIT_PHONE_HANGUP"] = "1"
        self.bridge = BridgeService(
            self,
            "Bridge",
            BridgeServiceProps(
                vpc=self.network.vpc,
                table=self.directory.table,
                model_id=settings.model_id,
                connections_url=self.gateway.connections_url,
                manage_connections_arns=self.gateway.manage_connections_arns,
                tool_function_arns=self.tools.function_arns,
                table_key_arn=self.directory.key.key_arn if self.directory.key else None,
                environment=environment,
                secrets=self.gateway_secret.container_secrets,
                cpu=settings.task_cpu,
                memory_mib=settings.task_memory_mib,
                min_tasks=settings.task_range[0],
                max_tasks=settings.task_range[1],
                max_sessions_per_task=settings.max_sessions_per_task,
                min_free_sessions=settings.min_free_sessions,
                high_availability=settings.ha,
                log_retention=retention,
                metrics_namespace=METRICS_NAMESPACE,
                metrics_service=metrics_service,
                image_directory=sources.image,
            ),
        )

        authorization_type, authorizer_id = self.auth.route_authorization
        principal = {
            AuthMode.SECRET: "context.authorizer.principalId",
            AuthMode.COGNITO: "context.authorizer.principalId",
            AuthMode.IAM: "context.identity.userArn",
            AuthMode.NONE: None,
        }[settings.auth_mode]
        self.gateway.connect_backend(
            self.bridge.load_balancer,
            self.bridge.port,
            ConnectAuthorization(authorization_type, authorizer_id, principal),
            static_headers={self.gateway_secret.header_name: self.gateway_secret.header_value},
        )

        self.observability = Observability(
            self,
            "Observability",
            ObservabilityProps(
                api_id=self.gateway.api.ref,
                stage_name=settings.stage_name,
                service=self.bridge.service,
                cluster_name=self.bridge.cluster.cluster_name,
                target_group=self.bridge.target_group,
                tool_functions=self.tools.functions,
                authorizer=self.auth.function,
                table_name=self.directory.table.table_name,
                model_id=settings.model_id,
                metrics_namespace=METRICS_NAMESPACE,
                metrics_service=metrics_service,
                alarm_email=settings.alarm_email,
            ),
        )
        self.web_client: WebClient | None = None
        if settings.web_client:
            self.web_client = WebClient(
                self,
                "WebClient",
                WebClientProps(
                    site_directory=sources.web,
                    websocket_url=self.gateway.url,
                    auth_mode=settings.auth_mode.value,
                ),
            )

        if open_endpoint:
            Annotations.of(self).add_warning_v2(
                "novakit:unauthenticated",
                "auth_mode=none: anyone who finds the WebSocket URL can talk to the agent "
                "at your expense.",
            )
        self._outputs()

    def _outputs(self) -> None:
        url = self.gateway.url
        CfnOutput(self, "WebSocketUrl", value=url, description="Connect clients here")
        if "realtime" in self.gateway.urls:
            CfnOutput(
                self,
                "RealtimeBaseUrl",
                value=self.gateway.urls["realtime"].removesuffix("/realtime"),
                description="OpenAI Realtime clients: their base URL (they add /realtime)",
            )
        region = self.region
        token_command: str | None = None
        if self.auth.secret is not None:
            CfnOutput(
                self,
                "SharedSecretArn",
                value=self.auth.secret.secret_arn,
                description=f"The token clients pass as ?{TOKEN_QUERY_PARAMETER}=",
            )
            token_command = (
                f"aws secretsmanager get-secret-value --region {region} "
                f"--secret-id {self.auth.secret.secret_arn} --query SecretString --output text"
            )
        elif self.auth.user_pool is not None and self.auth.user_pool_client is not None:
            CfnOutput(self, "UserPoolId", value=self.auth.user_pool.user_pool_id)
            CfnOutput(
                self, "UserPoolClientId", value=self.auth.user_pool_client.user_pool_client_id
            )
            token_command = (
                f"aws cognito-idp initiate-auth --region {region} "
                f"--client-id {self.auth.user_pool_client.user_pool_client_id} "
                "--auth-flow USER_PASSWORD_AUTH "
                "--auth-parameters USERNAME=$NOVAKIT_USER,PASSWORD=$NOVAKIT_PASSWORD "
                "--query AuthenticationResult.AccessToken --output text"
            )
        elif self.settings.auth_mode is AuthMode.IAM:
            CfnOutput(
                self,
                "ConnectPermission",
                value=self.gateway.connect_arn,
                description="Grant execute-api:Invoke on this ARN to who may connect (SigV4)",
            )
        else:
            CfnOutput(
                self,
                "Unauthenticated",
                value="WARNING: this endpoint accepts connections without any credentials",
            )
        if token_command is not None:
            CfnOutput(self, "GetTokenCommand", value=token_command, description="Prints a token")
            talk: str | None = f'{TALK} {url} --token "$({token_command})" --text "Hello"'
        elif self.settings.auth_mode is AuthMode.NONE:
            talk = f'{TALK} {url} --text "Hello"'
        else:
            talk = None  # IAM: clients connect with a SigV4-signed URL
        if talk is not None:
            CfnOutput(
                self, "TalkCommand", value=talk, description="Talk to the agent from a terminal"
            )
        CfnOutput(self, "DashboardUrl", value=self.observability.dashboard_url)
        CfnOutput(
            self,
            "GatewaySecretArn",
            value=self.gateway_secret.secret.secret_arn,
            description="The secret API Gateway sends to the bridge (rotation: docs/deploy.md)",
        )
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.observability.topic.topic_arn,
            description="Every alarm notifies this SNS topic: subscribe your on-call to it",
        )
        if self.phone is not None:
            CfnOutput(
                self,
                "TwilioWebhookUrl",
                value=self.phone.webhook_url.url,
                description="Paste into your Twilio number's 'A call comes in' webhook (HTTP POST)",
            )
            secret_arn = self.phone.auth_token.secret_arn
            CfnOutput(
                self,
                "TwilioAuthTokenSecretArn",
                value=secret_arn,
                description="Put your Twilio account's auth token in this secret (docs/phone.md)",
            )
            CfnOutput(
                self,
                "TwilioSetTokenCommand",
                value=(
                    f"aws secretsmanager put-secret-value --region {self.region} "
                    f'--secret-id {secret_arn} --secret-string "$TWILIO_AUTH_TOKEN"'
                ),
                description="Stores your Twilio auth token (export TWILIO_AUTH_TOKEN first)",
            )
        if self.web_client is not None:
            CfnOutput(
                self,
                "WebClientUrl",
                value=f"{self.web_client.url}/?url={url}",
                description="The browser client, pointed at this stack (paste a token to connect)",
            )
