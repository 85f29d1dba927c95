"""AWS credentials for Bedrock streams.

The SDK's 0.12 default chain has no ECS task role or instance profile, and its own container
resolver refreshes only after expiry. botocore's chain covers environment, profiles and SSO, web
identity, ECS container credentials and IMDS, and refreshes temporary credentials ahead of expiry
(15 min advisory, 10 min mandatory), so a bridge task runs for days.

Each Bedrock stream signs every event with a key derived from its opening request's signature;
the SDK resolves the identity again for every event. Swapping credentials mid-stream would change
the signing key under a running signature chain, so each stream gets a *snapshot*: the current
credentials, fixed for its life (at most ~8 minutes, well inside botocore's refresh margin).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from smithy_aws_core.identity import AWSCredentialsIdentity, AWSIdentityProperties
from smithy_aws_core.identity.static import StaticCredentialsResolver

from ..errors import ProviderError
from .options import NovaOptions


class CredentialSource(Protocol):
    async def snapshot(self) -> AWSCredentialsIdentity:
        """Current credentials, to be used unchanged by one stream."""
        ...


class StaticCredentials:
    """Fixed keys (from ``Config.extra``): for tests, the emulator and short scripts."""

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None):
        self._identity = AWSCredentialsIdentity(
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
        )

    async def snapshot(self) -> AWSCredentialsIdentity:
        return self._identity


class ResolverCredentials:
    """Any SDK identity resolver (``Config.extra['credentials_resolver']``)."""

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver

    async def snapshot(self) -> AWSCredentialsIdentity:
        properties: AWSIdentityProperties = {}
        identity: AWSCredentialsIdentity = await self._resolver.get_identity(properties=properties)
        return identity


class BotocoreCredentials:
    """botocore's default provider chain, refreshed ahead of expiry (module docstring)."""

    def __init__(self, profile: str | None = None) -> None:
        self._profile = profile
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> AWSCredentialsIdentity:
        # botocore is blocking (it may call the ECS or IMDS endpoint): keep it off the loop.
        async with self._lock:
            frozen = await asyncio.to_thread(self._frozen)
        return AWSCredentialsIdentity(
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
        )

    def _frozen(self) -> Any:
        if self._credentials is None:
            import botocore.session

            session = botocore.session.Session(profile=self._profile)
            self._credentials = session.get_credentials()
            if self._credentials is None:
                raise ProviderError(
                    "no_credentials",
                    "no AWS credentials found (environment, shared config/profile, SSO, web"
                    " identity, ECS task role or instance profile)",
                    retryable=False,
                )
        return self._credentials.get_frozen_credentials()


def credential_source(options: NovaOptions) -> CredentialSource:
    """The credential source ``options`` ask for: explicit keys, a resolver, or the chain."""
    if options.aws_access_key_id and options.aws_secret_access_key:
        return StaticCredentials(
            options.aws_access_key_id, options.aws_secret_access_key, options.aws_session_token
        )
    if options.credentials_resolver is not None:
        return ResolverCredentials(options.credentials_resolver)
    return BotocoreCredentials(options.profile)


def pinned_resolver(identity: AWSCredentialsIdentity) -> StaticCredentialsResolver:
    """An SDK resolver that always returns ``identity`` (one stream's snapshot)."""
    return StaticCredentialsResolver(identity)
