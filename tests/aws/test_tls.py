"""Both PostToConnection transports over HTTPS, as every ``@connections`` call on AWS is: the local
endpoint serves a throwaway self-signed certificate, which a transport trusts only when it is
given it (``ca_bundle``, or ``AWS_CA_BUNDLE`` through the settings); verification is never off."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import aioboto3
import anyio
import pytest
from cryptography import x509

from wsfanout.aws.clients import Clients
from wsfanout.aws.gateway import ManagementGateway
from wsfanout.aws.lean import LeanGateway
from wsfanout.aws.raw import RawGateway
from wsfanout.core.outcomes import Outcome
from wsfanout.exceptions import ConfigurationError
from wsfanout.local.management import ManagementEndpoint, serve
from wsfanout.local.tls import Certificate, throwaway_certificate
from wsfanout.settings import Settings

pytestmark = pytest.mark.timeout(60)

CID = "L0SM9cOFvHcCIhw="
Transport = type[LeanGateway] | type[RawGateway] | type[ManagementGateway]
TRANSPORTS: list[Transport] = [LeanGateway, RawGateway, ManagementGateway]


@pytest.fixture(scope="module")
def certificate() -> Iterator[Certificate]:
    with throwaway_certificate() as made:
        yield made


@pytest.fixture
async def https_endpoint(
    certificate: Certificate,
) -> AsyncIterator[tuple[ManagementEndpoint, str]]:
    fake = ManagementEndpoint()
    async with serve(fake, ssl_context=certificate.server_context()) as url:
        yield fake, f"{url}/test"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_transport_given_the_certificate_posts_over_https(
    transport: Transport,
    session: aioboto3.Session,
    certificate: Certificate,
    https_endpoint: tuple[ManagementEndpoint, str],
) -> None:
    fake, url = https_endpoint
    assert url.startswith("https://127.0.0.1:")
    async with transport(
        session, default_endpoint=url, timeout_s=5.0, ca_bundle=str(certificate.cert_file)
    ) as gateway:
        with anyio.fail_after(20):
            for _ in range(3):  # one kept-alive connection carries them all
                assert await gateway.post(CID, b"secret") is Outcome.DELIVERED
    assert fake.received(CID) == [b"secret"] * 3


@pytest.fixture(scope="module")
def other_certificate() -> Iterator[Certificate]:
    with throwaway_certificate() as made:
        yield made


@pytest.mark.parametrize("trusted", ["system's", "another"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_transport_not_given_the_certificate_refuses_the_endpoint(
    transport: Transport,
    trusted: str,
    session: aioboto3.Session,
    other_certificate: Certificate,
    https_endpoint: tuple[ManagementEndpoint, str],
) -> None:
    """Trusting the system's certificates, or another throwaway one, it refuses the endpoint
    in the handshake: nothing is sent."""
    fake, url = https_endpoint
    bundle = str(other_certificate.cert_file) if trusted == "another" else None
    async with transport(session, default_endpoint=url, timeout_s=5.0, ca_bundle=bundle) as gw:
        with anyio.fail_after(20):
            assert await gw.post(CID, b"secret") is Outcome.NETWORK_ERROR
    assert fake.stats()["posts"] == 0


@pytest.mark.parametrize("transport", [LeanGateway, RawGateway])
async def test_the_transport_names_a_bundle_it_cannot_load(
    transport: Transport, session: aioboto3.Session, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError, match="cannot load the CA bundle"):
        async with transport(session, default_endpoint="https://x/y", ca_bundle=str(missing)):
            pass
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="cannot load the CA bundle"):
        async with transport(session, default_endpoint="https://x/y", ca_bundle=str(empty)):
            pass


@pytest.mark.parametrize("transport", ["lean", "raw", "botocore"])
async def test_aws_ca_bundle_reaches_the_engines_transport(
    transport: Literal["lean", "raw", "botocore"],
    monkeypatch: pytest.MonkeyPatch,
    certificate: Certificate,
    https_endpoint: tuple[ManagementEndpoint, str],
) -> None:
    """botocore reads AWS_CA_BUNDLE for its own clients; the settings hand the same file to the
    lean transport, so switching FANOUT_TRANSPORT never changes whom TLS trusts."""
    fake, url = https_endpoint
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate.cert_file))
    settings = Settings(apigw_management_endpoint=url, fanout_transport=transport)
    assert settings.aws_ca_bundle == str(certificate.cert_file)
    async with Clients(settings) as clients:
        sender = await clients.sender()
        with anyio.fail_after(20):
            assert await sender.post(CID, b"via settings") is Outcome.DELIVERED
    assert fake.received(CID) == [b"via settings"]


def test_the_certificate_names_loopback_and_is_its_own_anchor(certificate: Certificate) -> None:
    context = certificate.client_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509"] == 1  # it alone: no system certificates
    anchor = x509.load_pem_x509_certificate(certificate.cert_file.read_bytes())
    assert anchor.subject == anchor.issuer
    names = anchor.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert certificate.key_file.stat().st_mode & 0o077 == 0  # the key is its owner's only
