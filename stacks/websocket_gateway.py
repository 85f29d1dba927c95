"""The public WebSocket endpoint: API Gateway WebSocket API, VPC link (V1) to the bridge's NLB,
one HTTP_PROXY integration per route, throttled stages with token-free access logs.

The API has one stage per client protocol: the v1 stage (``stage_name``) and one per other
dialect of the bridge (``more_stages``: ``realtime``, ...). Stages share the routes, the
integrations and the authorizer; each gets the same throttling and access logging, and the
bridge may manage the connections of every one of them. The bridge tells the protocols apart by
``x-stage`` and answers each connection through its own stage's ``@connections``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

# What the bridge learns about every frame, as request headers (contract with the bridge).
# Only variables that API Gateway documents for WebSocket mappings: the close code and reason
# of a $disconnect reach Lambda integrations but are not mappable, so they are not sent.
COMMON_HEADERS = {
    "x-connection-id": "context.connectionId",
    "x-request-id": "context.requestId",
    "x-route-key": "context.routeKey",
    "x-source-ip": "context.identity.sourceIp",
    "x-stage": "context.stage",
    "x-connected-at": "context.connectedAt",
}
# The bridge endpoint of each route.
ROUTE_PATHS = {
    "$connect": "/ws/connect",
    "$default": "/ws/message",
    "$disconnect": "/ws/disconnect",
}
ROUTE_IDS = {"$connect": "Connect", "$default": "Default", "$disconnect": "Disconnect"}

# One JSON line per connect, frame and disconnect. No query string (where tokens travel) and
# no headers: nothing here can carry a credential.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "sourceIp": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "integrationLatency": "$context.integrationLatency",
        "stage": "$context.stage",
        "authorizeStatus": "$context.authorize.status",
        "authorizerError": "$context.authorizer.error",
        "errorMessage": "$context.error.message",
    },
    separators=(",", ":"),
)


@dataclass(frozen=True)
class WebSocketGatewayProps:
    stage_name: str
    throttle_rate: int
    throttle_burst: int
    log_retention: logs.RetentionDays
    # $connect's own limits: a connect runs the authorizer and opens a Bedrock stream, so a
    # flood of them is stopped here, well below what frames of live sessions may use.
    connect_rate: int = 50
    connect_burst: int = 100
    # API Gateway writes WebSocket logs only when the account (per Region) names a CloudWatch
    # role; without one the stage fails to deploy. Off when the account already has one.
    account_logging_role: bool = True
    # The stages of the bridge's other client protocols (dialects), beside stage_name.
    more_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectAuthorization:
    authorization_type: str  # CUSTOM, AWS_IAM or NONE
    authorizer_id: str | None
    # Who made the connect: the authorizer's principal id, or the signing IAM identity.
    principal_expression: str | None


class WebSocketGateway(Construct):
    """The API and its stage exist first (the bridge needs their ids for ``@connections``);
    ``connect_backend`` then wires the routes to the bridge's load balancer."""

    def __init__(self, scope: Construct, construct_id: str, props: WebSocketGatewayProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.stage_name = props.stage_name
        self.api = apigwv2.CfnApi(
            self,
            "Api",
            name=f"{stack.stack_name}-voice",
            protocol_type="WEBSOCKET",
            route_selection_expression="$request.body.action",
            description="novakit voice agent: clients stream audio here",
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=props.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        # The v1 stage keeps its construct id: adding protocols does not replace it.
        self.stages = {
            name: self._stage(
                "Stage" if name == props.stage_name else f"Stage{name.title()}", name, props
            )
            for name in (props.stage_name, *props.more_stages)
        }
        self.stage = self.stages[props.stage_name]
        base = f"{self.api.ref}.execute-api.{stack.region}.{stack.url_suffix}"
        self.url = f"wss://{base}/{props.stage_name}"
        self.urls = {name: f"wss://{base}/{name}" for name in self.stages}
        # {stage} is the bridge's to fill in: each connection is reached through its own stage.
        self.connections_url = f"https://{base}/{{stage}}"
        self.manage_connections_arns = [
            stack.format_arn(
                service="execute-api",
                resource=self.api.ref,
                resource_name=f"{name}/{method}/@connections/*",
            )
            for name in self.stages
            for method in ("POST", "GET", "DELETE")
        ]
        self.connect_arn = stack.format_arn(
            service="execute-api",
            resource=self.api.ref,
            resource_name=f"{props.stage_name}/$connect",
        )
        self.logging_role: iam.Role | None = None
        if props.account_logging_role:
            self.logging_role = self._account_logging_role()
        self.integrations: dict[str, apigwv2.CfnIntegration] = {}
        self.routes: dict[str, apigwv2.CfnRoute] = {}

    def _stage(
        self, construct_id: str, name: str, props: WebSocketGatewayProps
    ) -> apigwv2.CfnStage:
        """A stage with the API's throttling and access logging (every stage alike)."""
        return apigwv2.CfnStage(
            self,
            construct_id,
            api_id=self.api.ref,
            stage_name=name,
            # Every route change is live at once; there is no separate deployment to forget.
            auto_deploy=True,
            default_route_settings=apigwv2.CfnStage.RouteSettingsProperty(
                throttling_rate_limit=props.throttle_rate,
                throttling_burst_limit=props.throttle_burst,
                # Errors only, and never request data: execution logs must not see tokens.
                logging_level="ERROR",
                data_trace_enabled=False,
                detailed_metrics_enabled=True,
            ),
            route_settings={
                "$connect": {
                    "ThrottlingRateLimit": props.connect_rate,
                    "ThrottlingBurstLimit": props.connect_burst,
                    "LoggingLevel": "ERROR",
                    "DataTraceEnabled": False,
                    "DetailedMetricsEnabled": True,
                }
            },
            access_log_settings=apigwv2.CfnStage.AccessLogSettingsProperty(
                destination_arn=self.access_logs.log_group_arn,
                format=ACCESS_LOG_FORMAT,
            ),
        )

    def _account_logging_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "ApiGatewayLogsRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway (account setting): write API logs to CloudWatch Logs",
            # The policy AWS documents for this account setting.
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
        # The setting is account-wide: other APIs may rely on it after this stack is gone.
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        for stage in self.stages.values():
            stage.node.add_dependency(account)
        return role

    def connect_backend(
        self,
        load_balancer: elbv2.INetworkLoadBalancer,
        port: int,
        authorization: ConnectAuthorization,
        static_headers: dict[str, str] | None = None,
    ) -> None:
        """VPC link V1 to the NLB (V2 links serve HTTP APIs only) and the three routes.

        ``static_headers``: header name -> static value (single-quoted, API Gateway's syntax)
        added to every integration request: the gateway secret the bridge checks."""
        self.vpc_link = apigw.VpcLink(
            self,
            "VpcLink",
            targets=[load_balancer],
            description="novakit: API Gateway to the bridge's internal NLB",
        )
        for route_key, path in ROUTE_PATHS.items():
            headers = dict(COMMON_HEADERS)
            if route_key == "$connect" and authorization.principal_expression:
                headers["x-principal-id"] = authorization.principal_expression
            if route_key == "$connect":
                # The model an OpenAI Realtime client names (?model=), reported back to it.
                headers["x-requested-model"] = "route.request.querystring.model"
            headers.update(static_headers or {})
            integration = apigwv2.CfnIntegration(
                self,
                f"{ROUTE_IDS[route_key]}Integration",
                api_id=self.api.ref,
                integration_type="HTTP_PROXY",
                integration_method="POST",
                integration_uri=f"http://{load_balancer.load_balancer_dns_name}:{port}{path}",
                connection_type="VPC_LINK",
                connection_id=self.vpc_link.vpc_link_id,
                request_parameters={
                    f"integration.request.header.{name}": source for name, source in headers.items()
                },
                timeout_in_millis=29_000,
            )
            is_connect = route_key == "$connect"
            route = apigwv2.CfnRoute(
                self,
                f"{ROUTE_IDS[route_key]}Route",
                api_id=self.api.ref,
                route_key=route_key,
                target=f"integrations/{integration.ref}",
                authorization_type=authorization.authorization_type if is_connect else "NONE",
                authorizer_id=authorization.authorizer_id if is_connect else None,
            )
            self.integrations[route_key] = integration
            self.routes[route_key] = route
            # Each stage's first automatic deployment then includes every route.
            for stage in self.stages.values():
                stage.node.add_dependency(route)
