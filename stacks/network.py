"""The VPC the bridge runs in."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

# A fixed range, known at synth time. No security group rule trusts it: the bridge admits the
# NLB's and its own security groups, not addresses (see bridge_service.py).
VPC_CIDR = "10.40.0.0/16"


@dataclass(frozen=True)
class NetworkProps:
    nat_gateways: int = 1
    # A bedrock-runtime interface endpoint keeps the audio to and from Bedrock off the NAT
    # (0.01 USD per AZ per hour plus 0.01 USD per GB, against the NAT's 0.045 USD per GB):
    # worth it above the break-even in bench/costs.py. The other services carry little per
    # session (image pulls, logs, tool calls), so they stay on the NAT.
    interface_endpoints: bool = False
    flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH


class Network(Construct):
    """Two AZs: public subnets hold only the NAT gateways; tasks run in private subnets.

    No ``execute-api`` interface endpoint, on purpose: with private DNS it captures
    ``*.execute-api.{region}.amazonaws.com`` inside the VPC, and the bridge's POSTs to the
    WebSocket API's ``@connections`` URL would then be refused with 403. The bridge reaches
    ``@connections`` through the NAT instead.
    """

    def __init__(self, scope: Construct, construct_id: str, props: NetworkProps) -> None:
        super().__init__(scope, construct_id)
        self.cidr = VPC_CIDR
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=2,
            nat_gateways=props.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
            ],
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=props.flow_log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Refused connections only: the record that matters for security, without paying to log
        # every audio flow.
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        # Gateway endpoints are free: the session directory (DynamoDB) and ECR's image layers
        # (S3) stay off the NAT.
        self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[private]
        )
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[private]
        )
        if props.interface_endpoints:
            self.vpc.add_interface_endpoint(
                "BedrockRuntime",
                service=ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
                subnets=private,
                private_dns_enabled=True,
            )
