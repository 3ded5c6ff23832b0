"""OAuth2 client-credentials (RFC 6749 section 4.4) for fhir-rest endpoints: fetch a bearer token,
keep it until shortly before it expires, fetch a new one then or when the endpoint says 401.

No HTTP of its own: the token request goes through a client with `post_form`
(hub.adapters.http_client.Urllib3FhirClient). Every failure to get a token is a TransientError:
the referral waits (and the circuit breaker sees it) while credentials or the token service are
put right.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from hub.errors import TransientError
from hub.records import HttpResult
from hub.settings.endpoint_credentials import OAuth2ClientCredentials

DEFAULT_LIFETIME = 300.0  # seconds, when the token service gives no expires_in
REFRESH_MARGIN = 60.0  # refresh this long before expiry (at most a tenth of the lifetime)


_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class FormPoster(Protocol):
    def post_form(
        self, *, url: str, form: Mapping[str, str], auth: tuple[str, str], timeout: float
    ) -> HttpResult: ...


class OAuth2TokenSource:
    """A cached client-credentials token for one endpoint; thread-safe (one fetch at a time)."""

    def __init__(
        self,
        credentials: OAuth2ClientCredentials,
        client: FormPoster,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        endpoint: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.client = client
        self.timeout = timeout
        self.clock = clock
        self.endpoint = endpoint
        self.fetches = 0
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._refresh_at:
                self._token, lifetime = self._fetch()
                margin = min(REFRESH_MARGIN, lifetime / 10)
                self._refresh_at = self.clock() + lifetime - margin
            return self._token

    def invalidate(self, token: str) -> None:
        """The endpoint refused `token` (401): the next `token()` fetches a new one."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.credentials.scope:
            form["scope"] = self.credentials.scope
        result = self.client.post_form(
            url=self.credentials.token_url,
            form=form,
            auth=(self.credentials.client_id, self.credentials.client_secret),
            timeout=self.timeout,
        )
        self.fetches += 1
        try:
            doc = json.loads(result.body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if result.status != 200 or not isinstance(doc, dict) or not doc.get("access_token"):
            said = doc.get("error") if isinstance(doc, dict) else None
            # RFC 6749 §5.2 error codes are tokens; anything else the service wrote is not
            # repeated into an error message that is logged and shown to operators.
            reason = said if isinstance(said, str) and _ERROR_CODE.fullmatch(said) else None
            raise TransientError(
                f"OAuth2 token service answered HTTP {result.status}"
                + (f" ({reason})" if reason else "")
                + ": no token",
                endpoint=self.endpoint,
                status=result.status,
            )
        try:
            lifetime = float(doc.get("expires_in") or DEFAULT_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        return str(doc["access_token"]), max(lifetime, 1.0)
