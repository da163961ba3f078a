"""The API Gateway management API (``@connections``) over aiobotocore.

One aiobotocore client per management endpoint (a registry can hold connections from several
stages or custom domains), each with a connection pool at least as large as the fan-out
concurrency and with botocore's own retries off: the engine owns the retry policy, so a throttled
request is neither retried blindly by botocore nor hidden from the pool-wide limiter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from botocore.config import Config

from ..core.outcomes import Outcome
from ..exceptions import DeliveryError, ForbiddenError
from .base import ManagementTransport
from .errors import BOTOCORE_ERRORS, DELIVERY_ERRORS, classify_exception

if TYPE_CHECKING:
    from types_aiobotocore_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = ["ManagementGateway"]


class ManagementGateway(ManagementTransport):
    """PostToConnection / GetConnection / DeleteConnection through pooled aiobotocore clients.

    Use it as an async context manager; clients are created on first use per endpoint and closed
    on exit.
    """

    def _setup(self) -> None:
        self._config = Config(
            max_pool_connections=self._pool_size,
            retries={"total_max_attempts": 1},
            connect_timeout=self._timeout_s,
            read_timeout=self._timeout_s,
            tcp_keepalive=True,
        )
        self._clients: dict[str, ApiGatewayManagementApiClient] = {}
        self._lock = anyio.Lock()

    def _forget(self) -> None:
        self._clients.clear()

    async def client(self, endpoint: str | None = None) -> ApiGatewayManagementApiClient:
        """The pooled client for ``endpoint`` (or the default), created once.

        :raises ConfigurationError: neither ``endpoint`` nor a default endpoint is set.
        """
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
                        region_name=self._region_of(url),
                        config=self._config,
                        # None: botocore's own choice (its AWS_CA_BUNDLE, else its bundle)
                        verify=self._ca_bundle,
                    )
                )
                self._clients[url] = client
            return self._clients[url]

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """One PostToConnection attempt, classified; HTTP and network errors become outcomes.

        :raises ConfigurationError: neither ``endpoint`` nor a default endpoint is set.
        """
        client = self._clients.get(endpoint or self._default_endpoint or "")
        if client is None:
            client = await self.client(endpoint)
        try:
            await client.post_to_connection(ConnectionId=connection_id, Data=data)
        except DELIVERY_ERRORS as exc:
            return classify_exception(exc)
        return Outcome.DELIVERED

    async def get_connection(
        self, connection_id: str, endpoint: str | None = None
    ) -> dict[str, Any] | None:
        """GetConnection: ``ConnectedAt``, ``Identity``, ``LastActiveAt``; ``None`` when gone.

        :raises ForbiddenError: the endpoint answered 403 (wrong endpoint or credentials).
        :raises DeliveryError: any other error answer, or the endpoint could not be reached.
        :raises ConfigurationError: neither ``endpoint`` nor a default endpoint is set.
        """
        client = await self.client(endpoint)
        try:
            answer = await client.get_connection(ConnectionId=connection_id)
        except BOTOCORE_ERRORS as exc:
            self._raise_unless_gone("GetConnection", exc, endpoint)
            return None
        info: dict[str, Any] = {
            key: value for key, value in answer.items() if key != "ResponseMetadata"
        }
        return info

    async def delete_connection(self, connection_id: str, endpoint: str | None = None) -> bool:
        """DeleteConnection (closes the socket); ``False`` when it was already gone.

        :raises ForbiddenError: the endpoint answered 403 (wrong endpoint or credentials).
        :raises DeliveryError: any other error answer, or the endpoint could not be reached.
        :raises ConfigurationError: neither ``endpoint`` nor a default endpoint is set.
        """
        client = await self.client(endpoint)
        try:
            await client.delete_connection(ConnectionId=connection_id)
        except BOTOCORE_ERRORS as exc:
            self._raise_unless_gone("DeleteConnection", exc, endpoint)
            return False
        return True

    def _raise_unless_gone(self, operation: str, exc: Exception, endpoint: str | None) -> None:
        """Return when ``exc`` says the connection is gone; raise the error it means otherwise.

        Classified like a delivery (by status as well as code: a 403 may carry no code), not
        through :func:`~wsfanout.aws.errors.map_botocore_errors`, which knows codes only.
        """
        outcome = classify_exception(exc)
        if outcome is Outcome.GONE:
            return
        url = self._resolve(endpoint)
        if outcome is Outcome.FORBIDDEN:
            raise ForbiddenError(
                f"the management endpoint {url} answered 403: check the endpoint and credentials",
                endpoint=url,
            ) from exc
        raise DeliveryError(
            f"API Gateway {operation} on {url} failed: {exc}", endpoint=url
        ) from exc
