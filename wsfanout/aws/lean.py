"""A lean PostToConnection transport: one keep-alive aiohttp pool and a precomputed signer.

Why by hand: a botocore client builds, validates, serializes, signs and parses every request
generically (event hooks, user-agent strings, model lookups, response parsing), and that work,
not the network, dominates the CPU of a PostToConnection; a broadcast is nothing but that one
request repeated (docs/performance.md has the figures).
This transport keeps what must be right (botocore's credential chain, SigV4 identical to
botocore's, the URL encoding botocore uses, the ``x-amzn-ErrorType`` classification) and drops the
rest. :class:`~wsfanout.aws.gateway.ManagementGateway` remains the general client (GetConnection,
DeleteConnection) and the fallback transport (``FANOUT_TRANSPORT=botocore``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Self

import aiohttp
import anyio

from ..core.outcomes import Outcome, classify
from ..exceptions import ConfigurationError
from .base import ManagementTransport
from .sigv4 import Credentials, PostSigner

if TYPE_CHECKING:
    pass

__all__ = ["LeanGateway"]

_CREDENTIALS_MAX_AGE_S = 60.0
_DOT_SEGMENTS = frozenset({".", ".."})


class LeanGateway(ManagementTransport):
    """PostToConnection over a keep-alive aiohttp pool, signed with SigV4.

    Same contract as :meth:`~wsfanout.aws.gateway.ManagementGateway.post`: it never raises for
    HTTP or network errors but returns an :class:`Outcome`. Use it as an async context manager.
    Credentials come from the session's chain (environment, container role, profile) and are
    re-read every minute, so refreshable role credentials never go stale mid-broadcast.
    """

    def _setup(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._signers: dict[str, PostSigner] = {}
        self._credentials: Credentials | None = None
        self._fresh_until = 0.0
        self._refresh = anyio.Lock()

    async def __aenter__(self) -> Self:
        """Open the pool.

        :raises ConfigurationError: ``ca_bundle`` cannot be loaded.
        """
        tls = self._tls()
        await super().__aenter__()
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=60,
            ssl=tls or True,  # True: aiohttp's verifying default
        )
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        self._http = await self._stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        )
        return self

    def _forget(self) -> None:
        self._http = None

    async def credentials(self) -> Credentials:
        """The current credentials, re-read from the session's chain at most once a minute.

        :raises ConfigurationError: the session's chain holds no credentials.
        """
        if self._credentials is None or time.monotonic() > self._fresh_until:
            async with self._refresh:
                if self._credentials is None or time.monotonic() > self._fresh_until:
                    source = await self._session.get_credentials()
                    if source is None:
                        raise ConfigurationError(
                            "no AWS credentials found to sign management API requests"
                        )
                    frozen = await source.get_frozen_credentials()
                    self._credentials = Credentials(
                        frozen.access_key, frozen.secret_key, frozen.token
                    )
                    self._fresh_until = time.monotonic() + _CREDENTIALS_MAX_AGE_S
        return self._credentials

    def _signer(self, endpoint: str | None) -> PostSigner:
        base = self._resolve(endpoint)
        signer = self._signers.get(base)
        if signer is None:
            signer = PostSigner(base, self._region_of(base))
            self._signers[base] = signer
        return signer

    async def _signed(
        self, connection_id: str, data: bytes, endpoint: str | None
    ) -> tuple[str, str, dict[str, str]] | None:
        """The endpoint's base URL, the post's URL and its signed headers; ``None`` for an id
        that would address another path, never a connection.

        :raises ConfigurationError: no endpoint for the connection, or no credentials to sign.
        """
        if connection_id in _DOT_SEGMENTS:
            return None
        signer = self._signers.get(endpoint or self._default_endpoint or "") or self._signer(
            endpoint
        )
        credentials = self._credentials
        if credentials is None or time.monotonic() > self._fresh_until:
            credentials = await self.credentials()
        url, headers = signer.sign(connection_id, data, credentials)
        return signer.base_url, url, headers

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """One signed PostToConnection attempt, classified; HTTP and network errors are outcomes.

        :raises ConfigurationError: no endpoint for the connection, or no credentials to sign.
        :raises RuntimeError: called outside the gateway's ``async with`` block (a bug).
        """
        http = self._http
        if http is None:
            raise RuntimeError("LeanGateway used outside its 'async with' block")
        signed = await self._signed(connection_id, data, endpoint)
        if signed is None:
            return Outcome.REJECTED
        _, url, headers = signed
        try:
            async with http.post(url, data=data, headers=headers) as answer:
                status = answer.status
                if status < 300:
                    return Outcome.DELIVERED
                error_type = answer.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
                await answer.read()
                return classify(status, error_type or None)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return Outcome.NETWORK_ERROR
