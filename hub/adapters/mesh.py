"""MESH (NHS Message Exchange for Social Care and Health) over mesh-client: send a referral to a
trust's mailbox, track it, and (for tests and the pretend trust) read and acknowledge an inbox.

The only module that imports mesh_client (and, through it, requests/urllib3). Its errors become
hub errors here, chained `from exc`; nothing reads the environment (the password and shared
key arrive resolved from settings). The rule table for every MESH call:

| what happened                                                   | verdict                     |
|-----------------------------------------------------------------|-----------------------------|
| 2xx                                                             | done: message id / status   |
| connection refused / reset, TLS failure, timeout                | TransientError              |
| 408, 425, 429, any 5xx (retries by mesh-client exhausted, or the| TransientError              |
| send POST, which mesh-client never retries)                     |                             |
| an answer that is not the JSON MESH speaks                      | TransientError              |
| MESH refuses the send (417 "Unregistered to address", bad       | PermanentError, MESH's text |
| workflow, 403 bad credentials…) or any other 4xx                | in `operation_outcome`      |

Duplicates. MESH itself does not de-duplicate: two POSTs to the outbox are two messages, each
with its own message id. mesh-client never retries that POST for this reason (its MeshRetry
raises instead), and neither does this adapter. The hub prevents duplicates one level up: the
delivery stage reads the referral from the ledger before sending and skips one already
DELIVERED, and records the MESH message id as soon as `send` returns. What remains is the window
where MESH accepted a message but the hub never heard (a timeout after the upload, a crash
before the ledger write); the resend then carries the same `local_id` (our X-Request-Id, sent as
`mex-LocalID`), so the trust and an operator tracking the message can tell it is the same
referral sent twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self

import requests
import urllib3.exceptions
from mesh_client import MeshClient, MeshError, MeshRetry

from hub.errors import PermanentError, TransientError

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Every request mesh-client may repeat is retried on these; the outbox POST is never repeated
# (MeshRetry raises on it instead), so a 429 or 503 there surfaces at once as TransientError.
_RETRY_METHODS = ("HEAD", "GET", "PUT", "POST", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0  # seconds, for each connect and each read; mesh-client's own is 10 min
DEFAULT_RETRIES = 2  # for the requests mesh-client may safely repeat (never the send POST)
APPLICATION_NAME = "ld-hub"


@dataclass(frozen=True, slots=True)
class MeshConnection:
    """Where a mailbox is and how to prove we own it."""

    url: str  # e.g. mesh_client.INT_ENDPOINT's https://msg.intspineservices.nhs.uk
    mailbox: str
    password: str
    shared_key: str  # the environment's shared secret for the NHSMESH HMAC header
    cert: tuple[str, str] | None = None  # client certificate and key (files), MESH is mutual TLS
    verify: str | bool | None = None  # CA bundle path; None = mesh-client's default for the url
    check_hostname: bool | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_RETRIES

    def __repr__(self) -> str:  # never show the secrets in logs or tracebacks
        return f"MeshConnection(url={self.url!r}, mailbox={self.mailbox!r})"


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message as the receiving mailbox downloaded it."""

    message_id: str
    body: bytes
    sender: str | None
    workflow_id: str | None
    local_id: str | None
    subject: str | None
    filename: str | None


def _open(connection: MeshConnection) -> MeshClient:
    if not connection.shared_key:
        # mesh-client would quietly fall back to $MESH_CLIENT_SHARED_KEY; settings own the env.
        raise ValueError("a MESH shared key is required")
    retry = MeshRetry(
        total=connection.max_retries,
        backoff_factor=0.5,
        status_forcelist=tuple(sorted(TRANSIENT_STATUSES)),
        allowed_methods=_RETRY_METHODS,
        respect_retry_after_header=False,  # a long Retry-After would hold a worker inside one call
    )
    return MeshClient(
        connection.url,
        connection.mailbox,
        connection.password,
        shared_key=connection.shared_key.encode("utf-8"),
        cert=connection.cert,
        verify=connection.verify,
        check_hostname=connection.check_hostname,
        max_retries=retry,
        timeout=connection.timeout,
        application_name=APPLICATION_NAME,
    )


def _error_text(payload: Any) -> str | None:
    """MESH's own words from an error body: v2 `detail[].msg` or v1 `errorDescription`."""
    if not isinstance(payload, dict):
        return None
    if payload.get("errorDescription"):
        return str(payload["errorDescription"])
    detail = payload.get("detail")
    if isinstance(detail, list):
        texts = [str(d.get("msg")) for d in detail if isinstance(d, dict) and d.get("msg")]
        return "; ".join(texts) or None
    if isinstance(detail, str):
        return detail
    return None


def _raise_for_http_error(exc: requests.HTTPError, *, doing: str, endpoint: str) -> NoReturn:
    response = exc.response
    status = response.status_code if response is not None else None
    body = response.text[:2000] if response is not None else ""
    try:
        text = _error_text(json.loads(body)) or body
    except ValueError:
        text = body
    message = f"MESH {doing} answered HTTP {status}: {text or exc}"
    if status is None or status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(message, endpoint=endpoint, status=status) from exc
    raise PermanentError(
        message, operation_outcome=body or None, endpoint=endpoint, status=status
    ) from exc


