"""FHIR REST delivery over httpx: POST a message Bundle to a receiver's $process-message.

The only module that imports httpx. Connection errors and timeouts become TransientError
here; every HTTP answer is returned as it came, for the delivery rule table to judge.
Mutual TLS (client certificate, CA bundle) is an option of the client; OAuth2
client-credentials tokens come from OAuth2TokenSource (hub.endpoints.oauth2), over the same
client.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping

import httpx

from hub.errors import TransientError
from hub.records import HttpResult


class HttpxFhirClient:
    """hub.ports.FhirClient. One pooled client per process; thread-safe (httpx.Client is)."""

    def __init__(self, *, verify: bool | str = True, cert: tuple[str, str] | None = None) -> None:
        # verify: True (system CAs), a CA bundle path, or False; cert: client certificate and
        # key files (mutual TLS). httpx wants both in one SSLContext.
        tls: ssl.SSLContext | bool = verify if isinstance(verify, bool) else True
        if isinstance(verify, str) or cert is not None:
            tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if verify is False:
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            if cert is not None:
                tls.load_cert_chain(*cert)
        self._client = httpx.Client(verify=tls, follow_redirects=False)

    def post_message(
        self, *, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        started = time.perf_counter()
        try:
            response = self._client.post(
                url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout)
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"no answer within {timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from exc
        return HttpResult(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.content,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def close(self) -> None:
        self._client.close()

    def post_form(
        self, *, url: str, form: Mapping[str, str], auth: tuple[str, str], timeout: float
    ) -> HttpResult:
        """A form POST with HTTP Basic credentials (an OAuth2 token request, RFC 6749 4.4)."""
        started = time.perf_counter()
        try:
            response = self._client.post(
                url,
                data=dict(form),
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=httpx.Timeout(timeout),
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"no answer within {timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from exc
        return HttpResult(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.content,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
