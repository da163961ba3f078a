"""The API Gateway management API (``@connections``) over aiobotocore.

One aiobotocore client per management endpoint (a registry can hold connections from several
stages or custom domains), each with a connection pool at least as large as the fan-out
concurrency and with botocore's own retries off: the engine owns the retry policy, so a throttled
request is neither retried blindly by botocore nor hidden from the pool-wide limiter.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .exceptions import ConfigurationError, DeliveryError, ForbiddenError
from .interfaces import Outcome

if TYPE_CHECKING:
    import aioboto3
    from types_aiobotocore_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = [
    "ManagementGateway",
    "classify",
    "endpoint_for",
    "region_of_endpoint",
    "resolve_endpoint",
]

_GONE_TYPES = frozenset({"GoneException"})
_THROTTLE_TYPES = frozenset({"LimitExceededException", "TooManyRequestsException"})
_FORBIDDEN_TYPES = frozenset({"ForbiddenException", "AccessDeniedException"})
_TOO_LARGE_TYPES = frozenset({"PayloadTooLargeException"})

_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def classify(status: int, error_type: str | None = None) -> Outcome:
    """Map a management API answer to an :class:`Outcome` (DESIGN.md's error table).

    The error type (``x-amzn-ErrorType``) decides where it is known; the status code otherwise,
    so a proxy's bare 502 still counts as transient.
    """
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if error_type in _GONE_TYPES or status == 410:
        return Outcome.GONE
    if error_type in _THROTTLE_TYPES or status == 429:
        return Outcome.THROTTLED
    if error_type in _FORBIDDEN_TYPES or status == 403:
        return Outcome.FORBIDDEN
    if error_type in _TOO_LARGE_TYPES or status == 413:
        return Outcome.TOO_LARGE
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.REJECTED


def classify_exception(exc: BaseException) -> Outcome:
    """Map an exception raised by a botocore call to an :class:`Outcome`."""
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        code = exc.response.get("Error", {}).get("Code")
        return classify(int(meta.get("HTTPStatusCode", 0) or 0), code)
    if isinstance(exc, HTTPClientError | BotoConnectionError | ConnectionClosedError | OSError):
        return Outcome.NETWORK_ERROR
    if isinstance(exc, BotoCoreError):
        return Outcome.NETWORK_ERROR
    raise exc


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def endpoint_for(domain_name: str, stage: str) -> str:
    """The management endpoint of a connection, from its route event's domain name and stage.

    ``{api}.execute-api.{region}.amazonaws.com`` serves ``https://{domain}/{stage}``. A custom
    domain is taken to map the API at its root (``https://{domain}``); other mappings set
    ``APIGW_MANAGEMENT_ENDPOINT``. A loopback host (the local emulator) is plain http.
    """
    domain = domain_name.strip().rstrip("/")
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    if host in _LOCAL_HOSTS:
        return f"http://{domain}/{stage}"
    if domain.endswith(".amazonaws.com"):
        return f"https://{domain}/{stage}"
    return f"https://{domain}"


def resolve_endpoint(endpoint: str | None, default: str | None) -> str:
    """The connection's own endpoint, else the default one, without a trailing slash."""
    url = endpoint.rstrip("/") if endpoint else default
    if not url:
        raise ConfigurationError(
            "no management endpoint for this connection: set APIGW_MANAGEMENT_ENDPOINT"
        )
    return url


def region_of_endpoint(endpoint: str, default: str | None) -> str:
    """The signing region: the one in an ``execute-api`` host name, else the configured one."""
    found = _REGION_IN_HOST.search(endpoint)
    if found:
        return found.group(1)
    return default or "us-east-1"


class ManagementGateway:
    """PostToConnection / GetConnection / DeleteConnection through pooled aiobotocore clients.

    Use it as an async context manager; clients are created on first use per endpoint and closed
    on exit.
    """

    def __init__(
        self,
        session: aioboto3.Session,
        *,
        default_endpoint: str | None = None,
        region: str | None = None,
        pool_size: int = 128,
        timeout_s: float = 10.0,
    ) -> None:
        self._session = session
        self._default_endpoint = default_endpoint.rstrip("/") if default_endpoint else None
        self._region = region
        self._config = Config(
            max_pool_connections=max(pool_size, 10),
            retries={"total_max_attempts": 1},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            tcp_keepalive=True,
        )
        self._clients: dict[str, ApiGatewayManagementApiClient] = {}
        self._stack = AsyncExitStack()
        self._lock = anyio.Lock()

    @property
    def default_endpoint(self) -> str | None:
        """The endpoint for connections whose registry item names none."""
        return self._default_endpoint

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._clients.clear()
        await self._stack.__aexit__(exc_type, exc, tb)

    def _resolve(self, endpoint: str | None) -> str:
        return resolve_endpoint(endpoint, self._default_endpoint)

    async def client(self, endpoint: str | None = None) -> ApiGatewayManagementApiClient:
        """The pooled client for ``endpoint`` (or the default), created once."""
        url = self._resolve(endpoint)
        found = self._clients.get(url)
        if found is not None:
            return found
        async with self._lock:
            if url not in self._clients:
                client = await self._stack.enter_async_context(
                    self._session.client(
                        "apigatewaymanagementapi",
                        endpoint_url=url,
                        region_name=region_of_endpoint(url, self._region),
                        config=self._config,
                    )
                )
                self._clients[url] = client
            return self._clients[url]

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """One PostToConnection attempt, classified; HTTP and network errors become outcomes."""
        client = self._clients.get(endpoint or self._default_endpoint or "")
        if client is None:
            client = await self.client(endpoint)
        try:
            await client.post_to_connection(ConnectionId=connection_id, Data=data)
        except (BotoCoreError, ClientError, OSError) as exc:
            return classify_exception(exc)
        return Outcome.DELIVERED

    async def get_connection(
        self, connection_id: str, endpoint: str | None = None
    ) -> dict[str, Any] | None:
        """GetConnection: ``ConnectedAt``, ``Identity``, ``LastActiveAt``; ``None`` when gone."""
        client = await self.client(endpoint)
        try:
            answer = await client.get_connection(ConnectionId=connection_id)
        except ClientError as exc:
            self._raise_unless_gone(exc, endpoint)
            return None
        info: dict[str, Any] = {
            key: value for key, value in answer.items() if key != "ResponseMetadata"
        }
        return info

    async def delete_connection(self, connection_id: str, endpoint: str | None = None) -> bool:
        """DeleteConnection (closes the socket); ``False`` when it was already gone."""
        client = await self.client(endpoint)
        try:
            await client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            self._raise_unless_gone(exc, endpoint)
            return False
        return True

    def _raise_unless_gone(self, exc: ClientError, endpoint: str | None) -> None:
        outcome = classify_exception(exc)
        if outcome is Outcome.GONE:
            return
        url = self._resolve(endpoint)
        if outcome is Outcome.FORBIDDEN:
            raise ForbiddenError(
                f"the management endpoint {url} answered 403: check the endpoint and credentials",
                endpoint=url,
            ) from exc
        raise DeliveryError(f"management API call failed: {exc}", endpoint=url) from exc