@contextmanager
def _translated(doing: str, *, endpoint: str) -> Iterator[None]:
    """mesh-client, requests and urllib3 errors → hub errors, per the table above."""
    try:
        yield
    except MeshError as exc:
        # send_message raises MeshError only for an answer below 500 that is not a 2xx and not
        # in TRANSIENT_STATUSES (those are raised by the retry policy): MESH refused the message.
        text = str(exc.args[0]) if exc.args else "refused"
        details = exc.args[1] if len(exc.args) > 1 else exc.args[0] if exc.args else None
        raise PermanentError(
            f"MESH refused the {doing}: {_error_text(details) or text}",
            operation_outcome=json.dumps(details, default=str) if details is not None else None,
            endpoint=endpoint,
        ) from exc
    except requests.HTTPError as exc:
        _raise_for_http_error(exc, doing=doing, endpoint=endpoint)
    except requests.Timeout as exc:
        raise TransientError(f"MESH {doing}: no answer in time ({exc})", endpoint=endpoint) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # ConnectionError (refused, reset, TLS), RetryError, urllib3's ResponseError that
        # MeshRetry raises for a 429/5xx on the outbox POST, a stream cut mid-download, and a
        # non-JSON answer (requests.JSONDecodeError is a RequestException).
        raise TransientError(
            f"MESH {doing} failed: {type(exc).__name__}: {exc}", endpoint=endpoint
        ) from exc


class _Mailbox:
    """One MeshClient, used by one thread at a time (a requests.Session is not thread-safe)."""

    def __init__(self, connection: MeshConnection, *, endpoint: str) -> None:
        self.connection = connection
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._client = _open(connection)

    @contextmanager
    def _call(self, doing: str) -> Iterator[MeshClient]:
        with self._lock, _translated(doing, endpoint=self._endpoint):
            yield self._client

    def handshake(self) -> None:
        """Validate the mailbox (MESH asks for one a day); raises like any other call."""
        with self._call("handshake") as client:
            client.handshake()

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MeshSender(_Mailbox):
    """Sends referrals from the hub's mailbox to one recipient mailbox under one workflow."""

    def __init__(
        self,
        url: str,
        mailbox: str,
        password: str,
        shared_key: str,
        *,
        recipient_mailbox: str,
        workflow_id: str,
        cert: tuple[str, str] | None = None,
        verify: str | bool | None = None,
        check_hostname: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
        endpoint: str | None = None,  # the hub's endpoint name, for error context
    ) -> None:
        connection = MeshConnection(
            url=url,
            mailbox=mailbox,
            password=password,
            shared_key=shared_key,
            cert=cert,
            verify=verify,
            check_hostname=check_hostname,
            timeout=timeout,
            max_retries=max_retries,
        )
        super().__init__(connection, endpoint=endpoint or f"mesh:{recipient_mailbox}")
        self.recipient_mailbox = recipient_mailbox
        self.workflow_id = workflow_id

    def send(self, body: bytes, *, local_id: str, subject: str, filename: str) -> str:
        """Upload `body` unchanged and return MESH's message id. `local_id` is the referral's
        X-Request-Id, identical on every resend. Not idempotent: see the module docstring."""
        with self._call("send") as client:
            return client.send_message(
                self.recipient_mailbox,
                body,
                workflow_id=self.workflow_id,
                local_id=local_id,
                subject=subject,
                filename=filename,
            )

    def track(self, message_id: str) -> str:
        """MESH's tracking status for a message we sent: `accepted` while it waits in the
        recipient's inbox, `acknowledged` once the recipient has taken it, and the like."""
        with self._call("tracking") as client:
            tracking: Any = client.track_message(message_id)
        status = tracking.get("status") if isinstance(tracking, dict) else None
        if not status:
            raise TransientError(
                f"MESH tracking for {message_id} carried no status", endpoint=self._endpoint
            )
        return str(status)


class MeshInboxReader(_Mailbox):
    """The receiving side: list the inbox, download a message, acknowledge it. Used by the
    pretend trust in tests; the hub will use it for MESH replies.

    Acknowledge only once the message is stored safely: an acknowledged message is gone from
    MESH, and one left unacknowledged for 5 days expires with a non-delivery report to its
    sender."""

    def __init__(
        self,
        url: str,
        mailbox: str,
        password: str,
        shared_key: str,
        *,
        cert: tuple[str, str] | None = None,
        verify: str | bool | None = None,
        check_hostname: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
        endpoint: str | None = None,
    ) -> None:
        connection = MeshConnection(
            url=url,
            mailbox=mailbox,
            password=password,
            shared_key=shared_key,
            cert=cert,
            verify=verify,
            check_hostname=check_hostname,
            timeout=timeout,
            max_retries=max_retries,
        )
        super().__init__(connection, endpoint=endpoint or f"mesh:{mailbox}")

    def list_ids(self) -> list[str]:
        """Ids of the messages waiting (MESH returns at most 500 per page; this reads one)."""
        with self._call("inbox list") as client:
            return list(client.list_messages())

    def read(self, message_id: str) -> InboxMessage:
        """Download one message whole (every chunk), without acknowledging it."""
        with self._call("download") as client:
            message = client.retrieve_message(message_id)
            try:
                body = message.read()
            finally:
                message.close()
        return InboxMessage(
            message_id=message_id,
            body=body,
            sender=message.sender,
            workflow_id=message.workflow_id,
            local_id=message.local_id,
            subject=message.subject,
            filename=message.filename,
        )

    def acknowledge(self, message_id: str) -> None:
        """Tell MESH the message is safely received; MESH then removes it from the inbox."""
        with self._call("acknowledge") as client:
            client.acknowledge_message(message_id)
