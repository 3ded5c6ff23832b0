"""TLS to RabbitMQ: py-amqp's `ssl` options built from amqp.tls, and a failed connection put in
words an operator can act on (which side refused what, which setting to look at).

Imports no kombu or amqp (hub.adapters.rabbitmq hands these to kombu); never quotes the AMQP
URL, which may carry a password.

py-amqp (5.x) takes its TLS options as a dict and builds the SSLContext itself
(`SSLTransport._wrap_socket_sni`: PROTOCOL_TLS_CLIENT; `check_hostname` on when it is given a
`server_hostname`). It does not take an SSLContext: one passed as `ssl=` is silently treated as
`ssl=True`, which verifies the chain but not the host name. Hence a dict, always complete.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from hub.errors import ConfigError
from hub.settings.broker_tls import AmqpTls

# OpenSSL's reasons for an alert from a server that did not accept the client's certificate,
# or wanted one and got none.
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
_CLOSED = ("Server unexpectedly closed connection", "Socket closed")  # py-amqp's own words
_SET_CLIENT_CERT = "set amqp.tls.cert_file and key_file (HUB_AMQP_CERT_FILE, HUB_AMQP_KEY_FILE)"
_CHECK_CLIENT_CERT = "it must be signed by a CA the broker trusts, and be in date"


def ssl_options(url: str, tls: AmqpTls | None) -> dict[str, Any] | bool:
    """kombu's `ssl=` for `url`: False for amqp:// and memory://; for amqps:// the broker is
    verified (chain and host name, TLS 1.2 or later) against amqp.tls.ca_file, or the system's
    CA store without one, and the hub's client certificate is presented when configured."""
    if not url.startswith("amqps://"):
        if tls is not None:
            raise ConfigError(["amqp.tls is set, so the AMQP URL must be amqps://"])
        return False
    tls = tls or AmqpTls()
    options: dict[str, Any] = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": tls.server_hostname or urlsplit(url).hostname or "localhost",
        "tls_minimum_version": ssl.TLSVersion.TLSv1_2,
    }
    if tls.ca_file:
        options["ca_certs"] = tls.ca_file
    if tls.client_cert:
        options["certfile"], options["keyfile"] = tls.client_cert
    return options


def explain(exc: BaseException, *, address: str, uses_tls: bool, tls: AmqpTls | None) -> str:
    """Why connecting to the broker at `address` failed, for an operator."""
    has_cert = tls is not None and tls.client_cert is not None
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            message = cause.verify_message or str(cause)
            if "hostname" in message.lower():
                hint = (
                    "connect by the name on the broker's certificate, or set "
                    "amqp.tls.server_hostname (HUB_AMQP_SERVER_HOSTNAME) to it"
                )
            else:
                hint = (
                    "amqp.tls.ca_file (HUB_AMQP_CA_FILE) must hold the CA that signed the "
                    "broker's certificate"
                )
            return f"TLS: the broker's certificate was not accepted ({message}); {hint}"
        if isinstance(cause, ssl.SSLEOFError):
            # The broker hung up as the handshake ended: how RabbitMQ refuses a client
            # certificate when the refusal's alert is lost to the hub's first write.
            if has_cert:
                return (
                    "TLS: the broker closed the connection at the end of the handshake; it "
                    f"probably refused the hub's client certificate: {_CHECK_CLIENT_CERT}"
                )
            return (
                "TLS: the broker closed the connection at the end of the handshake, as one that "
                f"requires a client certificate does, and the hub sent none: {_SET_CLIENT_CERT}"
            )
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            if reason in _CLIENT_CERT_REFUSED and has_cert:
                return f"TLS: the broker refused the hub's client certificate ({reason}); " + (
                    _CHECK_CLIENT_CERT
                )
            if reason in _CLIENT_CERT_REFUSED:
                return (
                    f"TLS: the broker requires a client certificate and the hub sent none "
                    f"({reason}); {_SET_CLIENT_CERT}"
                )
            if reason == "WRONG_VERSION_NUMBER":
                return (
                    f"TLS: the broker did not answer in TLS ({reason}); {address} must be its "
                    "TLS listener (usually port 5671)"
                )
            return f"TLS handshake with the broker failed ({reason})"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: nothing listens at {address}"
        if isinstance(cause, TimeoutError):
            return f"no answer from {address} (timed out)"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the broker's host name ({cause.strerror})"
        closed = isinstance(cause, ConnectionResetError) or str(cause) in _CLOSED
        if closed and not uses_tls:
            return (
                f"the broker closed the connection before AMQP began ({cause}); if {address} is "
                "its TLS listener, the URL must be amqps://"
            )
    return f"{type(exc).__name__}: {exc}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during (kombu re-raises its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
