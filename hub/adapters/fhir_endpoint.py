"""FHIR REST delivery over httpx: POST a message Bundle to a receiver's $process-message.

The only module that imports httpx. Connection errors and timeouts become TransientError
here; every HTTP answer is returned as it came, for the delivery rule table to judge.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from hub.errors import TransientError
from hub.ports import HttpResult


class HttpxFhirClient:
    """hub.ports.FhirClient. One pooled client per process; thread-safe (httpx.Client is)."""

    def __init__(self, *, verify: bool | str = True) -> None:
        self._client = httpx.Client(verify=verify, follow_redirects=False)

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
