"""HTTPS for the inbound API (`api.tls`), and the client certificate handed to the app.

uvicorn 0.54 verifies client certificates (ssl_ca_certs, ssl_cert_reqs) but gives the app no
way to see which one was presented: the ASGI TLS extension (`scope["extensions"]["tls"]`) is
not implemented yet (Kludex/uvicorn#745, #1119, #3043). So the API is served by uvicorn's own
h11 protocol, subclassed only to fill that extension once per connection from the connection's
`ssl_object`. When uvicorn fills the extension itself, this subclass can go and the app
(hub.adapters.inbound.api, reading `client_cert_name`) stays as it is. Only
hub.adapters.inbound.api uses this.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from hub.security.distinguished_names import peer_subject_name
from hub.security.inbound_auth import ApiTls

# ASGI TLS extension `tls_version`: the TLS protocol number (RFC 8446 §4.2.1).
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: Any) -> dict[str, Any]:
    """The ASGI TLS extension (version 0.2) for one connection. `client_cert_name` is set only
    for a certificate the handshake verified against `api.tls.client_ca_file` (getpeercert()
    returns an empty dict for anything unverified). uvicorn cannot tell the server's own
    certificate or a verification error (a failed verification ends the handshake), so those
    keys are None, as the extension allows."""
    verified = ssl_object.getpeercert() or {}
    der = ssl_object.getpeercert(binary_form=True) if verified else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": peer_subject_name(verified["subject"]) if verified else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (one instance per connection) whose app sees the TLS extension."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        extension = tls_extension(ssl_object)
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": extension}
            await app(scope, receive, send)

        self.app = with_tls


def uvicorn_tls_options(tls: ApiTls | None) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for `api.tls` (none: plain HTTP). A client CA asks
    every client for a certificate (CERT_OPTIONAL: bearer-token services and health probes
    need not have one) or, with `require_client_cert`, refuses the handshake without one."""
    if tls is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_keyfile_password": tls.key_password,
        "http": TlsH11Protocol,
    }
    if tls.client_ca_file:
        options["ssl_ca_certs"] = tls.client_ca_file
        required = tls.require_client_cert
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return options
