#!/usr/bin/env python3
"""The CDK app: ``make deploy`` (``npx cdk deploy``) brings up the novakit voice agent.

Settings come from cdk.json's context and ``-c key=value`` (see docs/deploy.md).
"""

from __future__ import annotations

import os
import sys

from aws_cdk import App, Environment, Tags

from novakit.tools import ToolManifestError
from stacks import Settings, SettingsError, VoiceAgentStack
from stacks.nag import check_with_nag


def main() -> None:
    app = App()
    try:
        settings = Settings.from_node(app.node)
        stack = VoiceAgentStack(
            app,
            settings.stack_name,
            settings=settings,
            env=Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=settings.region),
        )
    except (SettingsError, ToolManifestError) as exc:
        sys.exit(f"novakit: {exc}")
    Tags.of(app).add("project", "novakit")
    check_with_nag(stack)
    app.synth()


if __name__ == "__main__":
    main()
