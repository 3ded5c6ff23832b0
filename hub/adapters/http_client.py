"""FHIR REST delivery over urllib3: POST a message Bundle to a receiver's $process-message.

The only module that imports an HTTP client library. urllib3 rather than httpx: a 7 KB POST on
a kept-alive connection costs it about a third of the CPU (280–330 µs against 850 µs, measured
for issue 11), and delivery is the hub's largest share of CPU. Connection errors and timeouts
become TransientError here; every HTTP answer is returned as it came, for the delivery rule
table to judge: urllib3 never retries nor follows a redirect on its own here (retries=False),
since a hidden second POST would be a second referral to a receiver that does not de-duplicate,
and the hub's own retries (same X-Request-Id, same bytes) are decided elsewhere. A kept-alive
connection the receiver closed while idle is noticed before it is used (urllib3 checks a pooled
connection before reusing it) and replaced; one dropped mid-request is a TransientError.
Mutual TLS (client certificate, CA bundle) is an option of the client; OAuth2
client-credentials tokens come from OAuth2TokenSource (hub.endpoints.oauth2), over the same
client.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlencode

import certifi
import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import NewConnectionError as _Refused
from urllib3.exceptions import TimeoutError as _Urllib3Timeout

from hub.errors import TransientError
from hub.records import HttpResult


def _tls_context(verify: bool | str, cert: tuple[str, str] | None) -> ssl.SSLContext:
    # verify: True (the certifi CA bundle, as with httpx before), a CA bundle path, or False;
    # cert: client certificate and key files (mutual TLS).
    context = ssl.create_default_context(
        cafile=verify if isinstance(verify, str) else certifi.where()
    )
    if verify is False:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


class Urllib3FhirClient:
    """hub.ports.FhirClient. A pool of kept-alive connections per host; thread-safe (urllib3's
    PoolManager is). Each delivery slot has its own (hub.bootstrap.delivery)."""

    def __init__(self, *, verify: bool | str = True, cert: tuple[str, str] | None = None) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=16,
            maxsize=4,
            block=False,
            retries=False,
            ssl_context=_tls_context(verify, cert),
        )
        self._targets: dict[str, tuple[urllib3.HTTPConnectionPool, str]] = {}
        self._timeouts: dict[float, urllib3.Timeout] = {}

    def _post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        started = time.perf_counter()
        try:
            pool, target = self._target(url)
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers=dict(headers),
                timeout=self._timeout(timeout),
                redirect=False,
                retries=False,
                assert_same_host=False,
            )
        except _Refused as exc:  # urllib3 makes it a kind of timeout: it is not one
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from exc
        except _Urllib3Timeout as exc:
            raise TransientError(f"no answer within {timeout:g}s ({type(exc).__name__})") from exc
        except (_Urllib3Error, OSError) as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from exc
        return HttpResult(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.data,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def _target(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The host's connection pool and the request target (path and query) of `url`,
        worked out once per URL: an endpoint posts to the same URL every time, and the
        PoolManager would otherwise parse it and normalise its pool key on every request."""
        known = self._targets.get(url)
        if known is None or known[0].pool is None:  # unseen, or its pool closed since
            # urllib3's own errors for a URL it cannot use (no host, an unknown scheme).
            known = (self._pool.connection_from_url(url), urllib3.util.parse_url(url).request_uri)
            if len(self._targets) < 64:  # a handful of endpoint and token URLs
                self._targets[url] = known
        return known

    def _timeout(self, seconds: float) -> urllib3.Timeout:
        made = self._timeouts.get(seconds)
        if made is None:
            made = self._timeouts[seconds] = urllib3.Timeout(connect=seconds, read=seconds)
        return made

    def post_message(
        self, *, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        return self._post(url, body, headers, timeout)

    def close(self) -> None:
        self._targets.clear()
        self._pool.clear()

    def post_form(
        self, *, url: str, form: Mapping[str, str], auth: tuple[str, str], timeout: float
    ) -> HttpResult:
        """A form POST with HTTP Basic credentials (an OAuth2 token request, RFC 6749 4.4)."""
        credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {credentials}",
        }
        return self._post(url, urlencode(dict(form)).encode("ascii"), headers, timeout)
