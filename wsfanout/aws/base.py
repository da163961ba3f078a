"""What the adapters have in common: owning what they open, and addressing management endpoints.

:class:`Owner` is an async context manager over one :class:`~contextlib.AsyncExitStack`, so a
client opened on first use is closed with everything else when the ``async with`` block ends,
in reverse order, even when the block fails. :class:`ManagementTransport` is what both
PostToConnection transports take: the session whose credential chain signs, the default
endpoint, the signing region, the pool's size and timeout, and the certificates TLS trusts.
"""

from __future__ import annotations

import ssl
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ..exceptions import ConfigurationError
from .endpoints import region_of_endpoint, resolve_endpoint

if TYPE_CHECKING:
    import aioboto3

    from ..settings import Settings

__all__ = ["ManagementTransport", "Owner"]


class Owner:
    """Closes what it opened (entered into ``self._stack``) when its ``async with`` ends."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._forget()
        await self._stack.__aexit__(exc_type, exc, tb)

    def _forget(self) -> None:
        """Drop what this object keeps of what is about to be closed (subclasses override)."""


class ManagementTransport(Owner):
    """The shared set-up of the transports that post to ``@connections`` endpoints.

    Connections whose registry item names no endpoint are posted to ``default_endpoint``; the
    signing region is the one in an ``execute-api`` host name, else ``region``. ``ca_bundle``
    (a PEM file) replaces the certificates HTTPS endpoints are verified against, as botocore's
    ``verify=`` does; verification itself is never turned off. Subclasses set up their own
    state in :meth:`_setup`, called at the end of ``__init__``.
    """

    def __init__(
        self,
        session: aioboto3.Session,
        *,
        default_endpoint: str | None = None,
        region: str | None = None,
        pool_size: int = 128,
        timeout_s: float = 10.0,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__()
        self._session = session
        self._default_endpoint = default_endpoint.rstrip("/") if default_endpoint else None
        self._region = region
        self._pool_size = max(pool_size, 10)
        self._timeout_s = timeout_s
        self._ca_bundle = ca_bundle
        self._setup()

    @classmethod
    def from_settings(cls, session: aioboto3.Session, settings: Settings) -> Self:
        """The transport the settings describe: their endpoint, region, concurrency, timeout
        and ``AWS_CA_BUNDLE``."""
        return cls(
            session,
            default_endpoint=settings.apigw_management_endpoint,
            region=settings.aws_region,
            pool_size=settings.fanout_concurrency,
            timeout_s=settings.fanout_request_timeout_s,
            ca_bundle=settings.aws_ca_bundle,
        )

    def _tls(self) -> ssl.SSLContext | None:
        """A verifying client context trusting ``ca_bundle`` only; ``None`` without one (the
        system's certificates, as every client's default).

        :raises ConfigurationError: the bundle cannot be read or holds no certificate.
        """
        if self._ca_bundle is None:
            return None
        try:
            return ssl.create_default_context(cafile=self._ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the CA bundle {self._ca_bundle!r}: {exc}"
            ) from None

    def _setup(self) -> None:
        """Create the subclass's own state (called once, from ``__init__``)."""

    @property
    def default_endpoint(self) -> str | None:
        """The endpoint for connections whose registry item names none."""
        return self._default_endpoint

    def _resolve(self, endpoint: str | None) -> str:
        """The connection's endpoint, else the default one.

        :raises ConfigurationError: neither is set.
        """
        return resolve_endpoint(endpoint, self._default_endpoint)

    def _region_of(self, url: str) -> str:
        return region_of_endpoint(url, self._region)
