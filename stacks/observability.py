"""Dashboard and alarms for the voice agent: API Gateway, the bridge (its EMF metrics and ECS),
the load balancer and the tool functions."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

# The metric names the bridge publishes (EMF, dimension Service).
BRIDGE_METRICS = (
    "SessionsActive",
    "TimeToFirstAudioMs",
    "ToolLatencyMs",
    "ToolFailures",
    "PostLatencyMs",
    "Errors",
    "SessionsRefused",
)
FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True)
class ObservabilityProps:
    api_id: str
    stage_name: str
    service: ecs.FargateService
    cluster_name: str
    target_group: elbv2.NetworkTargetGroup
    tool_functions: dict[str, lambda_.Function]
    authorizer: lambda_.IFunction | None
    table_name: str
    model_id: str
    metrics_namespace: str
    metrics_service: str
    alarm_email: str = ""
    time_to_first_audio_p90_ms: int = 1500


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ObservabilityProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        # One topic for every alarm, always: an alarm nobody hears is not an alarm. Encrypted
        # with a customer managed key, because CloudWatch cannot publish to a topic under the
        # AWS managed SNS key (its key policy cannot name CloudWatch).
        self.topic_key = kms.Key(
            self,
            "AlarmTopicKey",
            description="novakit alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="novakit alarms",
            enforce_ssl=True,
            master_key=self.topic_key,
        )
        if props.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))

        self._alarm(
            "BridgeErrors",
            self.bridge("Errors", "Sum"),
            threshold=10,
            description="The bridge reported 10 or more errors in 5 minutes (see its logs).",
        )
        self._alarm(
            "TimeToFirstAudio",
            self.bridge("TimeToFirstAudioMs", "p90"),
            threshold=props.time_to_first_audio_p90_ms,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description=(
                f"90 % of answers took more than {props.time_to_first_audio_p90_ms} ms to start "
                "playing, in 2 of the last 3 periods of 5 minutes."
            ),
        )
        self._alarm(
            "ToolFailures",
            self.bridge("ToolFailures", "Sum"),
            threshold=5,
            description="5 or more tool calls failed or timed out in 5 minutes.",
        )
        self._alarm(
            "IntegrationErrors",
            self.api("IntegrationError"),
            threshold=5,
            description="API Gateway got 5 or more 5xx answers or no answer from the bridge.",
        )
        self._alarm(
            "ExecutionErrors",
            self.api("ExecutionError"),
            threshold=5,
            description="API Gateway failed 5 or more requests itself (authorizer, VPC link).",
        )
        self._alarm(
            "ClientErrorsAndThrottles",
            self.api("ClientError"),
            threshold=100,
            description=(
                "100 or more connects or frames refused in 5 minutes: throttled (429), "
                "unauthenticated or malformed."
            ),
        )
        self._alarm(
            "UnhealthyBridgeTasks",
            props.target_group.metrics.un_healthy_host_count(
                statistic="Maximum", period=Duration.minutes(1)
            ),
            threshold=1,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            description="A bridge task failed its /health check for 3 minutes.",
        )
        self._alarm(
            "NoHealthyTasks",
            props.target_group.metrics.healthy_host_count(
                statistic="Minimum", period=Duration.minutes(1)
            ),
            threshold=1,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            # The load balancer reports its targets every minute; silence is not health.
            missing=cloudwatch.TreatMissingData.BREACHING,
            description="No bridge task passed its health check for 2 minutes: nobody can talk.",
        )
        self._alarm(
            "TaskRestarts",
            cloudwatch.MathExpression(
                expression="FILL(desired, 0) - FILL(running, 0)",
                using_metrics={
                    "desired": self.ecs("DesiredTaskCount"),
                    "running": self.ecs("RunningTaskCount"),
                },
                label="tasks missing",
                period=Duration.minutes(1),
            ),
            threshold=1,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            description=(
                "Fewer bridge tasks running than desired for 5 minutes: tasks stop and restart "
                "(crash, failed health checks, image pull) faster than a scale-out completes."
            ),
        )
        self._alarm(
            "SessionsRefused",
            self.bridge("SessionsRefused", "Sum"),
            threshold=1,
            description=(
                "A bridge task refused a session because it was full: scaling is behind or "
                "max_tasks is reached."
            ),
        )
        self._alarm(
            "BedrockErrors",
            self.bedrock("InvocationServerErrors"),
            threshold=5,
            description="Bedrock failed 5 or more Nova Sonic invocations in 5 minutes.",
        )
        self._alarm(
            "BedrockThrottles",
            self.bedrock("InvocationThrottles"),
            threshold=1,
            description=(
                "Bedrock throttled Nova Sonic: sessions are refused until the account's quota "
                "for the model is raised (Service Quotas)."
            ),
        )
        self._alarm(
            "DirectoryThrottles",
            cloudwatch.MathExpression(
                expression="FILL(reads, 0) + FILL(writes, 0)",
                using_metrics={
                    "reads": self.table("ReadThrottleEvents"),
                    "writes": self.table("WriteThrottleEvents"),
                },
                label="directory throttles",
                period=FIVE_MINUTES,
            ),
            threshold=1,
            description="DynamoDB throttled the session directory (ownership and hand-over).",
        )
        if props.authorizer is not None:
            authorizer = props.authorizer
            self._alarm(
                "AuthorizerErrors",
                cloudwatch.MathExpression(
                    expression="FILL(errors, 0) + FILL(throttles, 0)",
                    using_metrics={
                        "errors": authorizer.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                        "throttles": authorizer.metric_throttles(
                            period=FIVE_MINUTES, statistic="Sum"
                        ),
                    },
                    label="authorizer errors and throttles",
                    period=FIVE_MINUTES,
                ),
                threshold=5,
                description=(
                    "The $connect authorizer failed or was throttled 5 or more times in 5 "
                    "minutes: clients with good tokens are refused (a flood, or a broken "
                    "secret or user pool)."
                ),
            )
        if props.tool_functions:
            self._alarm(
                "ToolFunctionErrors",
                self._sum_over_tools("Errors"),
                threshold=5,
                description="Tool functions raised 5 or more errors in 5 minutes.",
            )
            self._alarm(
                "ToolThrottles",
                self._sum_over_tools("Throttles"),
                threshold=1,
                description="Lambda throttled a tool function (concurrency limit reached).",
            )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self._widgets()
        stack = Stack.of(self)
        self.dashboard_url = (
            f"https://{stack.region}.console.aws.amazon.com/cloudwatch/home?region={stack.region}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )

    def bridge(
        self, name: str, statistic: str, period: Duration = FIVE_MINUTES
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.props.metrics_namespace,
            metric_name=name,
            dimensions_map={"Service": self.props.metrics_service},
            statistic=statistic,
            period=period,
        )

    def ecs(self, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=name,
            dimensions_map={
                "ClusterName": self.props.cluster_name,
                "ServiceName": self.props.service.service_name,
            },
            statistic="Average",
            period=Duration.minutes(1),
        )

    def bedrock(self, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Bedrock",
            metric_name=name,
            dimensions_map={"ModelId": self.props.model_id},
            statistic="Sum",
            period=FIVE_MINUTES,
        )

    def table(self, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/DynamoDB",
            metric_name=name,
            dimensions_map={"TableName": self.props.table_name},
            statistic="Sum",
            period=FIVE_MINUTES,
        )

    def api(self, name: str, statistic: str = "Sum") -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map={"ApiId": self.props.api_id, "Stage": self.props.stage_name},
            statistic=statistic,
            period=FIVE_MINUTES,
        )

    def _sum_over_tools(self, name: str) -> cloudwatch.MathExpression:
        metrics = {
            f"m{index}": function.metric(name, statistic="Sum", period=FIVE_MINUTES)
            for index, function in enumerate(self.props.tool_functions.values())
        }
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({key}, 0)" for key in metrics),
            using_metrics=metrics,
            label=f"tool {name.lower()}",
            period=FIVE_MINUTES,
        )

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
        # No traffic is not a fault.
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_description=description,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        # Recovery is news too: whoever was paged learns that it is over.
        alarm.add_ok_action(action)
        self.alarms[name] = alarm

    def _widgets(self) -> None:
        props = self.props
        minute = Duration.minutes(1)
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24, height=3
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Sessions (per bridge process, average and max)",
                left=[
                    self.bridge("SessionsActive", "Average", minute),
                    self.bridge("SessionsActive", "Maximum", minute),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Time to first audio (ms)",
                left=[
                    self.bridge("TimeToFirstAudioMs", stat, minute)
                    for stat in ("p50", "p90", "p99")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="@connections post latency (ms)",
                left=[self.bridge("PostLatencyMs", stat, minute) for stat in ("p50", "p99")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="WebSocket traffic",
                left=[self.api("ConnectCount"), self.api("MessageCount")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="WebSocket errors",
                left=[
                    self.api("IntegrationError"),
                    self.api("ExecutionError"),
                    self.api("ClientError"),
                ],
                right=[self.bridge("Errors", "Sum"), self.bridge("SessionsRefused", "Sum")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Integration latency (ms)",
                left=[self.api("IntegrationLatency", stat) for stat in ("p50", "p99")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Bridge CPU and memory (%)",
                left=[
                    props.service.metric_cpu_utilization(period=minute),
                    props.service.metric_memory_utilization(period=minute),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Bridge tasks (healthy / unhealthy)",
                left=[
                    props.target_group.metrics.healthy_host_count(period=minute),
                    props.target_group.metrics.un_healthy_host_count(period=minute),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Tools (latency ms, failures)",
                left=[self.bridge("ToolLatencyMs", stat, minute) for stat in ("p50", "p90")],
                right=[self.bridge("ToolFailures", "Sum", minute)],
                width=8,
            ),
        )
        if props.tool_functions:
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Tool functions (errors, throttles)",
                    left=[f.metric_errors(period=minute) for f in props.tool_functions.values()],
                    right=[
                        f.metric_throttles(period=minute) for f in props.tool_functions.values()
                    ],
                    width=24,
                )
            )
