"""The optional hosted browser client: a private S3 bucket behind CloudFront (origin access
control), with a config.json that tells the page where the WebSocket API is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct


@dataclass(frozen=True)
class WebClientProps:
    site_directory: Path
    websocket_url: str
    auth_mode: str


class WebClient(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: WebClientProps) -> None:
        super().__init__(scope, construct_id)
        if not (props.site_directory / "index.html").is_file():
            raise ValueError(
                f"web_client=true needs the browser client in {props.site_directory} "
                "(index.html not found)"
            )
        self.bucket = s3.Bucket(
            self,
            "Site",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="novakit browser client",
            default_root_object="index.html",
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
            ),
        )
        s3_deployment.BucketDeployment(
            self,
            "Deploy",
            destination_bucket=self.bucket,
            sources=[
                s3_deployment.Source.asset(str(props.site_directory)),
                s3_deployment.Source.json_data(
                    "config.json", {"url": props.websocket_url, "auth": props.auth_mode}
                ),
            ],
            distribution=self.distribution,
        )
        self.url = f"https://{self.distribution.distribution_domain_name}"
