"""Where the management API of a connection is, and which region signs for it."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from .account import REGION as LOCAL_REGION

__all__ = ["DEFAULT_REGION", "STAGE_NAME", "endpoint_for", "region_of_endpoint", "resolve_endpoint"]

DEFAULT_REGION: Final = "us-east-1"
"""Signing region when neither the endpoint's host name nor the configuration names one."""

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})

STAGE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""API Gateway's stage names: "alphanumeric characters, hyphens, and underscores", at most 128."""

_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn")


def endpoint_for(domain_name: str, stage: str) -> str:
    """The management endpoint of a connection, from its route event's domain name and stage.

    ``{api}.execute-api.{region}.amazonaws.com`` (``.amazonaws.com.cn`` in the China regions)
    serves ``https://{domain}/{stage}``. A custom
    domain is taken to map the API at its root (``https://{domain}``); other mappings set
    ``APIGW_MANAGEMENT_ENDPOINT``. A loopback host (the local emulator) is plain http.
    """
    domain = domain_name.strip().rstrip("/")
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    if host in _LOCAL_HOSTS:
        return f"http://{domain}/{stage}"
    if domain.endswith(_AWS_DOMAINS):
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
    """The signing region: the one in an ``execute-api`` host name, else the configured one;
    with neither, the local account's region for a loopback host (the local stack's stand-in
    verifies signatures for that region), else :data:`DEFAULT_REGION`."""
    found = _REGION_IN_HOST.search(endpoint)
    if found:
        return found.group(1)
    if default:
        return default
    host = urlsplit(endpoint).hostname or ""
    return LOCAL_REGION if host in _LOOPBACK else DEFAULT_REGION
