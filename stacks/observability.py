"""Dashboard and alarms for the voice agent: API Gateway, the bridge (its EMF metrics and ECS),
the load balancer and the tool functions."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
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
)
FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True)
class ObservabilityProps:
    api_id: str
    stage_name: str
    service: ecs.FargateService
    target_group: elbv2.NetworkTargetGroup
    tool_functions: dict[str, lambda_.Function]
    metrics_namespace: str
    metrics_service: str
    alarm_email: str = ""
    time_to_first_audio_p90_ms: int = 1500


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ObservabilityProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.topic: sns.Topic | None = None
        if props.alarm_email:
            self.topic = sns.Topic(
                self,
                "AlarmTopic",
                display_name="novakit alarms",
                enforce_ssl=True,
                master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
            )
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
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=comparison,
            # No traffic is not a fault.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
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
                title="Sessions (per task, average and max)",
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
                right=[self.bridge("Errors", "Sum")],
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
