"""The session bridge on Fargate behind an internal Network Load Balancer.

Who reaches the bridge's port: the NLB (API Gateway's VPC link requests and the health checks),
by security group, and the other bridge tasks (relays), by security group. No address range of
the VPC is trusted. The NLB's own group has no inbound rule: the VPC link reaches it through
PrivateLink, which API Gateway asks to exempt from inbound rules (its addresses are not ours
to name), so nothing else in the VPC can open a connection to the listener.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

BRIDGE_PORT = 8080
# With several bridge processes per task, process i also listens on RELAY_PORT + i: where the
# other processes (of this task and of the others) relay the frames of its sessions.
RELAY_PORT = BRIDGE_PORT + 1
# Fargate CPU units per vCPU: a bridge process runs one event loop, so it uses one vCPU at most.
CPU_UNITS_PER_PROCESS = 1024
HEALTH_PATH = "/health"
# The container image is built from the repository root with runtime/Dockerfile.
REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "runtime/Dockerfile"
# Stopping a task: the NLB first stops sending it new connections and lets open ones finish for
# DEREGISTRATION_SECONDS; then ECS sends SIGTERM and waits STOP_TIMEOUT_SECONDS (Fargate's
# maximum) before killing it. The bridge spends DRAIN_SECONDS of that letting sessions end.
DEREGISTRATION_SECONDS = 120
STOP_TIMEOUT_SECONDS = 120
DRAIN_SECONDS = 100


@dataclass(frozen=True)
class BridgeServiceProps:
    vpc: ec2.IVpc
    table: dynamodb.ITableV2
    model_id: str
    connections_url: str
    # execute-api ARNs of this stage's @connections (POST to send, GET status, DELETE hang up).
    manage_connections_arns: list[str]
    tool_function_arns: list[str]
    # The session directory's customer managed key, if it has one.
    table_key_arn: str | None
    environment: dict[str, str]
    # Environment variables ECS fills from Secrets Manager at task start (the gateway secret).
    secrets: dict[str, ecs.Secret]
    cpu: int
    memory_mib: int
    min_tasks: int
    max_tasks: int
    max_sessions_per_task: int
    log_retention: logs.RetentionDays
    metrics_namespace: str
    metrics_service: str
    cpu_target_percent: int = 60
    # Step scaling adds tasks when fewer free session slots than this remain over all tasks.
    min_free_sessions: int = 5
    # One task per Availability Zone at least, and ECS keeps them spread over the zones.
    high_availability: bool = False
    # The asset's build context; tests point it at a small copy to keep synth fast.
    image_directory: Path = field(default=REPO_ROOT)


def processes_for(cpu: int) -> int:
    """Bridge processes in a task of ``cpu`` Fargate CPU units: one per whole vCPU, at least one
    (1024: 1, 2048: 2, 4096: 4)."""
    return max(1, cpu // CPU_UNITS_PER_PROCESS)


class BridgeService(Construct):
    """ECS cluster (Container Insights), ARM64 Fargate service with rollback on failed
    deployments, internal NLB with HTTP health checks, CPU and sessions autoscaling."""

    def __init__(self, scope: Construct, construct_id: str, props: BridgeServiceProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # NOVAKIT_MAX_SESSIONS and SessionsActive are per process: the task's cap is shared out.
        self.processes = processes_for(props.cpu)
        self.max_sessions_per_process = math.ceil(props.max_sessions_per_task / self.processes)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=props.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )

        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="novakit bridge: the model, this API's @connections, the tools, the table",
        )
        self._grant_task_permissions(stack, props)

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=props.cpu,
            memory_limit_mib=props.memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=props.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        image = ecs.ContainerImage.from_asset(
            str(props.image_directory),
            file=DOCKERFILE,
            platform=ecr_assets.Platform.LINUX_ARM64,
        )
        self.container = self.task_definition.add_container(
            "bridge",
            image=image,
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=BRIDGE_PORT)],
            environment={
                "NOVAKIT_PORT": str(BRIDGE_PORT),
                "NOVAKIT_CONNECTIONS_URL": props.connections_url,
                "NOVAKIT_DIRECTORY_TABLE": props.table.table_name,
                "NOVAKIT_MODEL_ID": props.model_id,
                "NOVAKIT_MAX_SESSIONS": str(self.max_sessions_per_process),
                "NOVAKIT_PROCESSES": str(self.processes),
                **({"NOVAKIT_RELAY_PORT": str(RELAY_PORT)} if self.processes > 1 else {}),
                "NOVAKIT_METRICS_SERVICE": props.metrics_service,
                "NOVAKIT_DRAIN_SECONDS": str(DRAIN_SECONDS),
                **props.environment,
            },
            secrets=props.secrets,
            logging=ecs.LogDriver.aws_logs(stream_prefix="bridge", log_group=self.log_group),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=props.vpc,
            description="novakit bridge tasks",
            allow_all_outbound=True,
        )
        # The load balancer's group: no inbound rule (see the module's docstring); out to the
        # tasks' port only (requests and health checks).
        self.load_balancer_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=props.vpc,
            description="novakit bridge NLB: the API Gateway VPC link (PrivateLink) only",
            allow_all_outbound=False,
        )
        self.load_balancer_security_group.add_egress_rule(
            self.security_group,
            ec2.Port.tcp(BRIDGE_PORT),
            "integration requests and health checks to the bridge tasks",
        )
        self.security_group.add_ingress_rule(
            self.load_balancer_security_group,
            ec2.Port.tcp(BRIDGE_PORT),
            "integration requests and health checks from the NLB",
        )
        self.security_group.add_ingress_rule(
            self.security_group,
            ec2.Port.tcp(BRIDGE_PORT),
            "relayed frames from the other bridge tasks",
        )
        if self.processes > 1:
            self.security_group.add_ingress_rule(
                self.security_group,
                ec2.Port.tcp_range(RELAY_PORT, RELAY_PORT + self.processes - 1),
                "relayed frames to each bridge process's own port, from the other tasks",
            )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            # Never below the live capacity during a deployment: new tasks start first.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            assign_public_ip=False,
            health_check_grace_period=Duration.seconds(60),
            enable_execute_command=False,
            availability_zone_rebalancing=(
                ecs.AvailabilityZoneRebalancing.ENABLED
                if props.high_availability
                else ecs.AvailabilityZoneRebalancing.DISABLED
            ),
        )
        # Autoscaling owns the task count. A DesiredCount in the template would reset a
        # scaled-out service on every deploy (and the tasks left would have to adopt every
        # session); without it, CloudFormation starts one task and Application Auto Scaling
        # raises the count to min_tasks when it registers the service.
        service_resource = self.service.node.default_child
        assert isinstance(service_resource, ecs.CfnService)
        service_resource.add_property_deletion_override("DesiredCount")

        self.load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "LoadBalancer",
            vpc=props.vpc,
            internet_facing=False,
            cross_zone_enabled=True,
            security_groups=[self.load_balancer_security_group],
            # API Gateway's VPC link arrives through PrivateLink from addresses API Gateway does
            # not publish; its guide for VPC links says to turn this evaluation off. Only this
            # stack's VPC link is connected to the NLB's endpoint service.
            enforce_security_group_inbound_rules_on_private_link_traffic=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        listener = self.load_balancer.add_listener(
            "Bridge", port=BRIDGE_PORT, protocol=elbv2.Protocol.TCP
        )
        self.target_group = listener.add_targets(
            "Tasks",
            port=BRIDGE_PORT,
            protocol=elbv2.Protocol.TCP,
            targets=[
                self.service.load_balancer_target(
                    container_name="bridge", container_port=BRIDGE_PORT
                )
            ],
            deregistration_delay=Duration.seconds(DEREGISTRATION_SECONDS),
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTP,
                path=HEALTH_PATH,
                port=str(BRIDGE_PORT),
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
                timeout=Duration.seconds(5),
            ),
        )
        self.port = BRIDGE_PORT

        self._autoscaling(props)

    def _autoscaling(self, props: BridgeServiceProps) -> None:
        scaling = self.service.auto_scale_task_count(
            min_capacity=props.min_tasks, max_capacity=props.max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=props.cpu_target_percent,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(1),
        )
        # Sessions per process (the bridge's SessionsActive gauge, averaged over every task's
        # processes): add tasks before the per-process session cap is reached.
        self.sessions_metric = cloudwatch.Metric(
            namespace=props.metrics_namespace,
            metric_name="SessionsActive",
            dimensions_map={"Service": props.metrics_service},
            statistic="Average",
            period=Duration.minutes(1),
        )
        self.sessions_target = max(1, round(self.max_sessions_per_process * 0.7))
        scaling.scale_to_track_custom_metric(
            "Sessions",
            metric=self.sessions_metric,
            target_value=self.sessions_target,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(1),
        )
        # Target tracking waits for 3 minutes of breaching data; a burst of connects can fill
        # the free slots faster. Free slots over all processes (running tasks x processes x
        # the per-process cap, less the sessions they hold), checked every minute: one period
        # under the threshold adds a task at once, none left adds two.
        running_tasks = cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": self.cluster.cluster_name,
                "ServiceName": self.service.service_name,
            },
            statistic="Average",
            period=Duration.minutes(1),
        )
        self.free_sessions_metric = cloudwatch.MathExpression(
            expression=(
                "FILL(tasks, 1) * "
                + (f"{self.processes} * " if self.processes > 1 else "")
                + f"({self.max_sessions_per_process} - FILL(sessions, 0))"
            ),
            using_metrics={"tasks": running_tasks, "sessions": self.sessions_metric},
            label="free session slots",
            period=Duration.minutes(1),
        )
        threshold = props.min_free_sessions
        scaling.scale_on_metric(
            "FreeSessions",
            metric=self.free_sessions_metric,
            scaling_steps=[
                appscaling.ScalingInterval(upper=0, change=2),
                appscaling.ScalingInterval(lower=0, upper=threshold, change=1),
                appscaling.ScalingInterval(lower=threshold, change=0),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.minutes(1),
            evaluation_periods=1,
            datapoints_to_alarm=1,
            metric_aggregation_type=appscaling.MetricAggregationType.MINIMUM,
        )

    def _grant_task_permissions(self, stack: Stack, props: BridgeServiceProps) -> None:
        # Nova Sonic, the configured model only, in this Region only (Bedrock refuses
        # cross-Region streams). The API reference names bedrock:InvokeModel as the permission
        # InvokeModelWithBidirectionalStream checks; the stream action is granted too.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeNovaSonic",
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithBidirectionalStream"],
                resources=[
                    f"arn:{stack.partition}:bedrock:{stack.region}::foundation-model/{props.model_id}"
                ],
            )
        )
        # Send to, look up and hang up this stage's WebSocket connections. The connection id is
        # only known at run time, hence the trailing wildcard.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ManageThisApisConnections",
                actions=["execute-api:ManageConnections"],
                resources=props.manage_connections_arns,
            )
        )
        if props.tool_function_arns:
            # The tool functions found under tools/, and nothing else.
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="InvokeTools",
                    actions=["lambda:InvokeFunction"],
                    resources=props.tool_function_arns,
                )
            )
        self.protection_tasks_arn = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*"
        )
        # Scale-in protection, set by the task itself through the ECS agent's task-protection
        # endpoint: the agent calls UpdateTaskProtection with the task role's credentials.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnScaleInProtection",
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                resources=[self.protection_tasks_arn],
            )
        )
        # The session directory: items by connection id and one item of task heartbeats, read
        # by key only (no Scan: the table holds every session's conversation).
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="SessionDirectory",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[props.table.table_arn],
            )
        )
        if props.table_key_arn is not None:
            # DynamoDB encrypts and decrypts the items with this key on the caller's behalf.
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="SessionDirectoryKey",
                    actions=[
                        "kms:Decrypt",
                        "kms:Encrypt",
                        "kms:GenerateDataKey",
                        "kms:DescribeKey",
                    ],
                    resources=[props.table_key_arn],
                )
            )
