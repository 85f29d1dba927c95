"""The optional hosted browser client: private bucket, CloudFront with origin access control."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match


@pytest.fixture(scope="module")
def web(synth, two_tools, web_site):
    return synth("web", tools=two_tools, web=web_site, web_client=True)


def test_off_by_default(default):
    default.template.resource_count_is("AWS::CloudFront::Distribution", 0)
    default.template.resource_count_is("AWS::S3::Bucket", 0)


def test_private_bucket_behind_cloudfront_with_oac(web):
    web.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }
        },
    )
    web.template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    web.template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": Match.object_like(
                {
                    "DefaultRootObject": "index.html",
                    "DefaultCacheBehavior": Match.object_like(
                        {"ViewerProtocolPolicy": "redirect-to-https"}
                    ),
                }
            )
        },
    )
    assert "WebClientUrl" in web.raw["Outputs"]


def test_page_learns_the_websocket_url_from_config_json(web):
    (deployment,) = web.resources("Custom::CDKBucketDeployment").values()
    markers = [m for m in deployment["Properties"]["SourceMarkers"] if m]
    api = web.resolve(web.stack.gateway.api.ref)
    (url,) = markers[0].values()
    assert url["Fn::Join"][1][0] == '"wss://'
    assert api in url["Fn::Join"][1]


def test_star_resources_are_only_the_documented_exceptions(web):
    from tests.infra.test_iam import star_statements

    allowed = {
        "ecr:GetAuthorizationToken",  # no resource-level permissions
        "cloudfront:GetInvalidation",  # invalidations take no resource ARN
        "cloudfront:CreateInvalidation",
    }
    for logical_id, actions in star_statements(web):
        assert set(actions) <= allowed, (logical_id, actions)


def test_missing_site_is_a_clear_error(synth, two_tools, tmp_path_factory):
    with pytest.raises(Exception, match=r"web_client=true needs the browser client"):
        synth(
            "web-missing",
            tools=two_tools,
            web=tmp_path_factory.mktemp("no-site"),
            web_client=True,
            nag=False,
        )
