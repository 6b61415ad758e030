"""TLS for the SMTP transport: whom to trust, what the server's certificate says, why a handshake failed.

Trust is the system store plus ``smtp.ca_file`` (for internal CAs), with the host name checked, as MailKit
does by default. Certificates are described by subject, issuer and expiry so an admin can recognise them.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

from opos_tui.i18n import tr
from opos_tui.services.transports.base import CertificateInfo
from opos_tui.services.transports.smtp.errors import (
    CaFileUnusable,
    CertificateNotTrusted,
    CertificateProblem,
    TlsFault,
)

# OpenSSL's X509_V_ERR_* codes that mean "no trusted CA vouches for this certificate"; any other
# verification failure (host name, expiry) is a certificate that is trusted but not acceptable.
_NOT_TRUSTED_CODES = frozenset({2, 18, 19, 20, 21})
_NAME_MISMATCH_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _build_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        path = Path(ca_file).expanduser()
        try:
            context.load_verify_locations(cafile=str(path))
        except FileNotFoundError:
            raise CaFileUnusable(ca_file, tr("file not found", "Datei nicht gefunden")) from None
        except OSError as exc:
            raise CaFileUnusable(ca_file, exc.strerror or str(exc)) from None
        except ssl.SSLError as exc:
            raise CaFileUnusable(ca_file, tr("no PEM certificate in it", "kein PEM-Zertifikat darin")) from exc
    return context


async def client_context(ca_file: str) -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus ``ca_file``; host names checked."""
    # Loading the system store reads many files: not on the event loop.
    return await asyncio.to_thread(_build_context, ca_file)


def unverified_context() -> ssl.SSLContext:
    """Only for reading a refused certificate to describe it; never used to send anything."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class TlsSession:
    """What an established TLS connection uses."""

    version: str
    cipher: str
    bits: int
    certificate: CertificateInfo | None

    @classmethod
    def of(cls, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TlsSession:
        name, _protocol, bits = ssl_object.cipher() or ("?", "?", 0)
        der = ssl_object.getpeercert(binary_form=True)
        return cls(
            version=ssl_object.version() or "?",
            cipher=name,
            bits=bits,
            certificate=CertificateInfo.from_der(der) if der else None,
        )

    def describe(self) -> str:
        cert = f"; {self.certificate.describe()}" if self.certificate else ""
        return f"{self.version}, {self.cipher} ({self.bits} bit){cert}"


def certificate_error(exc: ssl.SSLCertVerificationError, host: str, certificate: CertificateInfo | None) -> TlsFault:
    """A refused certificate as an error an admin can act on; ``certificate`` as read without verifying."""
    subject = certificate.subject if certificate else "?"
    issuer = certificate.issuer if certificate else "?"
    reason = (exc.verify_message or exc.reason or str(exc)).rstrip(".")
    if exc.verify_code in _NOT_TRUSTED_CODES:
        return CertificateNotTrusted(host, subject, issuer, reason, detail=str(exc))
    if exc.verify_code in _NAME_MISMATCH_CODES and certificate is not None:
        reason = tr(
            f"it is made for {', '.join(certificate.names) or subject}, not for {host}",
            f"es ist für {', '.join(certificate.names) or subject} ausgestellt, nicht für {host}",
        )
    return CertificateProblem(host, subject, issuer, reason, detail=str(exc))
