"""Throwaway TLS for the local endpoints: a self-signed certificate made per run, trusted by name.

Every ``@connections`` call on AWS is HTTPS, so a benchmark that posts over plain HTTP leaves out
the record layer's CPU. :func:`throwaway_certificate` makes a certificate for ``127.0.0.1`` and
``localhost`` in a temporary directory, removed when its ``with`` block ends; the server loads it
(:meth:`Certificate.server_context`) and each client trusts exactly it, explicitly
(:meth:`Certificate.client_context`, or :attr:`Certificate.cert_file` as botocore's ``verify=``
path or the transports' ``ca_bundle``). Nothing is trusted process-wide (no ``SSL_CERT_FILE``)
and verification is never turned off: a client given no certificate refuses the endpoint.

RSA 2048 with SHA-256, as API Gateway's own certificates are, so the handshake costs what it
costs there. No CA signs it: it is its own trust anchor, so it says ``CA:FALSE`` and clients
load it as the one certificate they trust.
"""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LOCAL_NAMES", "Certificate", "self_signed", "throwaway_certificate"]

LOCAL_NAMES = ("127.0.0.1", "localhost")
_VALID_FOR = timedelta(days=1)
_CLOCK_SKEW = timedelta(minutes=5)  # valid from a little before now, as a slow clock sees it


@dataclass(frozen=True, slots=True)
class Certificate:
    """A certificate (PEM, also the bundle a client trusts) and its private key (PEM)."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context serving this certificate (TLS 1.2 and up, Python's defaults)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate and nothing else, names checked."""
        return ssl.create_default_context(cafile=self.cert_file)


def self_signed(directory: Path, names: Sequence[str] = LOCAL_NAMES) -> Certificate:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``: a certificate for ``names`` (IP
    addresses and host names), valid for a day. The key file is readable by its owner only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    now = datetime.now(UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@contextmanager
def throwaway_certificate(names: Sequence[str] = LOCAL_NAMES) -> Iterator[Certificate]:
    """A fresh :func:`self_signed` certificate in a temporary directory, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="wsfanout-tls-") as directory:
        yield self_signed(Path(directory), names)
